//! The command line: daemon commands (`node`, `dev`), client commands built on the SDK, and
//! benchmarks.
//!
//! Exit codes: 0 success; 1 the request failed (not found, unavailable, server error);
//! 2 the input was wrong (bad flags, invalid app spec or config). Commands that stand for a
//! process pass its code on: `sandbox exec` the command's, `sandbox wait` the sandbox's;
//! `call get` exits 1 when the call failed. How a failure is printed is in [`report`].
//!
//! The global options (`--endpoint`, `--token`, `--tls-ca`, `-o`) are accepted before or
//! after the subcommand, but listed only in `flotilla --help`: [`Cli::command_tree`] hides them
//! from every subcommand's help, which points there instead. The same tree generates the
//! reference in `docs/reference/cli.md`, the man pages and the shell completions
//! ([`reference`]), so they cannot drift from the parser.

mod app;
mod cluster;
mod daemon;
mod events;
mod function;
mod image;
mod logs;
mod output;
mod reference;
mod report;
mod sandbox;
mod schedule;
mod snapshot;
mod token;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

pub use output::Format;
pub use report::{quiet_broken_pipe, report};

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
    /// What the cluster decided and why: placements, replicas, failovers, fences, leaders,
    /// snapshots, skipped schedule ticks.
    Events(events::EventsArgs),
    /// Output of sandboxes.
    #[command(subcommand)]
    Logs(logs::LogsCmd),
    /// Print a shell completion script (e.g. `flotilla completions bash > /etc/bash_completion.d/flotilla`).
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Write man pages for every command into DIR (flotilla.1, flotilla-sandbox-create.1, …).
    Man {
        /// Folder to write the pages into; created if missing.
        dir: std::path::PathBuf,
    },
}

/// The ids of the options every subcommand accepts (see the module docs).
const GLOBAL_ARGS: [&str; 4] = ["endpoint", "token", "tls_ca", "output"];

impl Cli {
    /// Parses the process arguments against [`Self::command_tree`]; exits on bad input
    /// (code 2) or after printing help or the version (code 0), as clap does.
    pub fn parse_args() -> Cli {
        let matches = Self::command_tree().get_matches();
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }

    /// The clap command tree, with the global options hidden from every subcommand's help.
    pub fn command_tree() -> clap::Command {
        let mut cmd = hide_globals(Cli::command());
        cmd.build();
        cmd
    }

    /// How results and errors are printed.
    pub fn format(&self) -> Format {
        self.output
    }

    /// Whether this invocation runs a long-lived node (it logs more).
    pub fn is_daemon(&self) -> bool {
        matches!(self.command, Command::Dev(_) | Command::Node(_))
    }

    /// A daemon's log format (`--log-format`); `None` for client commands.
    pub fn log_format(&self) -> Option<crate::logging::LogFormat> {
        match &self.command {
            Command::Dev(args) => Some(args.log_format),
            Command::Node(args) => Some(args.log_format),
            _ => None,
        }
    }

    /// Runs the command; returns the process exit code (0 unless the command passes on a
    /// child's, as `sandbox exec` does).
    pub async fn run(&self) -> anyhow::Result<u8> {
        match &self.command {
            Command::Dev(args) => crate::server::run(args.config()?).await?,
            Command::Node(args) => crate::server::run(args.config()?).await?,
            Command::Cluster(cmd) => cmd.run(&self.client().await?, self.output).await?,
            Command::App(app::AppCmd::Deploy { file }) if app::is_python(file) => return self.deploy_python(file),
            Command::App(cmd) => cmd.run(&self.client().await?, self.output).await?,
            Command::Fn(cmd) => cmd.run(&self.client().await?, self.output).await?,
            Command::Call(cmd) => return Ok(cmd.run(&self.client().await?, self.output).await?.code()),
            Command::Sandbox(cmd) => return Ok(cmd.run(&self.client().await?, self.output).await?.code()),
            Command::Image(cmd) => cmd.run(&self.client().await?, self.output).await?,
            Command::Token(cmd) => cmd.run(&self.client().await?, self.output).await?,
            Command::Bench(cmd) => cmd.run().await?,
            Command::Schedule(cmd) => cmd.run(&self.client().await?, self.output).await?,
            Command::Runs(cmd) => cmd.run(&self.client().await?, self.output).await?,
            Command::Snapshot(cmd) => cmd.run(&self.client().await?, self.output).await?,
            Command::Events(args) => args.run(&self.client().await?, self.output).await?,
            Command::Logs(cmd) => cmd.run(&self.client().await?, self.output).await?,
            Command::Completions { shell } => reference::completions(*shell, &mut std::io::stdout())?,
            Command::Man { dir } => reference::man_pages(dir)?,
        }
        Ok(0)
    }

