//! An exec session on the hosting node: runs a command in the sandbox's container and
//! streams its stdout/stderr back as produced, pumps stdin in, enforces the exec timeout,
//! and ends with exactly one exit code.
//!
//! Exit codes: the process's own; 124 when the exec timeout killed it; 127 ("command not
//! found" on stderr) when the command does not exist and 126 when it cannot be run (the
//! engine's message, which it writes as output, becomes the stderr line); 128+N when a signal
//! N killed it (the engine reports that itself: 137 for SIGKILL, e.g. when the sandbox was
//! terminated under it). An exec that ends with 137 while the kernel OOM-killed something in
//! the sandbox's memory cgroup gets a last stderr line saying so, with the limit
//! (`runtime/oom.rs`).

use std::time::Duration;

use flotilla_proto::worker::{exec_input, exec_output, ExecInput, ExecOutput};
use futures::{FutureExt, Stream, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tonic::Status;

use super::actor::SandboxMsg;
use super::{ExecRecord, SandboxHost};
use crate::runtime::{ExecSpec, Output};

/// Exit code reported when the exec timeout fired.
pub const EXIT_TIMEOUT: i64 = 124;
/// Most bytes merged into one output message.
const COALESCE_BYTES: usize = 256 * 1024;

/// Exit code reported when the process vanished with its container (terminated sandbox).
pub const EXIT_TERMINATED: i64 = 137;
/// Exit code of a command that does not exist, as a shell reports it.
pub const EXIT_NOT_FOUND: i64 = 127;
/// Exit code of a command that exists but could not be run (the engine's own code).
pub const EXIT_CANNOT_RUN: i64 = 126;
/// How the engine's message starts when it could not start an exec's process; it arrives
/// as the exec's first stdout chunk.
const ENGINE_START_FAILED: &[u8] = b"OCI runtime exec failed";

/// A validated exec request.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    pub sandbox_id: String,
    pub exec_id: String,
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub workdir: Option<String>,
    /// 0 = none.
    pub timeout_s: u64,
    pub stdin: bool,
}

type Out = mpsc::Sender<Result<ExecOutput, Status>>;

fn output(o: exec_output::Output) -> Result<ExecOutput, Status> {
    Ok(ExecOutput { output: Some(o) })
}

/// Runs `req` in `container` and streams to `out` until the exit code is sent.
pub async fn run<S>(host: SandboxHost, container: String, req: ExecRequest, input: S, out: Out)
where
    S: Stream<Item = Result<ExecInput, Status>> + Send + Unpin + 'static,
{
    match host.claim_exec(&req.exec_id) {
        Some(ExecRecord::Exited(code)) => {
            // A retry of an exec that already ran: report how it ended, do not run it again.
            let _ = out.send(output(exec_output::Output::Exit(code))).await;
            return;
        }
        Some(ExecRecord::Running) => {
            let msg = format!("exec_id: {:?} is already running; pick a new id for a new command", req.exec_id);
            let _ = out.send(Err(Status::already_exists(msg))).await;
            return;
        }
        None => {}
    }
    let spec =
        ExecSpec { cmd: req.command.clone(), env: req.env.clone(), workdir: req.workdir.clone(), stdin: req.stdin };
    // Found while the exec starts, so it costs no extra wait.
    let (process, oom) = tokio::join!(host.docker.exec(&container, &spec), host.docker.oom_counter(&container));
    let process = match process {
        Ok(p) => p,
        Err(e) => {
            // It never ran: a retry with the same id may run it.
            host.forget_exec(&req.exec_id);
            let e = e.naming(&container, &format!("sandbox {}", req.sandbox_id));
            let _ =
                out.send(Err(Status::failed_precondition(format!("exec in sandbox {}: {e}", req.sandbox_id)))).await;
            return;
        }
    };
    host.notify(&req.sandbox_id, SandboxMsg::ExecStarted);
    let started = std::time::Instant::now();
    if let Some(stdin) = process.stdin {
        tokio::spawn(pump_stdin(host.clone(), req.sandbox_id.clone(), input, stdin));
    }
    let code = match stream_output(process.output, req.timeout_s, &host, &process.exec_id, &out).await {
        Ended::TimedOut => EXIT_TIMEOUT,
        Ended::Exited => host.docker.exec_exit_code(&process.exec_id).await.ok().flatten().unwrap_or(EXIT_TERMINATED),
        Ended::NotStarted(engine_message) => {
            let (code, message) = not_started(&req.command[0], &engine_message);
            let _ = out.send(output(exec_output::Output::Stderr(message.into_bytes()))).await;
            code
        }
    };
    if code == EXIT_TERMINATED {
        if let Some((counter, before)) = oom {
            if counter.read().is_some_and(|now| now > before) {
                let limit = host.cluster.view.read(|c| c.sandboxes.get(&req.sandbox_id).map(|s| s.spec.memory_mib));
                let limit = limit.map_or(String::new(), |m| format!(" (sandbox memory limit {m} MiB)"));
                let message = format!("flotilla: killed: out of memory{limit}\n");
                let _ = out.send(output(exec_output::Output::Stderr(message.into_bytes()))).await;
            }
        }
    }
    host.finish_exec(&req.exec_id, code);
    host.cluster.metrics.exec_finished(started.elapsed());
    host.notify(&req.sandbox_id, SandboxMsg::ExecEnded);
    let _ = out.send(output(exec_output::Output::Exit(code))).await;
}

