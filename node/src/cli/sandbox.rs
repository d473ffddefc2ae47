//! `flotilla sandbox …`

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use flotilla::{Client, ExecEvent, SandboxInfo};
use tokio::io::AsyncReadExt;

use super::output::{print, rfc3339, Format};
use super::Outcome;

#[derive(Debug, Subcommand)]
pub enum SandboxCmd {
    /// Create a sandbox; prints its id.
    Create(CreateArgs),
    /// Run a command in a sandbox, streaming its output; exits with the command's exit code.
    Exec(ExecArgs),
    /// List live sandboxes (--all: ended ones too).
    Ls {
        /// Include sandboxes that have ended.
        #[arg(long)]
        all: bool,
        /// Only sandboxes with this tag (repeatable).
        #[arg(long = "tag", value_parser = key_value)]
        tags: Vec<(String, String)>,
    },
    /// Show one sandbox.
    Show {
        /// Sandbox id (sb-…) or name.
        id: String,
    },
    /// Wait until a sandbox ends; prints it and exits with its exit code.
    Wait {
        /// Sandbox id (sb-…) or name.
        id: String,
        /// Give up after this many seconds: the sandbox is printed still running and the exit
        /// code is 124. 0 waits as long as the server allows (an hour), like no --timeout.
        #[arg(long, value_name = "S", value_parser = clap::value_parser!(u64).range(0..=3600))]
        timeout: Option<u64>,
    },
    /// End a sandbox (exit 137).
    Terminate {
        /// Sandbox id (sb-…) or name.
        id: String,
    },
    /// Copy a file or folder between a sandbox and here, like cp(1): `ID:/abs/path LOCAL` or
    /// `LOCAL ID:/abs/path`, any absolute path in the sandbox (/tmp too). Into an existing
    /// folder it keeps its name; otherwise it becomes DST (a file under a new name, or a new
    /// folder), whose folder must exist.
    Cp {
        /// What to copy: ID:/abs/path in a sandbox, or a local path.
        src: String,
        /// Where to: a local path, or ID:/abs/path in a sandbox.
        dst: String,
    },
    /// Snapshot a running sandbox (it keeps running); prints the snapshot id once it is
    /// stored on its replicas.
    Snapshot {
        /// Sandbox id (sb-…) or name.
        id: String,
        /// fs: its writable filesystem (/work); dir: one directory (--path); memory: its
        /// processes and memory (CRIU) plus the filesystem.
        #[arg(long, default_value = "fs", value_parser = ["fs", "dir", "memory"])]
        kind: String,
        /// The directory of a dir snapshot: an absolute path below /work.
        #[arg(long)]
        path: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Image to run; it must exist on the chosen node's engine.
    #[arg(long, default_value = "flotilla/busybox")]
    image: String,
    /// Unique among live sandboxes.
    #[arg(long)]
    name: Option<String>,
    /// CPU cores, more than 0 and at most 64 (default 1).
    #[arg(long, value_name = "CORES", value_parser = cores)]
    cpu: Option<f64>,
    /// Memory limit, MiB, 16 to 1048576 (default 512).
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(16..=1_048_576))]
    memory: Option<u64>,
    /// Size of /work, MiB, 16 to 1048576 (default 1024): writes past it fail in the sandbox
    /// with "No space left on device", and the host's disk is untouched.
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(16..=1_048_576))]
    disk: Option<u64>,
    /// End the sandbox this many seconds after it starts (exit 124); 0 means no timeout,
    /// the default. At most 604800 (7 days).
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u64).range(0..=MAX_TIMEOUT_S))]
    timeout: Option<u64>,
    /// End the sandbox after this many seconds with no exec and no input (exit 124); 0
    /// means none, the default. At most 604800.
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u64).range(0..=MAX_TIMEOUT_S))]
    idle_timeout: Option<u64>,
    /// No network but loopback.
    #[arg(long)]
    block_network: bool,
    /// Make the root filesystem writable (e.g. for package installs); read-only by default.
    #[arg(long)]
    writable_rootfs: bool,
    /// Working directory of the entrypoint and of execs: an absolute path (default /work).
    #[arg(long, value_name = "DIR")]
    workdir: Option<String>,
    /// Environment variable of the sandbox, KEY=VALUE (repeatable).
    #[arg(long = "env", value_name = "K=V", value_parser = key_value)]
    env: Vec<(String, String)>,
    /// Tag to find it by with `sandbox ls --tag`, KEY=VALUE (repeatable).
    #[arg(long = "tag", value_name = "K=V", value_parser = key_value)]
    tags: Vec<(String, String)>,
    /// OCI runtime: runc (default) or runsc (gVisor).
    #[arg(long, value_parser = ["runc", "runsc"])]
    runtime: Option<String>,
    /// GPUs: MODEL:N (e.g. H100:1) or any:N.
    #[arg(long)]
    gpu: Option<String>,
    /// Return once the sandbox runs (or failed to start).
    #[arg(long)]
    wait: bool,
    /// Create it from this snapshot (sn-…), on any node: image, command, env and limits
    /// come from the snapshot.
    #[arg(long)]
    from_snapshot: Option<String>,
    /// Take a filesystem snapshot every S seconds, 5 to 604800 (the newest is kept).
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u64).range(5..=MAX_TIMEOUT_S))]
    snapshot_every: Option<u64>,
    /// If its node dies, restore it on a live node from its latest ready snapshot.
    #[arg(long)]
    restore_on_failure: bool,
    /// Entrypoint; without one the sandbox idles, waiting for execs.
    #[arg(last = true)]
    command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Sandbox id (sb-…) or name.
    id: String,
    /// Working directory of the command: an absolute path (default: the sandbox's).
    #[arg(long, value_name = "DIR")]
    workdir: Option<String>,
    /// Environment variable of the command, KEY=VALUE (repeatable).
    #[arg(long = "env", value_name = "K=V", value_parser = key_value)]
    env: Vec<(String, String)>,
    /// Kill the command after this many seconds (exit 124); 0 means no timeout, the default.
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u64).range(0..=MAX_TIMEOUT_S))]
    timeout: Option<u64>,
    /// Pass this process's stdin to the command.
    #[arg(short = 'i', long)]
    interactive: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// Longest sandbox or exec timeout the server accepts, seconds (7 days).