    /// `app deploy app.py`: a Python app is deployed by the Python package, which imports the
    /// module to find its functions (`python3 -m flotilla deploy`), with this command's
    /// connection options in its environment (a token never on a command line). Its exit code
    /// is this command's.
    fn deploy_python(&self, file: &std::path::Path) -> anyhow::Result<u8> {
        let python = std::env::var_os("FLOTILLA_PYTHON").unwrap_or_else(|| "python3".into());
        let mut cmd = std::process::Command::new(&python);
        cmd.args(["-m", "flotilla", "deploy"]).arg(file).env("FLOTILLA_ENDPOINT", self.endpoint.join(","));
        if let Some(t) = &self.token {
            cmd.env("FLOTILLA_TOKEN", t);
        }
        if let Some(ca) = &self.tls_ca {
            cmd.env("FLOTILLA_TLS_CA", ca);
        }
        let has_package = std::process::Command::new(&python)
            .args(["-c", "import flotilla.__main__"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !has_package {
            anyhow::bail!(
                "{} is a Python app: it is deployed by the flotilla Python package (`{} -m flotilla deploy`), \
                 which {} cannot import; install it (pip install ./sdk/python) or set FLOTILLA_PYTHON to a \
                 Python that has it",
                file.display(),
                python.to_string_lossy(),
                python.to_string_lossy()
            );
        }
        let status = cmd.status().map_err(|e| anyhow::anyhow!("running {}: {e}", python.to_string_lossy()))?;
        Ok(status.code().map_or(1, |c| c.clamp(0, 255) as u8))
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

/// Hides [`GLOBAL_ARGS`] in the help of every subcommand of the unbuilt `cmd`, recursively,
/// and points that help to `flotilla --help` instead.
///
/// Each subcommand gets a hidden copy of each global option before clap builds the tree; clap
/// then propagates nothing over it, and the value still reaches the top-level matches. (Hiding
/// the propagated copies of a *built* tree breaks clap's parsing of `--help`.) A subcommand's
/// own option of the same id, `node`'s `--tls-ca` (the CA its peers are checked against), is
/// left alone.
fn hide_globals(cmd: clap::Command) -> clap::Command {
    let globals: Vec<clap::Arg> =
        cmd.get_arguments().filter(|a| GLOBAL_ARGS.contains(&a.get_id().as_str())).cloned().collect();
    hide_in_subcommands(cmd, &globals)
}

fn hide_in_subcommands(mut cmd: clap::Command, globals: &[clap::Arg]) -> clap::Command {
    let names: Vec<String> = cmd.get_subcommands().map(|c| c.get_name().to_string()).collect();
    for name in names {
        cmd = cmd.mut_subcommand(name, |sub| {
            let copies: Vec<clap::Arg> = globals
                .iter()
                .filter(|g| !sub.get_arguments().any(|a| a.get_id() == g.get_id()))
                .map(|g| g.clone().hide(true))
                .collect();
            let sub = sub
                .args(copies)
                .after_help("Global options (--endpoint, --token, --tls-ca, -o): see `flotilla --help`.");
            hide_in_subcommands(sub, globals)
        });
    }
    cmd
}

/// The result of a command that ends with a process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It did what was asked: exit 0.
    Done,
    /// Exit with this code (clamped to 0-255).
    Exit(i64),
}

impl Outcome {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Outcome::Done => 0,
            Outcome::Exit(c) => c.clamp(0, 255) as u8,
        }
    }
}
