//! `flotilla events`: the cluster's event record, listed or followed (`-f`). Also the few
//! latest events `app show` and `sandbox show` print about their subject ([`recent`]).
//!
//! With `-o json`, a list is one JSON array; a follow prints one JSON object per line as
//! events come, so it can be piped into `jq` while it runs.

use std::io::Write;

use clap::Args;
use flotilla::{Client, Event, EventFilter};
use futures::StreamExt;
use serde::Serialize;

use super::output::{rfc3339, Format};

/// How many events `app show` and `sandbox show` print.
pub const RECENT: u32 = 5;

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Keep printing new events as the cluster records them (Ctrl-C stops).
    #[arg(short = 'f', long)]
    follow: bool,
    /// Only events from this long ago on, e.g. 30s, 10m, 2h, 1d.
    #[arg(long, value_name = "DURATION", value_parser = parse_since)]
    since: Option<u64>,
    /// Only events of this kind; repeat for several.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(flotilla_raft::EventKind::ALL.map(|k| k.as_str())))]
    kind: Vec<String>,
}

fn parse_since(s: &str) -> Result<u64, String> {
    flotilla::spec::parse_duration_ms(s)
}

/// One event as `-o json` prints it.
#[derive(Serialize)]
struct Shown<'a> {
    /// RFC 3339, UTC.
    time: String,
    kind: &'a str,
    subject: &'a str,
    message: &'a str,
    node: Option<u64>,
    seq: u64,
    repeats: u32,
}

fn shown(e: &Event) -> Shown<'_> {
    Shown {
        time: rfc3339(e.at_ms),
        kind: &e.kind,
        subject: &e.subject,
        message: &e.message,
        node: e.node,
        seq: e.seq,
        repeats: e.repeats,
    }
}

/// One event as a line of text.
pub fn line(e: &Event) -> String {
    let node = e.node.map_or(String::new(), |n| format!(" (node {n})"));
    let repeats = if e.repeats > 0 { format!(" [x{}]", e.repeats + 1) } else { String::new() };
    format!("{}  {:<9} {}: {}{node}{repeats}", rfc3339(e.at_ms), e.kind, e.subject, e.message)
}

impl EventsArgs {
    pub async fn run(&self, client: &Client, format: Format) -> anyhow::Result<()> {
        let since_ms = self.since.map(|ago| chrono::Utc::now().timestamp_millis() - ago as i64);
        let filter = EventFilter { since_ms, kinds: self.kind.clone(), ..Default::default() };
        if !self.follow {
            let events = client.events(&filter).await?;
            match format {
                Format::Json => {
                    println!("{}", serde_json::to_string_pretty(&events.iter().map(shown).collect::<Vec<_>>())?)
                }
                Format::Text => events.iter().for_each(|e| println!("{}", line(e))),
            }
            return Ok(());
        }
        let mut stream = Box::pin(client.follow_events(&filter).await?);
        let mut out = std::io::stdout();
        while let Some(e) = stream.next().await {
            let e = e?;
            match format {
                Format::Json => writeln!(out, "{}", serde_json::to_string(&shown(&e))?)?,
                Format::Text => writeln!(out, "{}", line(&e))?,
            }
            out.flush()?;
        }
        Ok(())
    }
}

/// The latest [`RECENT`] events about `subject`, for `app show` and `sandbox show`.
pub async fn recent(client: &Client, subject: &str) -> anyhow::Result<Vec<Event>> {
    let filter = EventFilter { subject: Some(subject.to_string()), limit: RECENT, ..Default::default() };
    Ok(client.events(&filter).await?)
}