const MAX_TIMEOUT_S: u64 = 7 * 24 * 3600;

/// Parses `--cpu`: a finite number of cores, more than 0 and at most 64.
fn cores(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(c) if c.is_finite() && c > 0.0 && c <= 64.0 => Ok(c),
        Ok(_) => Err(format!("{s} must be more than 0 and at most 64 cores")),
        Err(e) => Err(format!("{s:?} is not a number: {e}")),
    }
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

/// What `sandbox show` prints: the sandbox and the latest events about it.
#[derive(serde::Serialize)]
struct ShownSandbox {
    #[serde(flatten)]
    sandbox: SandboxInfo,
    events: Vec<flotilla::Event>,
}

fn print_sandbox(s: &SandboxInfo) {
    println!("{}  {}  node {}  image {}", s.id, s.state, s.node, s.image);
    if let Some(name) = &s.name {
        println!("  name: {name}");
    }
    println!("  created {}", rfc3339(s.created_at_ms));
    if let Some(t) = s.started_at_ms {
        println!("  started {}", rfc3339(t));
    }
    if s.disk_mib > 0 {
        println!("  /work {} MiB", s.disk_mib);
    }
    if s.timeout_s > 0 || s.idle_timeout_s > 0 {
        println!("  timeout {} s, idle timeout {} s", s.timeout_s, s.idle_timeout_s);
    }
    if let Some(snap) = &s.last_snapshot {
        println!("  last snapshot {snap}");
    }
    if s.restore_on_failure || s.snapshot_every_s > 0 {
        println!("  restore on failure: {}, snapshot every {} s", s.restore_on_failure, s.snapshot_every_s);
    }
    if let Some(t) = s.finished_at_ms {
        let code = s.exit_code.map_or("none".to_string(), |c| c.to_string());
        println!("  ended {} with exit {code} ({})", rfc3339(t), s.reason.as_deref().unwrap_or(""));
    }
}

impl SandboxCmd {
    pub async fn run(&self, client: &Client, format: Format) -> anyhow::Result<Outcome> {
        match self {
            SandboxCmd::Create(a) => create(client, a, format).await?,
            SandboxCmd::Exec(a) => return exec(client, a).await,
            SandboxCmd::Ls { all, tags } => {
                let list = client.list_sandboxes(*all, tags.iter().cloned().collect()).await?;
                print(format, &list, |list| {
                    println!("{:<20} {:<11} {:<5} {:<20} NAME", "ID", "STATE", "NODE", "IMAGE");
                    for s in list {
                        println!(
                            "{:<20} {:<11} {:<5} {:<20} {}",
                            s.id,
                            s.state,
                            s.node,
                            s.image,
                            s.name.as_deref().unwrap_or("")
                        );
                    }
                })?;
            }
            SandboxCmd::Show { id } => {
                let sandbox = client.sandbox_info(id).await?;
                let events = super::events::recent(client, &sandbox.id).await?;
                print(format, &ShownSandbox { sandbox, events }, |s| {
                    print_sandbox(&s.sandbox);
                    super::app::print_events(&s.events);
                })?
            }
            SandboxCmd::Wait { id, timeout } => {
                // --timeout 0 waits as long as the server allows, like no --timeout.
                let limit = timeout.filter(|t| *t > 0).map(Duration::from_secs);
                let sb = client.wait_sandbox(id, limit).await?;
                print(format, &sb, print_sandbox)?;
                return Ok(Outcome::Exit(wait_exit_code(&sb)));
            }
            SandboxCmd::Terminate { id } => print(format, &client.terminate_sandbox(id).await?, print_sandbox)?,
            SandboxCmd::Cp { src, dst } => copy(client, src, dst).await?,
            SandboxCmd::Snapshot { id, kind, path } => {
                super::snapshot::take(client, id, kind, path.as_deref(), format).await?
            }
        }
        Ok(Outcome::Done)
    }
}

