//! `flotilla bench …`: programs that print figures, never assertions. Results and the
//! commands that produced them are kept in docs/benchmarks.md.
//!
//! Each benchmark starts what it measures as real processes on loopback in a temp dir
//! (Flotilla nodes from this very binary, and the peer system it is compared with), drives
//! them through the same client stack, prints a table, and stops everything: its processes
//! and every container they or the benchmark started, also on an error or Ctrl-C (see
//! `procs`).

mod catalog;
mod engines;
mod functions;
mod images;
mod load;
mod procs;
mod python;
mod sandbox;
mod schedules;
mod snapshots;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Small catalog writes on a three-node cluster vs a three-node etcd, plus leader failover.
    Catalog(catalog::CatalogArgs),
    /// Sandbox start and exec latency and stdout throughput vs the raw Docker API.
    Sandbox(sandbox::SandboxArgs),
    /// Warm sync-call latency and throughput (worker and exec mode) vs raw Docker exec; cold calls.
    Functions(functions::FunctionsArgs),
    /// Schedules: fire lateness at a steady rate, memory, failover, and an exactly-once audit.
    Schedules(schedules::SchedulesArgs),
    /// Snapshot and restore vs the raw engine, memory snapshots per GB, and failover time.
    Snapshots(snapshots::SnapshotsArgs),
    /// The Python SDK vs the Rust SDK: a warm Python function's round trip and a sandbox exec.
    Python(python::PythonArgs),
    /// An image moving to nodes without it through the blob store vs `docker save | docker load`.
    Images(images::ImagesArgs),
}

impl BenchCmd {
    /// Runs the benchmark until it ends or Ctrl-C, which drops it: its clusters' drops then
    /// remove their processes and containers. Containers it started itself go last.
    pub async fn run(&self) -> anyhow::Result<()> {
        let (key, value) = procs::bench_label();
        let _raw = procs::Cleanup(format!("{key}={value}"));
        let bench = async {
            match self {
                BenchCmd::Catalog(args) => catalog::run(args).await,
                BenchCmd::Sandbox(args) => sandbox::run(args).await,
                BenchCmd::Functions(args) => functions::run(args).await,
                BenchCmd::Schedules(args) => schedules::run(args).await,
                BenchCmd::Snapshots(args) => snapshots::run(args).await,
                BenchCmd::Python(args) => python::run(args).await,
                BenchCmd::Images(args) => images::run(args).await,
            }
        };
        tokio::select! {
            result = bench => result,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("interrupted: removing the benchmark's processes and containers");
                anyhow::bail!("interrupted")
            }
        }
    }
}
