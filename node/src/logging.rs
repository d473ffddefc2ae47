//! Where log lines go and what they look like. Everything logs to stderr (a node's stdout has
//! only its `ready` line). Daemons log at `info` by default, client commands only warnings;
//! `RUST_LOG` overrides both. openraft's routine WARN/ERROR noise is dropped (`log_filter`).
//!
//! A daemon's `--log-format json` writes one JSON object per line, for log shippers:
//! `timestamp`, `level`, `target`, `fields` (the message and the event's own fields), `span`
//! (the innermost span) and `spans` (every enclosing span, outermost first, each with its
//! `name` and fields). A gRPC request's lines have an `rpc` span with `request_id` and
//! `method` (see `request_id`), inside the `node` span with the node's `id`.

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::log_filter;

/// How a daemon writes its log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colored on a terminal).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the process's subscriber: `daemon` is `Some(format)` for `node` and `dev`.
pub fn init(daemon: Option<LogFormat>) {
    let default = if daemon.is_some() { "info,openraft=warn" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match daemon {
        Some(LogFormat::Json) => fmt.json().boxed(),
        _ => fmt.with_ansi(std::io::stderr().is_terminal()).boxed(),
    };
    tracing_subscriber::registry().with(fmt.with_filter(filter).with_filter(log_filter::QuietOpenraft)).init();
}
