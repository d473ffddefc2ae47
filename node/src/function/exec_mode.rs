//! Exec mode: each input runs the function's command once in the replica's container, with
//! the input on stdin; stdout is the output. A non-zero exit fails the input with the exit
//! code and the end of stderr; the time limit kills the process (exit 124, as in sandboxes).

use std::time::Duration;

use flotilla::worker::MAX_PAYLOAD;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::output::Sink;
use crate::runtime::{Docker, ExecSpec, Output};

/// How much of stderr a failure message quotes (its end).
pub const STDERR_TAIL: usize = 4096;

/// Runs `command` in `container` on `input`. `Err` is the failure message. Its stderr is also
/// kept in `output` for `flotilla logs fn` (not kept with `None`).
pub async fn run(
    docker: &Docker,
    container: &str,
    command: &[String],
    input: Vec<u8>,
    timeout: Duration,
    output: Option<&Sink>,
) -> Result<Vec<u8>, String> {
    let spec = ExecSpec { cmd: command.to_vec(), env: vec![], workdir: None, stdin: true };
    let mut process = docker.exec(container, &spec).await.map_err(|e| format!("could not start the command: {e}"))?;
    let exec_id = process.exec_id.clone();
    // If the caller goes away (a client disconnects, a call is cancelled) the process dies too.
    let mut guard = KillOnDrop { docker: docker.clone(), exec_id: exec_id.clone(), armed: true };
    let stdin = process.stdin.take();
    let feed = async move {
        if let Some(mut stdin) = stdin {
            // A command that exits without reading its input closes the pipe: not an error.
            let _ = stdin.write_all(&input).await;
            let _ = stdin.shutdown().await;
        }
    };
    let collect = async {
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        while let Some(chunk) = process.output.next().await {
            match chunk.map_err(|e| format!("output stream failed: {e}"))? {
                Output::Stdout(b) => {
                    if stdout.len() + b.len() > MAX_PAYLOAD {
                        return Err(format!("output is over the limit of {MAX_PAYLOAD} bytes"));
                    }
                    stdout.extend_from_slice(&b);
                }
                Output::Stderr(b) => {
                    if let Some(sink) = output {
                        sink.stderr(&b);
                    }
                    stderr.extend_from_slice(&b);
                    if stderr.len() > 2 * STDERR_TAIL {
                        stderr.drain(..stderr.len() - STDERR_TAIL);
                    }
                }
            }
        }
        Ok((stdout, stderr))
    };
    let outcome = tokio::time::timeout(timeout, async { tokio::join!(feed, collect).1 }).await;
    let (stdout, stderr) = match outcome {
        Ok(Ok(out)) => out,
        Ok(Err(message)) => return Err(message),
        Err(_) => return Err(format!("timed out after {}s (exit 124)", timeout.as_secs())),
    };
    guard.armed = false;
    match docker.exec_exit_code(&exec_id).await {
        Ok(Some(0)) => Ok(stdout),
        Ok(Some(code)) => Err(failure(code, &stderr)),
        Ok(None) => Err("the command's exit code is unknown".into()),
        Err(e) => Err(format!("could not read the exit code: {e}")),
    }
}

/// Kills an exec's process when dropped while armed.
struct KillOnDrop {
    docker: Docker,
    exec_id: String,
    armed: bool,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.armed {
            let (docker, exec_id) = (self.docker.clone(), std::mem::take(&mut self.exec_id));
            tokio::spawn(async move {
                if let Err(e) = docker.kill_exec(&exec_id).await {
                    tracing::warn!(exec = %exec_id, error = %e, "could not kill an abandoned function process");
                }
            });
        }
    }
}

/// `exit N: <end of stderr>`.
pub fn failure(code: i64, stderr: &[u8]) -> String {
    let start = stderr.len().saturating_sub(STDERR_TAIL);
    let text = String::from_utf8_lossy(&stderr[start..]);
    let text = text.trim();
    if text.is_empty() {
        format!("exit {code}")
    } else {
        format!("exit {code}: {text}")
    }
}
