//! An exec session on the hosting node: runs a command in the sandbox's container and
//! streams its stdout/stderr back as produced, pumps stdin in, enforces the exec timeout,
//! and ends with exactly one exit code.
//!
//! Exit codes: the process's own; 124 when the exec timeout killed it; 128+N when a signal
//! N killed it (the engine reports that itself: 137 for SIGKILL, e.g. when the sandbox was
//! terminated under it).

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
    let process = match host.docker.exec(&container, &spec).await {
        Ok(p) => p,
        Err(e) => {
            // It never ran: a retry with the same id may run it.
            host.forget_exec(&req.exec_id);
            let _ =
                out.send(Err(Status::failed_precondition(format!("exec in sandbox {}: {e}", req.sandbox_id)))).await;
            return;
        }
    };
    host.notify(&req.sandbox_id, SandboxMsg::ExecStarted);
    if let Some(stdin) = process.stdin {
        tokio::spawn(pump_stdin(host.clone(), req.sandbox_id.clone(), input, stdin));
    }
    let timed_out = stream_output(process.output, req.timeout_s, &host, &process.exec_id, &out).await;
    let code = if timed_out {
        EXIT_TIMEOUT
    } else {
        host.docker.exec_exit_code(&process.exec_id).await.ok().flatten().unwrap_or(EXIT_TERMINATED)
    };
    host.finish_exec(&req.exec_id, code);
    host.notify(&req.sandbox_id, SandboxMsg::ExecEnded);
    let _ = out.send(output(exec_output::Output::Exit(code))).await;
}

/// Forwards output chunks until the stream ends; returns whether the timeout fired (then
/// the process was killed).
async fn stream_output(
    mut chunks: std::pin::Pin<Box<dyn Stream<Item = Result<Output, crate::runtime::RuntimeError>> + Send>>,
    timeout_s: u64,
    host: &SandboxHost,
    exec_id: &str,
    out: &Out,
) -> bool {
    let deadline = (timeout_s > 0).then(|| tokio::time::Instant::now() + Duration::from_secs(timeout_s));
    // A chunk of the other stream met while coalescing, sent next.
    let mut carry: Option<Output> = None;
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
                return true;
            }
            Some(None) => return false,
            Some(Some(Ok(chunk))) => {
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
                    return false;
                }
                if ended {
                    return false;
                }
            }
            Some(Some(Err(e))) => {
                tracing::debug!(error = %e, "exec output stream ended with an error");
                return false;
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
