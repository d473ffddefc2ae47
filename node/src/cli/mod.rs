//! The command line: daemon commands (`node`, `dev`), client commands built on the SDK, and
//! benchmarks.
//!
//! Exit codes: 0 success; 1 the request failed (not found, unavailable, server error);
//! 2 the input was wrong (bad flags, invalid app spec or config).

mod app;
mod cluster;
mod daemon;
mod function;
mod image;
mod output;
mod sandbox;
mod schedule;
mod snapshot;
mod token;

use clap::{Parser, Subcommand};

pub use output::Format;

/// Flotilla: a self-hosted compute cluster.
#[derive(Debug, Parser)]
#[command(name = "flotilla", version, about)]
pub struct Cli {
    /// Node endpoints to talk to, comma-separated; any node works and they are tried in turn.
    #[arg(
        long,
        global = true,
        env = "FLOTILLA_ENDPOINT",
        default_value = "http://127.0.0.1:7100",
        value_delimiter = ','
    )]
    endpoint: Vec<String>,
    /// API token for clusters that require one.
    #[arg(long, global = true, env = "FLOTILLA_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// CA certificate (PEM) to trust for https:// endpoints.
    #[arg(long, global = true, env = "FLOTILLA_TLS_CA")]
    tls_ca: Option<std::path::PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Format::Text)]
    output: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a single-node cluster in the foreground, state in ./.flotilla.
    Dev(daemon::DevArgs),
    /// Run a cluster node.
    Node(Box<daemon::NodeArgs>),
    /// Cluster status and membership.
    #[command(subcommand)]
    Cluster(cluster::ClusterCmd),
    /// Deploy and manage apps.
    #[command(subcommand)]
    App(app::AppCmd),
    /// Call and spawn functions of deployed apps.
    #[command(subcommand, name = "fn")]
    Fn(function::FnCmd),
    /// Durable calls: get their result, cancel them.
    #[command(subcommand)]
    Call(function::CallCmd),
    /// Sandboxes: isolated containers for running code.
    #[command(subcommand)]
    Sandbox(sandbox::SandboxCmd),
    /// API tokens.
    #[command(subcommand)]
    Token(token::TokenCmd),
    /// Schedules: list, pause, resume, trigger.
    #[command(subcommand)]
    Schedule(schedule::ScheduleCmd),
    /// Durable calls: scheduled runs and spawned calls.
    #[command(subcommand)]
    Runs(schedule::RunsCmd),
    /// Images on this machine's container engine.
    #[command(subcommand)]
    Image(image::ImageCmd),
    /// Benchmarks that print figures.
    #[command(subcommand)]
    Bench(crate::bench::BenchCmd),
    /// Sandbox snapshots (take one with `sandbox snapshot`).
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCmd),
}

impl Cli {
    /// Whether this invocation runs a long-lived node (it logs more).
    pub fn is_daemon(&self) -> bool {
        matches!(self.command, Command::Dev(_) | Command::Node(_))
    }

    /// Runs the command; returns the process exit code (0 unless the command passes on a
    /// child's, as `sandbox exec` does).
    pub async fn run(&self) -> anyhow::Result<u8> {
        match &self.command {
            Command::Dev(args) => crate::server::run(args.config()?).await?,
            Command::Node(args) => crate::server::run(args.config()?).await?,
            Command::Cluster(cmd) => cmd.run(&self.client().await?, self.output).await?,
            Command::App(cmd) => cmd.run(&self.client().await?, self.output).await?,
            Command::Fn(cmd) => cmd.run(&self.client().await?, self.output).await?,
            Command::Call(cmd) => cmd.run(&self.client().await?, self.output).await?,
            Command::Sandbox(cmd) => {
                if let sandbox::Outcome::Exit(code) = cmd.run(&self.client().await?, self.output).await? {
                    return Ok(code as u8);
                }
            }
            Command::Image(cmd) => cmd.run(self.output).await?,
            Command::Token(cmd) => cmd.run(&self.client().await?, self.output).await?,
            Command::Bench(cmd) => cmd.run().await?,
            Command::Schedule(cmd) => cmd.run(&self.client().await?, self.output).await?,
            Command::Runs(cmd) => cmd.run(&self.client().await?, self.output).await?,
            Command::Snapshot(cmd) => cmd.run(&self.client().await?, self.output).await?,
        }
        Ok(0)
    }

    async fn client(&self) -> anyhow::Result<flotilla::Client> {
        let tls_ca = match &self.tls_ca {
            Some(p) => Some(
                std::fs::read(p)
                    .map_err(|e| flotilla::Error::InvalidArgument(format!("tls-ca: {}: {e}", p.display())))?,
            ),
            None => None,
        };
        let options = flotilla::ClientOptions { token: self.token.clone(), tls_ca, ..Default::default() };
        Ok(flotilla::Client::connect_with(&self.endpoint, options).await?)
    }
}

/// The process exit code for an error: 2 for bad input, 1 for everything else.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    let bad_input = e.chain().any(|cause| {
        cause.downcast_ref::<crate::config::ConfigError>().is_some()
            || cause.downcast_ref::<flotilla::spec::SpecError>().is_some()
            || matches!(
                cause.downcast_ref::<flotilla::Error>(),
                Some(flotilla::Error::InvalidArgument(_) | flotilla::Error::Spec(_))
            )
    });
    if bad_input {
        2
    } else {
        1
    }
}
