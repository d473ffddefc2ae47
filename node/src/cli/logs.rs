//! `flotilla logs sandbox ID`: a sandbox entrypoint's stdout and stderr with the engine's
//! timestamps, from any node (the node asked proxies to the one that runs it). `flotilla logs
//! fn APP/FN [--call ID]`: what the function's processes wrote to stderr (one call's with
//! `--call`), gathered from every node. Text prints
//! `TIME STREAM TEXT` per line; `-o json` one JSON object per line (so `-f` can be piped).

use std::io::Write;

use clap::Subcommand;
use flotilla::Client;
use futures::StreamExt;

use super::output::Format;

#[derive(Debug, Subcommand)]
pub enum LogsCmd {
    /// A sandbox entrypoint's stdout and stderr, with timestamps.
    Sandbox {
        /// The sandbox's id (sb-…) or name.
        id: String,
        /// Keep printing new lines until the sandbox ends (Ctrl-C stops).
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only the last N lines (before following).
        #[arg(long, value_name = "N")]
        tail: Option<u64>,
    },
    /// What a function's processes wrote to stderr (worker processes; each call's command in
    /// exec mode), from every node.
    Fn {
        /// The function, as APP/FUNCTION.
        #[arg(value_parser = super::schedule::fn_ref)]
        function: super::schedule::FnRef,
        /// Keep printing new lines (Ctrl-C stops).
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only the last N lines of each node (before following).
        #[arg(long, value_name = "N")]
        tail: Option<u64>,
        /// Only what one call's process wrote: a spawned call's or a scheduled run's id (in
        /// worker mode, with concurrency > 1, lines written while other calls ran too show).
        #[arg(long = "call", value_name = "ID")]
        call: Option<String>,
    },
}

impl LogsCmd {
    pub async fn run(&self, client: &Client, format: Format) -> anyhow::Result<()> {
        let lines = match self {
            LogsCmd::Sandbox { id, follow, tail } => {
                let id = client.sandbox_info(id).await?.id;
                futures::future::Either::Left(client.sandbox_logs(&id, *follow, *tail).await?)
            }
            LogsCmd::Fn { function, follow, tail, call } => futures::future::Either::Right(
                client.function_logs(&function.app, &function.function, call.as_deref(), *follow, *tail).await?,
            ),
        };
        let mut lines = Box::pin(lines);
        let mut out = std::io::stdout();
        while let Some(line) = lines.next().await {
            let line = line?;
            match format {
                Format::Json => writeln!(out, "{}", serde_json::to_string(&line)?)?,
                Format::Text => writeln!(out, "{} {} {}", line.time, line.stream, line.text)?,
            }
            out.flush()?;
        }
        Ok(())
    }
}
