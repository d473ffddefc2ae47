//! `flotilla`: the node daemon (`flotilla node`, `flotilla dev`) and the client commands.

mod auth;
mod bench;
mod blobs;
mod cli;
mod cluster;
mod config;
mod data_dir;
mod error;
mod function;
#[cfg(test)]
mod fuzz;
mod gpu;
mod grpc;
mod http;
mod placement;
mod resources;
mod runtime;
mod sandbox;
mod schedule;
mod server;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

/// mimalloc: Raft, gRPC and sled allocate many small short-lived buffers per write; glibc's
/// malloc showed up at the top of the profile (see docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_logging(cli.is_daemon());
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli.run()) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(cli::exit_code(&e))
        }
    }
}

/// Logs go to stderr. Daemons log at `info` by default, client commands only warnings;
/// `RUST_LOG` overrides both.
fn init_logging(daemon: bool) {
    let default = if daemon { "info,openraft=warn" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
