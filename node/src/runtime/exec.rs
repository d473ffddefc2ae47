//! Running commands in a running container with streamed output and optional stdin.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::sandbox::env_list;
use super::{Docker, ExecSpec, RuntimeError};

/// How long [`Docker::exec_exit_code`] keeps asking while the engine still reports the
/// process as running (its exit is recorded a moment after the output ends).
const EXIT_CODE_GRACE: Duration = Duration::from_secs(2);

/// Pause between two exit-code polls.
const EXIT_CODE_POLL: Duration = Duration::from_millis(10);

/// One chunk of an exec's output, as the engine forwarded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Bytes the process wrote to its standard output.
    Stdout(Bytes),
    /// Bytes the process wrote to its standard error.
    Stderr(Bytes),
}

/// A command started by [`Docker::exec`].
pub struct ExecProcess {
    /// Output chunks in the order produced; the stream ends when the process (and anything
    /// holding its stdout/stderr) is done, at the latest about 2 s after the process exits.
    pub output: Pin<Box<dyn Stream<Item = Result<Output, RuntimeError>> + Send>>,
    /// The process's stdin when [`ExecSpec::stdin`] was set. `shutdown()` or dropping it
    /// closes stdin (the process reads EOF).
    pub stdin: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    /// Engine id of the exec, for [`Docker::exec_exit_code`].
    pub exec_id: String,
}

impl std::fmt::Debug for ExecProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecProcess")
            .field("exec_id", &self.exec_id)
            .field("stdin", &self.stdin.is_some())
            .finish_non_exhaustive()
    }
}

impl Docker {
    /// Runs `spec.cmd` in running container `id` as the container's user, with the container's
    /// environment plus `spec.env`. Output is streamed as it is produced, stdout and stderr
    /// kept apart. Fails with [`RuntimeError::Conflict`] if the container is not running.
    pub async fn exec(&self, id: &str, spec: &ExecSpec) -> Result<ExecProcess, RuntimeError> {
        if spec.cmd.is_empty() {
            return Err(RuntimeError::InvalidSpec("exec needs a command".into()));
        }
        let config = ExecConfig {
            attach_stdin: Some(spec.stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            cmd: Some(spec.cmd.clone()),
            env: Some(env_list(&spec.env)),
            working_dir: spec.workdir.clone(),
            ..Default::default()
        };
        let exec_id = self.inner.create_exec(id, config).await.map_err(|e| RuntimeError::for_container(id, e))?.id;
        let started = self.inner.start_exec(&exec_id, Some(StartExecOptions::default())).await?;
        let StartExecResults::Attached { output, input } = started else {
            return Err(RuntimeError::Engine(format!("exec {exec_id} started detached")));
        };
        let stdin = spec.stdin.then(|| Box::pin(ExecStdin { inner: Some(input) }) as Pin<Box<dyn AsyncWrite + Send>>);
        Ok(ExecProcess { output: output.filter_map(|item| async { to_output(item) }).boxed(), stdin, exec_id })
    }

    /// Exit code of a finished exec (128 + n when signal n killed it), or `None` if it is
    /// still running. Call it after the output stream ended; it allows the engine up to 2 s
    /// to record the exit.
    pub async fn exec_exit_code(&self, exec_id: &str) -> Result<Option<i64>, RuntimeError> {
        self.inspect_exec_until(exec_id, EXIT_CODE_GRACE, |inspect, late| {
            let running = inspect.running.unwrap_or(false);
            (!running || late).then(|| inspect.exit_code.filter(|_| !running))
        })
        .await
    }

    /// Whether exec `exec_id` ended without its process ever starting (the engine could not
    /// run the command: not found, not executable). The engine then reports exit 126 with no
    /// pid and writes its own message to the output, which callers should not pass on as
    /// the command's output. A process that got a pid did start.
    pub async fn exec_never_started(&self, exec_id: &str) -> Result<bool, RuntimeError> {
        self.inspect_exec_until(exec_id, EXIT_CODE_GRACE, |inspect, late| {
            let started = inspect.pid.is_some_and(|p| p > 0);
            let running = inspect.running.unwrap_or(false);
            if started || late {
                Some(false)
            } else {
                (!running).then_some(true)
            }
        })
        .await
    }

    /// Inspects exec `exec_id` every few ms until `settled` gives an answer; `late` tells
    /// `settled` that `grace` has passed and it must answer now. The engine updates an
    /// exec's record (exit code, pid) a moment after the fact, hence the polling.
    pub(super) async fn inspect_exec_until<T>(
        &self,
        exec_id: &str,
        grace: Duration,
        settled: impl Fn(&bollard::models::ExecInspectResponse, bool) -> Option<T>,
    ) -> Result<T, RuntimeError> {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let inspect =
                self.inner.inspect_exec(exec_id).await.map_err(|e| RuntimeError::for_container(exec_id, e))?;
            if let Some(answer) = settled(&inspect, tokio::time::Instant::now() >= deadline) {
                return Ok(answer);
            }
            tokio::time::sleep(EXIT_CODE_POLL).await;
        }
    }
}

fn to_output(item: Result<LogOutput, bollard::errors::Error>) -> Option<Result<Output, RuntimeError>> {
    match item {
        Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => Some(Ok(Output::Stdout(message))),
        Ok(LogOutput::StdErr { message }) => Some(Ok(Output::Stderr(message))),
        Ok(LogOutput::StdIn { .. }) => None,
        Err(e) => Some(Err(e.into())),
    }
}

/// The write half of an exec's connection. The engine closes the process's stdin when the
/// connection is half-closed; dropping the half alone would not do that (the read half keeps
/// the connection open), so dropping this wrapper half-closes it in a spawned task.
struct ExecStdin {
    /// `None` once shut down.
    inner: Option<Pin<Box<dyn AsyncWrite + Send>>>,
}

impl ExecStdin {
    fn closed() -> io::Error {
        io::Error::new(io::ErrorKind::BrokenPipe, "exec stdin already shut down")
    }
}

impl AsyncWrite for ExecStdin {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.inner.as_mut() {
            Some(inner) => inner.as_mut().poll_write(cx, buf),
            None => Poll::Ready(Err(Self::closed())),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.inner.as_mut() {
            Some(inner) => inner.as_mut().poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let done = inner.as_mut().poll_shutdown(cx);
        if done.is_ready() {
            self.inner = None;
        }
        done
    }
}

impl Drop for ExecStdin {
    fn drop(&mut self) {
        let Some(mut inner) = self.inner.take() else {
            return;
        };
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(e) = inner.shutdown().await {
                    tracing::debug!("closing exec stdin on drop: {e}");
                }
            });
        }
    }
}