async fn create(client: &Client, a: &CreateArgs, format: Format) -> anyhow::Result<()> {
    let mut b = client.sandbox().image(&a.image).command(a.command.clone());
    if let Some(n) = &a.name {
        b = b.name(n);
    }
    if let Some(c) = a.cpu {
        b = b.cpu(c);
    }
    if let Some(m) = a.memory {
        b = b.memory_mib(m);
    }
    if let Some(d) = a.disk {
        b = b.disk_mib(d);
    }
    if let Some(t) = a.timeout {
        b = b.timeout(Duration::from_secs(t));
    }
    if let Some(t) = a.idle_timeout {
        b = b.idle_timeout(Duration::from_secs(t));
    }
    if let Some(w) = &a.workdir {
        b = b.workdir(w);
    }
    if let Some(r) = &a.runtime {
        b = b.runtime(r);
    }
    if let Some(g) = &a.gpu {
        b = b.gpu(g);
    }
    for (k, v) in &a.env {
        b = b.env(k, v);
    }
    for (k, v) in &a.tags {
        b = b.tag(k, v);
    }
    b = b.block_network(a.block_network).restore_on_failure(a.restore_on_failure);
    b = b.writable_rootfs(a.writable_rootfs);
    if let Some(from) = &a.from_snapshot {
        b = b.from_snapshot_id(from);
    }
    if let Some(s) = a.snapshot_every {
        b = b.snapshot_every(Duration::from_secs(s));
    }
    if !a.wait {
        b = b.no_wait();
    }
    // A restore fetches and unpacks the snapshot on its node: show that it is under way
    // (on stderr, and only on a terminal).
    let spinner = (a.wait && a.from_snapshot.is_some()).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_message(format!("restoring from {}", a.from_snapshot.as_deref().unwrap_or_default()));
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let created = b.create().await;
    if let Some(bar) = spinner {
        bar.finish_and_clear();
    }
    let sb = created?;
    let out: BTreeMap<&str, &str> = BTreeMap::from([("id", sb.id.as_str())]);
    print(format, &out, |_| println!("{}", sb.id))
}

async fn exec(client: &Client, a: &ExecArgs) -> anyhow::Result<Outcome> {
    let sb = client.sandbox_from_id(&a.id).await?;
    let mut e = sb.exec(a.command.clone());
    if let Some(w) = &a.workdir {
        e = e.workdir(w);
    }
    if let Some(t) = a.timeout {
        e = e.timeout(Duration::from_secs(t));
    }
    for (k, v) in &a.env {
        e = e.env(k, v);
    }
    let mut p = e.spawn().await?;
    let (stdin_tx, mut stdin_rx) = tokio::sync::mpsc::channel::<Option<Vec<u8>>>(16);
    if a.interactive {
        tokio::spawn(async move {
            let mut stdin = tokio::io::stdin();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match stdin.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        let _ = stdin_tx.send(None).await;
                        return;
                    }
                    Ok(n) => {
                        if stdin_tx.send(Some(buf[..n].to_vec())).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
    } else {
        p.close_stdin().await?;
    }
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    loop {
        tokio::select! {
            ev = p.next_event() => match ev? {
                Some(ExecEvent::Stdout(b)) => { out.write_all(&b)?; out.flush()?; }
                Some(ExecEvent::Stderr(b)) => { err.write_all(&b)?; err.flush()?; }
                None => break,
            },
            Some(input) = stdin_rx.recv() => match input {
                Some(data) => p.write_stdin(&data).await?,
                None => p.close_stdin().await?,
            },
        }
    }
    let code = p.exit_code().context("exec ended without an exit code")?;
    Ok(Outcome::Exit(code))
}

/// What `sandbox wait` exits with: the sandbox's exit code once it has ended (1 if it failed
/// without one), or 124, like timeout(1), when it is still running at `--timeout`.
fn wait_exit_code(sb: &SandboxInfo) -> i64 {
    match (sb.state.as_str(), sb.exit_code) {
        ("terminated" | "failed", Some(code)) => code,
        ("terminated" | "failed", None) => 1,
        _ => 124,
    }
}

/// Splits `ID:/path` into its parts; `None` for a local path.
fn remote(spec: &str) -> Option<(&str, &str)> {
    let (id, path) = spec.split_once(':')?;
    (!id.is_empty() && path.starts_with('/') && !id.contains('/')).then_some((id, path))
}

async fn copy(client: &Client, src: &str, dst: &str) -> anyhow::Result<()> {
    match (remote(src), remote(dst)) {
        (Some((id, path)), None) => {
            let sb = client.sandbox_from_id(id).await?;
            sb.download(path, &PathBuf::from(dst)).await?;
        }
        (None, Some((id, dest))) => {
            let sb = client.sandbox_from_id(id).await?;
            let local = PathBuf::from(src);
            if !local.exists() {
                return Err(flotilla::Error::NotFound(format!("source: {} does not exist", local.display())).into());
            }
            sb.upload(&local, dest).await?;
        }
        _ => {
            let msg = "cp: exactly one of SRC and DST must be ID:/absolute/path".to_string();
            return Err(flotilla::Error::InvalidArgument(msg).into());
        }
    }
    Ok(())
}
