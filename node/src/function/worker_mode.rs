//! Worker mode: one long-lived process per replica, fed request frames on stdin and read for
//! response frames on stdout (the protocol is documented in `flotilla::worker`).
//!
//! A [`WorkerProcess`] multiplexes: each request gets a fresh id and a oneshot waiting for
//! the response with that id, so `concurrency > 1` inputs may be outstanding at once and
//! answered in any order. The reader task owns stdout; when the process writes something
//! that is not a frame, answers an id nobody asked, or exits, every outstanding input fails
//! with the reason (and the end of stderr), and the process is marked dead so the replica
//! starts a new one for the next input.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use flotilla::worker::{check_len, decode_body, Frame};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};

use super::exec_mode::STDERR_TAIL;
use super::output::Sink;
use crate::runtime::{Docker, ExecSpec, Output};

type Reply = Result<Vec<u8>, String>;

/// A running worker process.
pub struct WorkerProcess {
    requests: mpsc::UnboundedSender<Vec<u8>>,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Reply>>>>,
    next_id: AtomicU64,
    dead: Arc<AtomicBool>,
    exec_id: String,
}

impl WorkerProcess {
    /// Starts `command` in `container` and the tasks that feed and read it.
    /// Its stderr also goes to `output` (see [`super::output`]).
    pub async fn start(
        docker: &Docker,
        container: &str,
        command: &[String],
        output: Sink,
    ) -> Result<Arc<Self>, String> {
        let spec = ExecSpec { cmd: command.to_vec(), env: vec![], workdir: None, stdin: true };
        let mut process =
            docker.exec(container, &spec).await.map_err(|e| format!("could not start the worker: {e}"))?;
        let mut stdin = process.stdin.take().ok_or("worker started without stdin")?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Reply>>>> = Default::default();
        let dead = Arc::new(AtomicBool::new(false));
        let worker = Arc::new(WorkerProcess {
            requests: tx,
            pending: pending.clone(),
            next_id: AtomicU64::new(1),
            dead: dead.clone(),
            exec_id: process.exec_id.clone(),
        });
        tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                if stdin.write_all(&frame).await.is_err() || stdin.flush().await.is_err() {
                    break;
                }
            }
            let _ = stdin.shutdown().await;
        });
        let sink = output;
        let mut output = process.output;
        tokio::spawn(async move {
            let (mut buf, mut stderr) = (Vec::<u8>::new(), Vec::<u8>::new());
            let why = 'read: loop {
                let Some(chunk) = output.next().await else { break "the worker process exited".to_string() };
                match chunk {
                    Err(e) => break format!("the worker's output stream failed: {e}"),
                    Ok(Output::Stderr(b)) => {
                        tracing::debug!(stderr = %String::from_utf8_lossy(&b).trim_end(), "worker");
                        sink.stderr(&b);
                        stderr.extend_from_slice(&b);
                        if stderr.len() > 2 * STDERR_TAIL {
                            stderr.drain(..stderr.len() - STDERR_TAIL);
                        }
                    }
                    Ok(Output::Stdout(b)) => {
                        buf.extend_from_slice(&b);
                        loop {
                            match take_frame(&mut buf) {
                                Ok(None) => break,
                                Ok(Some(Frame::Ok { id, output })) => answer(&pending, id, Ok(output)),
                                Ok(Some(Frame::Error { id, message })) => answer(&pending, id, Err(message)),
                                Ok(Some(Frame::Request { .. })) => {
                                    break 'read "malformed worker output: a request frame on stdout".into()
                                }
                                Err(e) => break 'read format!("malformed worker output: {e}"),
                            }
                        }
                    }
                }
            };
            dead.store(true, Ordering::SeqCst);
            let tail = String::from_utf8_lossy(&stderr[stderr.len().saturating_sub(STDERR_TAIL)..]).trim().to_string();
            let why = if tail.is_empty() { why } else { format!("{why}; stderr: {tail}") };
            tracing::warn!(reason = %why, "worker process ended");
            for (_, waiter) in pending.lock().expect("pending lock").drain() {
                let _ = waiter.send(Err(why.clone()));
            }
        });
        Ok(worker)
    }

    /// Whether the process has ended (a new one is needed).
    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    /// Engine id of the process's exec, to kill it.
    pub fn exec_id(&self) -> &str {
        &self.exec_id
    }

    /// Sends one input and waits for its response.
    pub async fn call(&self, input: Vec<u8>) -> Reply {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("pending lock").insert(id, tx);
        if self.is_dead() || self.requests.send(Frame::Request { id, input }.encode()).is_err() {
            self.pending.lock().expect("pending lock").remove(&id);
            return Err("the worker process is not running".into());
        }
        rx.await.unwrap_or_else(|_| Err("the worker process ended".into()))
    }
}

/// Hands a response to the input waiting for it; an id nobody waits for is ignored (its
/// caller gave up, e.g. on a timeout).
fn answer(pending: &Mutex<HashMap<u64, oneshot::Sender<Reply>>>, id: u64, reply: Reply) {
    if let Some(waiter) = pending.lock().expect("pending lock").remove(&id) {
        let _ = waiter.send(reply);
    }
}

/// Takes one whole frame off the front of `buf`, if there is one.
fn take_frame(buf: &mut Vec<u8>) -> Result<Option<Frame>, flotilla::worker::FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
    check_len(len)?;
    if buf.len() < 4 + len {
        return Ok(None);
    }
    let frame = decode_body(&buf[4..4 + len])?;
    buf.drain(..4 + len);
    Ok(Some(frame))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_taken_whole_from_a_byte_stream() {
        let a = Frame::Ok { id: 1, output: b"one".to_vec() }.encode();
        let b = Frame::Error { id: 2, message: "two".into() }.encode();
        let mut buf = [a.clone(), b.clone()].concat();
        let tail = buf.split_off(a.len() + 3);
        assert_eq!(take_frame(&mut buf).unwrap(), Some(Frame::Ok { id: 1, output: b"one".to_vec() }));
        assert_eq!(take_frame(&mut buf).unwrap(), None, "half a frame waits for the rest");
        buf.extend_from_slice(&tail);
        assert_eq!(take_frame(&mut buf).unwrap(), Some(Frame::Error { id: 2, message: "two".into() }));
        assert!(buf.is_empty());
        let mut junk = b"oops, a print\n".to_vec();
        assert!(take_frame(&mut junk).is_err());
    }
}
