//! `flotilla`: the node daemon (`flotilla node`, `flotilla dev`) and the client commands.

mod auth;
mod bench;
mod blobs;
mod cli;
mod cluster;
mod config;
mod dashboard;
mod data_dir;
mod error;
mod function;
#[cfg(test)]
mod fuzz;
mod gpu;
mod grpc;
mod http;
mod log_filter;
mod logging;
mod metrics;
mod placement;
mod request_id;
mod resources;
mod runtime;
mod sandbox;
mod schedule;
mod server;
mod workers;

use std::process::ExitCode;

/// mimalloc: Raft, gRPC and sled allocate many small short-lived buffers per write; glibc's
/// malloc showed up at the top of the profile (see docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse_args();
    logging::init(cli.log_format());
    if !cli.is_daemon() {
        cli::quiet_broken_pipe();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli.run()) {
        Ok(code) => ExitCode::from(code),
        Err(e) => ExitCode::from(cli::report(&e, cli.format())),
    }
}
