//! `flotilla fn …` (call and spawn functions) and `flotilla call …` (durable calls).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use flotilla::{CallRecord, Client};
use serde::Serialize;

use super::output::{print, rfc3339, Format};
use super::schedule::run_row;
use super::Outcome;

#[derive(Debug, Subcommand)]
pub enum FnCmd {
    /// Run the function on one input now and print its output (exit 1 if it failed).
    Call(Invocation),
    /// Record a durable call and print its id; `flotilla call get ID` waits for the result.
    Spawn(Invocation),
}

#[derive(Debug, Args)]
pub struct Invocation {
    /// The function, as APP/FUNCTION.
    #[arg(value_name = "APP/FN")]
    target: String,
    /// The input, as text.
    #[arg(long, conflicts_with = "input_file")]
    input: Option<String>,
    /// Read the input from this file (`-` for stdin).
    #[arg(long)]
    input_file: Option<PathBuf>,
    /// Seconds to wait in all, queueing and cold start included (call only).
    #[arg(long)]
    timeout: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum CallCmd {
    /// Show a durable call; with --timeout, wait up to that many seconds for it to end.
    /// Exits 1 when the call failed or was cancelled.
    Get {
        /// The call's id (fc-…).
        id: String,
        /// Seconds to wait for the call to end; 0 shows it as it is now.
        #[arg(long, value_name = "S", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=3600))]
        timeout: u64,
    },
    /// Cancel a durable call that has not ended.
    Cancel {
        /// The call's id (fc-…).
        id: String,
    },
    /// List durable calls, newest first (the same as `runs ls`): queued ones show what waits.
    Ls(super::schedule::RunsArgs),
}

impl Invocation {
    fn target(&self) -> anyhow::Result<(&str, &str)> {
        match self.target.split_once('/') {
            Some((app, f)) if !app.is_empty() && !f.is_empty() && !f.contains('/') => Ok((app, f)),
            _ => Err(flotilla::Error::InvalidArgument(format!("{:?} is not APP/FUNCTION", self.target)).into()),
        }
    }

    fn input(&self) -> anyhow::Result<Vec<u8>> {
        let read = |p: &PathBuf| -> anyhow::Result<Vec<u8>> {
            if p.as_os_str() == "-" {
                let mut buf = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
                return Ok(buf);
            }
            std::fs::read(p)
                .map_err(|e| flotilla::Error::InvalidArgument(format!("input-file: {}: {e}", p.display())).into())
        };
        match (&self.input, &self.input_file) {
            (Some(s), _) => Ok(s.clone().into_bytes()),
            (None, Some(p)) => read(p),
            (None, None) => Ok(Vec::new()),
        }
    }
}

#[derive(Serialize)]
struct Output<'a> {
    output: std::borrow::Cow<'a, str>,
}

impl FnCmd {
    pub async fn run(&self, client: &Client, format: Format) -> anyhow::Result<()> {
        match self {
            FnCmd::Call(inv) => {
                let (app, f) = inv.target()?;
                let out =
                    client.function(app, f).call_within(inv.input()?, inv.timeout.map(Duration::from_secs)).await?;
                match format {
                    Format::Json => print(format, &Output { output: String::from_utf8_lossy(&out) }, |_| {}),
                    Format::Text => {
                        std::io::stdout().write_all(&out)?;
                        Ok(())
                    }
                }
            }
            FnCmd::Spawn(inv) => {
                let (app, f) = inv.target()?;
                let call = client.function(app, f).spawn(inv.input()?).await?;
                let out = std::collections::BTreeMap::from([("id", call.id.as_str())]);
                print(format, &out, |_| println!("{}", call.id))
            }
        }
    }
}

/// Prints a call for people.
pub fn print_call(c: &CallRecord) {
    println!("{}  {}/{}  {}  attempt {}", c.id, c.app, c.function, c.state, c.attempt);
    if let Some(node) = c.node {
        println!("  node {node}");
    }
    println!("  created {}", rfc3339(c.created_at_ms));
    if let Some(t) = c.started_at_ms {
        println!("  started {}", rfc3339(t));
    }
    if let Some(t) = c.finished_at_ms {
        println!("  finished {}", rfc3339(t));
    }
    if let Some(e) = &c.error {
        println!("  error: {e}");
    }
    if let Some(o) = &c.output {
        println!("  output: {}", String::from_utf8_lossy(o));
    }
}

impl CallCmd {
    /// Runs the command; `call get` ends with exit 1 when the call failed or was cancelled.
    pub async fn run(&self, client: &Client, format: Format) -> anyhow::Result<Outcome> {
        match self {
            CallCmd::Get { id, timeout } => {
                let call = client.call_from_id(id).wait(Duration::from_secs(*timeout)).await?;
                print(format, &run_row(&call), |_| print_call(&call))?;
                if matches!(call.state.as_str(), "failed" | "cancelled") {
                    return Ok(Outcome::Exit(1));
                }
            }
            CallCmd::Ls(args) => args.list(client, format).await?,
            CallCmd::Cancel { id } => {
                let call = client.call_from_id(id).cancel().await?;
                print(format, &run_row(&call), |_| print_call(&call))?;
            }
        }
        Ok(Outcome::Done)
    }
}