/// How the output of an exec ended.
enum Ended {
    /// The stream ended: the process exited (or its container went away).
    Exited,
    /// The exec timeout fired and the process was killed.
    TimedOut,
    /// The engine could not start the command; its message, not passed on as output.
    NotStarted(String),
}

/// The exit code and stderr text for a command the engine could not start (`engine` is its
/// message), like a shell: 127 "command not found" when the executable does not exist, 126
/// (the engine's code) with the reason otherwise (e.g. not executable).
pub fn not_started(program: &str, engine: &str) -> (i64, String) {
    // "OCI runtime exec failed: exec failed: unable to start container process: exec:
    // "x": executable file not found in $PATH: unknown" (a path that does not exist says
    // "no such file or directory" instead; a missing workdir says "chdir to cwd …").
    let missing = engine.contains("executable file not found")
        || (engine.contains("no such file or directory") && !engine.contains("chdir"));
    if missing {
        (EXIT_NOT_FOUND, format!("flotilla: {program}: command not found\n"))
    } else {
        let reason = engine.trim().rsplit_once("unable to start container process: ").map_or(engine.trim(), |(_, r)| r);
        (EXIT_CANNOT_RUN, format!("flotilla: {program}: cannot run: {reason}\n"))
    }
}

/// Forwards output chunks until the stream ends.
async fn stream_output(
    mut chunks: std::pin::Pin<Box<dyn Stream<Item = Result<Output, crate::runtime::RuntimeError>> + Send>>,
    timeout_s: u64,
    host: &SandboxHost,
    exec_id: &str,
    out: &Out,
) -> Ended {
    let deadline = (timeout_s > 0).then(|| tokio::time::Instant::now() + Duration::from_secs(timeout_s));
    // A chunk of the other stream met while coalescing, sent next.
    let mut carry: Option<Output> = None;
    let mut first = true;
    loop {
        let next = async {
            if let Some(c) = carry.take() {
                return Some(Some(Ok(c)));
            }
            match deadline {
                Some(d) => tokio::time::timeout_at(d, chunks.next()).await.ok(),
                None => Some(chunks.next().await),
            }
        };
        match next.await {
            None => {
                // Timed out: kill the process; its output stream then ends.
                if let Err(e) = host.docker.kill_exec(exec_id).await {
                    tracing::warn!(error = %e, "could not kill timed-out exec");
                }
                return Ended::TimedOut;
            }
            Some(None) => return Ended::Exited,
            Some(Some(Ok(Output::Stdout(b))))
                if std::mem::take(&mut first)
                    && b.starts_with(ENGINE_START_FAILED)
                    && host.docker.exec_never_started(exec_id).await.unwrap_or(false) =>
            {
                return Ended::NotStarted(String::from_utf8_lossy(&b).into_owned());
            }
            Some(Some(Ok(chunk))) => {
                first = false;
                let (is_stdout, mut buf) = match chunk {
                    Output::Stdout(b) => (true, b.to_vec()),
                    Output::Stderr(b) => (false, b.to_vec()),
                };
                // Merge what the engine has already delivered into one message (fewer, larger
                // gRPC frames); waiting for more would delay live output, so it never waits.
                let mut ended = false;
                while buf.len() < COALESCE_BYTES {
                    match chunks.next().now_or_never() {
                        Some(Some(Ok(Output::Stdout(b)))) if is_stdout => buf.extend_from_slice(&b),
                        Some(Some(Ok(Output::Stderr(b)))) if !is_stdout => buf.extend_from_slice(&b),
                        Some(Some(Ok(other))) => {
                            carry = Some(other);
                            break;
                        }
                        Some(None) | Some(Some(Err(_))) => {
                            ended = true;
                            break;
                        }
                        None => break,
                    }
                }
                let msg = if is_stdout { exec_output::Output::Stdout(buf) } else { exec_output::Output::Stderr(buf) };
                if out.send(output(msg)).await.is_err() {
                    // The client went away: like a hung-up terminal, the command goes too, so
                    // nothing runs on unwatched and unbounded by its timeout.
                    if let Err(e) = host.docker.kill_exec(exec_id).await {
                        tracing::warn!(error = %e, "could not kill exec of a departed client");
                    }
                    return Ended::Exited;
                }
                if ended {
                    return Ended::Exited;
                }
            }
            Some(Some(Err(e))) => {
                tracing::debug!(error = %e, "exec output stream ended with an error");
                return Ended::Exited;
            }
        }
    }
}

/// Copies stdin chunks from the client into the process until EOF or the client goes away.
async fn pump_stdin<S>(
    host: SandboxHost,
    sandbox_id: String,
    mut input: S,
    mut stdin: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
) where
    S: Stream<Item = Result<ExecInput, Status>> + Send + Unpin + 'static,
{
    while let Some(Ok(msg)) = input.next().await {
        match msg.input {
            Some(exec_input::Input::Stdin(data)) => {
                host.notify(&sandbox_id, SandboxMsg::Input);
                if stdin.write_all(&data).await.is_err() || stdin.flush().await.is_err() {
                    return;
                }
            }
            Some(exec_input::Input::StdinEof(_)) => break,
            _ => {}
        }
    }
    let _ = stdin.shutdown().await;
}
