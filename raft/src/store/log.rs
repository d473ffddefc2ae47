//! The Raft log, vote and committed index in sled.
// openraft's `StorageIOError` is large and is what its storage traits return; boxing it in
// our helpers would only move the cost.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};

use crate::{codec, NodeId, TypeConfig};

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const LAST_PURGED: &[u8] = b"last_purged";

/// Appends waiting for the group-commit flusher. openraft has at most a few thousand log
/// writes in flight; a full queue makes `append` wait, which slows the leader down.
const FLUSH_QUEUE: usize = 4096;

/// Log storage. Cloning shares the same database (openraft hands clones to its log readers).
///
/// **Group commit.** openraft runs one `append` at a time and, with one entry per client
/// write, an fsync per append would cap a leader at one write per fsync. So `append` writes
/// the entries to sled's memory and queues openraft's completion callback; a flusher task
/// fsyncs once for everything queued so far and then completes those callbacks in order.
/// openraft treats entries as durable only once their callback has run (a Raft requirement
/// it enforces), so acknowledging after the shared fsync keeps every guarantee.
#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    flush_queue: tokio::sync::mpsc::Sender<LogFlushed<TypeConfig>>,
}

impl LogStore {
    /// Must be called inside a tokio runtime: it starts the flusher task, which ends when the
    /// last clone of the store is dropped.
    pub(super) fn new(db: sled::Db) -> Result<Self, sled::Error> {
        let (flush_queue, rx) = tokio::sync::mpsc::channel(FLUSH_QUEUE);
        tokio::spawn(group_commit(db.clone(), rx));
        Ok(Self { log: db.open_tree("log")?, meta: db.open_tree("meta")?, db, flush_queue })
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageIOError<NodeId>> {
        let Some(bytes) = self.meta.get(key).map_err(|e| StorageIOError::read(&e))? else {
            return Ok(None);
        };
        codec::decode(&bytes).map(Some).map_err(|e| StorageIOError::read(&e))
    }

    fn put_meta<T: serde::Serialize>(&self, key: &[u8], value: &T) -> Result<(), StorageIOError<NodeId>> {
        let bytes = codec::encode(value).map_err(|e| StorageIOError::write(&e))?;
        self.meta.insert(key, bytes).map_err(|e| StorageIOError::write(&e))?;
        Ok(())
    }

    async fn flush(&self) -> Result<(), StorageIOError<NodeId>> {
        self.db.flush_async().await.map_err(|e| StorageIOError::write(&e))?;
        Ok(())
    }

    fn last_entry(&self) -> Result<Option<Entry<TypeConfig>>, StorageIOError<NodeId>> {
        let Some((_, bytes)) = self.log.last().map_err(|e| StorageIOError::read_logs(&e))? else {
            return Ok(None);
        };
        codec::decode(&bytes).map(Some).map_err(|e| StorageIOError::read_logs(&e))
    }
}

/// The group-commit loop: one fsync for every callback queued while the previous one ran.
async fn group_commit(db: sled::Db, mut rx: tokio::sync::mpsc::Receiver<LogFlushed<TypeConfig>>) {
    let mut waiting = Vec::new();
    while rx.recv_many(&mut waiting, FLUSH_QUEUE).await > 0 {
        let flushed = db.flush_async().await.map(|_| ()).map_err(|e| e.to_string());
        for callback in waiting.drain(..) {
            callback.log_io_completed(flushed.clone().map_err(std::io::Error::other));
        }
    }
}

fn key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let start = match range.start_bound() {
            Bound::Included(&i) => Bound::Included(key(i)),
            Bound::Excluded(&i) => Bound::Excluded(key(i)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let end = match range.end_bound() {
            Bound::Included(&i) => Bound::Included(key(i)),
            Bound::Excluded(&i) => Bound::Excluded(key(i)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut entries = Vec::new();
        for item in self.log.range::<[u8; 8], _>((start, end)) {
            let (_, bytes) = item.map_err(|e| StorageIOError::read_logs(&e))?;
            entries.push(codec::decode(&bytes).map_err(|e| StorageIOError::read_logs(&e))?);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let last_purged_log_id: Option<LogId<NodeId>> = self.get_meta(LAST_PURGED)?;
        let last_log_id = self.last_entry()?.map(|e| e.log_id).or(last_purged_log_id);
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.put_meta(VOTE, vote).map_err(|e| StorageIOError::write_vote(&e))?;
        self.flush().await.map_err(|e| StorageIOError::write_vote(&e))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.get_meta(VOTE).map_err(|e| StorageIOError::read_vote(&e))?)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StorageError<NodeId>> {
        // Not flushed on its own: losing it only means re-applying from the snapshot on restart.
        self.put_meta(COMMITTED, &committed)?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.get_meta::<Option<LogId<NodeId>>>(COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = sled::Batch::default();
        for entry in entries {
            let bytes = codec::encode(&entry).map_err(|e| StorageIOError::write_logs(&e))?;
            batch.insert(&key(entry.log_id.index), bytes);
        }
        self.log.apply_batch(batch).map_err(|e| StorageIOError::write_logs(&e))?;
        self.flush_queue
            .send(callback)
            .await
            .map_err(|_| StorageIOError::write_logs(&std::io::Error::other("log flusher stopped")))?;
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut batch = sled::Batch::default();
        for item in self.log.range(key(log_id.index)..) {
            let (k, _) = item.map_err(|e| StorageIOError::write_logs(&e))?;
            batch.remove(k);
        }
        self.log.apply_batch(batch).map_err(|e| StorageIOError::write_logs(&e))?;
        self.flush().await?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        // Record the purge point first: a crash in between leaves extra entries, never a hole.
        self.put_meta(LAST_PURGED, &log_id)?;
        self.flush().await?;
        let mut batch = sled::Batch::default();
        for item in self.log.range(..=key(log_id.index)) {
            let (k, _) = item.map_err(|e| StorageIOError::write_logs(&e))?;
            batch.remove(k);
        }
        self.log.apply_batch(batch).map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }
}
