//! Running commands in a sandbox: collect everything (`output`) or stream it (`spawn`).
//!
//! Each exec carries an id chosen here; if the connection fails before the stream starts the
//! next endpoint is tried with the same id, and a node never runs one id twice.

use std::time::Duration;

use flotilla_proto::worker::{exec_input, exec_output, worker_client::WorkerClient, ExecInput, ExecOutput, ExecStart};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use crate::client::Client;
use crate::error::{Error, Result};

/// Stdin messages buffered before `write_stdin` waits.
const STDIN_BUFFER: usize = 64;

/// Everything an exec printed, and how it ended.
#[derive(Debug, Clone, Serialize)]
pub struct ExecResult {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The process's exit code; 124 if the exec timeout killed it, 128+N if signal N did.
    pub exit_code: i64,
}

/// One piece of output, in the order the process produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecEvent {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
}

/// Builds an exec: `sandbox.exec(["sh", "-c", "echo hi"]).output().await?`.
#[derive(Clone)]
pub struct ExecBuilder {
    client: Client,
    start: ExecStart,
}

impl ExecBuilder {
    pub(crate) fn new(client: Client, sandbox_id: String, command: Vec<String>) -> Self {
        let start = ExecStart { sandbox_id, exec_id: uuid::Uuid::new_v4().to_string(), command, ..Default::default() };
        Self { client, start }
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.start.env.insert(key.into(), value.into());
        self
    }
    pub fn workdir(mut self, dir: impl Into<String>) -> Self {
        self.start.workdir = Some(dir.into());
        self
    }
    /// Kills the command after this long (whole seconds, rounded up); the exit code is then
    /// 124. `Duration::ZERO` means no timeout (the default).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.start.timeout_s = crate::sandbox::whole_seconds(t);
        self
    }
    /// Uses this exec id instead of a fresh one (to make a retry of your own idempotent).
    pub fn exec_id(mut self, id: impl Into<String>) -> Self {
        self.start.exec_id = id.into();
        self
    }

    /// Runs the command with no stdin and collects its output.
    pub async fn output(self) -> Result<ExecResult> {
        let mut p = self.open(false).await?;
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        while let Some(ev) = p.next_event().await? {
            match ev {
                ExecEvent::Stdout(b) => stdout.extend_from_slice(&b),
                ExecEvent::Stderr(b) => stderr.extend_from_slice(&b),
            }
        }
        let exit_code = p.exit_code().ok_or_else(|| Error::Internal("exec ended without an exit code".into()))?;
        Ok(ExecResult { stdout, stderr, exit_code })
    }

    /// Starts the command with stdin open and returns a handle that streams its output.
    pub async fn spawn(self) -> Result<ExecProcess> {
        self.open(true).await
    }

    async fn open(mut self, stdin: bool) -> Result<ExecProcess> {
        self.start.stdin = stdin;
        let start = self.start;
        self.client
            .on_endpoints(|channel| {
                let start = ExecInput { input: Some(exec_input::Input::Start(start.clone())) };
                async move {
                    let (tx, rx) = mpsc::channel(STDIN_BUFFER);
                    tx.send(start).await.map_err(|_| Error::Internal("stdin channel closed".into()))?;
                    let mut w = WorkerClient::new(channel).max_decoding_message_size(64 << 20);
                    let output = w.exec(ReceiverStream::new(rx)).await?.into_inner();
                    Ok(ExecProcess { stdin: stdin.then_some(tx), output, exit: None })
                }
            })
            .await
    }
}

/// A running exec: write its stdin, read its output as it comes, get its exit code.
pub struct ExecProcess {
    stdin: Option<mpsc::Sender<ExecInput>>,
    output: Streaming<ExecOutput>,
    exit: Option<i64>,
}

impl ExecProcess {
    /// Sends bytes to the process's stdin.
    pub async fn write_stdin(&mut self, data: &[u8]) -> Result<()> {
        let tx = self.stdin.as_ref().ok_or_else(|| Error::FailedPrecondition("stdin is closed".into()))?;
        tx.send(ExecInput { input: Some(exec_input::Input::Stdin(data.to_vec())) })
            .await
            .map_err(|_| Error::FailedPrecondition("the exec has ended".into()))
    }

    /// Closes stdin: the process reads end-of-file.
    pub async fn close_stdin(&mut self) -> Result<()> {
        if let Some(tx) = self.stdin.take() {
            let _ = tx.send(ExecInput { input: Some(exec_input::Input::StdinEof(true)) }).await;
        }
        Ok(())
    }

    /// The next piece of output, or `None` once the process has exited (see [`Self::exit_code`]).
    pub async fn next_event(&mut self) -> Result<Option<ExecEvent>> {
        loop {
            if self.exit.is_some() {
                return Ok(None);
            }
            let Some(msg) = self.output.message().await? else {
                return Err(Error::Unavailable("the exec stream ended before the exit code".into()));
            };
            match msg.output {
                Some(exec_output::Output::Stdout(b)) => return Ok(Some(ExecEvent::Stdout(b))),
                Some(exec_output::Output::Stderr(b)) => return Ok(Some(ExecEvent::Stderr(b))),
                Some(exec_output::Output::Exit(code)) => self.exit = Some(code),
                None => {}
            }
        }
    }

    /// The exit code, once [`Self::next_event`] has returned `None`.
    pub fn exit_code(&self) -> Option<i64> {
        self.exit
    }

    /// Drops remaining output and waits for the exit code.
    pub async fn wait(mut self) -> Result<i64> {
        self.close_stdin().await?;
        while self.next_event().await?.is_some() {}
        self.exit.ok_or_else(|| Error::Internal("exec ended without an exit code".into()))
    }
}
