//! Write batching on the leader: catalog commands that arrive while earlier ones are being
//! committed are proposed together as one Raft entry ([`Command::Batch`]).
//!
//! openraft 0.9 runs its engine once per client write, so under many concurrent clients the
//! leader's core loop, not the disk, limits throughput (docs/benchmarks.md). A batch costs one
//! engine step, one log entry and one replication message however many commands it holds.
//! With a single client nothing waits: a command finds the queue empty and is proposed at
//! once, alone. At most [`IN_FLIGHT`] batches are being committed at a time; commands that
//! arrive meanwhile queue up and form the next batch. `apply` handles the commands of a batch
//! in order, each exactly as if it had been its own entry, and each caller gets its own
//! response.
//!
//! A batch proposed in a term that ends before it is answered fails with "not leader" at once
//! (the client retries; writes carry request ids or are idempotent). openraft 0.9 answers a
//! deposed leader's pending writes when it truncates them, but not when a snapshot install
//! purges them, and such a `client_write` never returns: without this, two of them held both
//! batch slots for good, and the node committed no write again, even as leader
//! (docs/reliability.md R2).

use std::sync::Arc;

use flotilla_raft::{Command, Raft, Response};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::error::NodeError;

/// Batches being committed at once.
const IN_FLIGHT: usize = 2;
/// Most commands in one batch.
const MAX_BATCH: usize = 512;
/// Commands waiting for a batch; a full queue makes `submit` wait (backpressure).
const QUEUE: usize = 4096;

type Reply = oneshot::Sender<Result<Response, NodeError>>;

/// Handle for submitting commands to the leader's batcher. Cheap to clone.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<(Command, Reply)>,
}

impl Batcher {
    /// Starts the batching task for `raft`; it ends when every handle is dropped.
    /// `to_error` maps openraft's write error (not leader, stopped, …) to the node's error.
    pub fn start(
        raft: Raft,
        to_error: fn(flotilla_raft::NodeId, WriteError) -> NodeError,
        id: flotilla_raft::NodeId,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(raft, rx, to_error, id));
        Self { tx }
    }

    /// Proposes a stamped command and returns its response once committed and applied.
    pub async fn submit(&self, cmd: Command) -> Result<Response, NodeError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send((cmd, reply)).await.map_err(|_| NodeError::Stopped("write batcher stopped".into()))?;
        rx.await.map_err(|_| NodeError::Stopped("write batcher stopped".into()))?
    }
}

/// Returns once node `id` no longer leads in `term`: false when another term or leader is
/// seen, true when Raft stopped instead.
async fn deposed(raft: &Raft, id: flotilla_raft::NodeId, term: u64) -> bool {
    let mut metrics = raft.metrics();
    let stopped = metrics.wait_for(|m| m.current_term != term || m.current_leader != Some(id)).await.is_err();
    stopped
}

/// openraft's client write error.
pub type WriteError = openraft::error::RaftError<
    flotilla_raft::NodeId,
    openraft::error::ClientWriteError<flotilla_raft::NodeId, flotilla_raft::Node>,
>;

async fn run(
    raft: Raft,
    mut rx: mpsc::Receiver<(Command, Reply)>,
    to_error: fn(flotilla_raft::NodeId, WriteError) -> NodeError,
    id: flotilla_raft::NodeId,
) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut batch = Vec::new();
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        let (cmds, replies): (Vec<Command>, Vec<Reply>) = batch.drain(..).unzip();
        let raft = raft.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let single = cmds.len() == 1;
            let entry = if single { cmds.into_iter().next().expect("one command") } else { Command::Batch(cmds) };
            let term = raft.metrics().borrow().current_term;
            let written = tokio::select! {
                written = raft.client_write(entry) => written,
                stopped = deposed(&raft, id, term) => {
                    for reply in replies {
                        let err = if stopped { NodeError::Stopped("raft stopped".into()) } else { NodeError::NotLeader(id) };
                        let _ = reply.send(Err(err));
                    }
                    return;
                }
            };
            match written {
                Ok(resp) => match resp.data {
                    Response::Batch(responses) if !single => {
                        for (reply, r) in replies.into_iter().zip(responses) {
                            let _ = reply.send(Ok(r));
                        }
                    }
                    r => {
                        for reply in replies {
                            let _ = reply.send(Ok(r.clone()));
                        }
                    }
                },
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(to_error(id, e.clone())));
                    }
                }
            }
        });
    }
}
