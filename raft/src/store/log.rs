//! The Raft log, vote and committed index in an append-only file with `fdatasync`.
//!
//! Files, in the log directory (`<data-dir>/raft/wal/`):
//! - `log`: framed records ([`super::records`]): every entry as it was appended, and openraft's
//!   committed log id each time it moved. Appends go to the end; a truncation cuts the file.
//! - `state`: the vote and the last purged log id, bincode, replaced as a whole
//!   ([`Fs::replace`]: temp file, `fdatasync`, rename, `fsync` of the directory) and durable
//!   before the call that changed it returns.
//!
//! **What is acknowledged is on the disk.** openraft treats appended entries as durable only
//! once the append's callback has run. `append` writes the records to the file (page cache)
//! and queues the callback; a group-commit task calls `fdatasync` once for everything queued
//! while the previous one ran, then completes those callbacks in order. So a busy leader pays
//! one `fdatasync` for many writes, and nothing is acknowledged before the sync that covers it.
//! (sled, which held the log before, acknowledged after `sync_file_range`, which does not
//! flush the disk's write cache.)
//!
//! **Open.** The file is read from the start; the first torn or corrupt record and everything
//! after it are cut off (none of it was acknowledged). An entry whose index is at or below an
//! earlier one replaces it and everything after it (a truncation whose cut was lost, then
//! re-appended). Entries at or below the last purged id are skipped.
//!
//! **Truncate** cuts the file at the first removed entry, writes the committed id again (the
//! cut may have taken its last record) and syncs before it returns.
//!
//! **Purge** records the new purge point in `state` first (a crash after that leaves extra
//! entries in the file, never a hole), then drops the entries from memory. The file itself is
//! rewritten with only the live entries when the purged prefix is both over `compact_at` bytes
//! and over half the file, so purging costs nothing most of the time and the file stays
//! bounded. The rewrite goes through [`Fs::replace`], so a crash leaves the old file or the new.
//!
//! All entries of the log are also kept in memory (the log is bounded by the snapshot policy:
//! `raft.snapshot_every` plus `raft.logs_kept_after_snapshot` entries), so reads never touch the
//! disk.
// openraft's `StorageIOError` is large and is what its storage traits return; boxing it in
// our helpers would only move the cost.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};
use serde::{Deserialize, Serialize};

use super::fs::{AppendFile, Fs};
use super::records::{frame, scan, Record};
use crate::{codec, NodeId, TypeConfig};

/// Appends waiting for the group-commit task. openraft has at most a few thousand log
/// writes in flight; a full queue makes `append` wait, which slows the leader down.
const FLUSH_QUEUE: usize = 4096;

/// Purged bytes at the head of the log file above which a purge rewrites the file.
pub const COMPACT_AT: u64 = 64 << 20;

/// The log file's name in the log directory.
pub(super) const LOG_FILE: &str = "log";
/// The state file's name in the log directory.
pub(super) const STATE_FILE: &str = "state";

/// What is kept in the `state` file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct State {
    pub(super) vote: Option<Vote<NodeId>>,
    pub(super) last_purged: Option<LogId<NodeId>>,
}

/// Called once the appended entries are durable, or with the error that made them not.
pub(super) type Done = Box<dyn FnOnce(io::Result<()>) + Send>;

struct Inner {
    file: Arc<dyn AppendFile>,
    file_len: u64,
    /// index -> (offset of its record in the file, the entry).
    entries: BTreeMap<u64, (u64, Entry<TypeConfig>)>,
    state: State,
    committed: Option<LogId<NodeId>>,
    compact_at: u64,
}

/// Log storage. Cloning shares the same files and memory (openraft hands clones to its log
/// readers).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    flush_queue: tokio::sync::mpsc::Sender<Done>,
}

/// Why the log directory could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum LogOpenError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("corrupt state file: {0}")]
    State(codec::CodecError),
    #[error("the log has a hole: entry {found} follows entry {after}")]
    Hole { after: u64, found: u64 },
}

fn io_write(e: io::Error) -> StorageIOError<NodeId> {
    StorageIOError::write_logs(&e)
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, cutting off a torn tail. Must be called inside a
    /// tokio runtime: it starts the group-commit task, which ends with the last clone.
    pub fn open(fs: Arc<dyn Fs>, dir: &Path, compact_at: u64) -> Result<Self, LogOpenError> {
        fs.create_dir_all(dir)?;
        let state = match fs.read(&dir.join(STATE_FILE))? {
            Some(bytes) => codec::decode(&bytes).map_err(LogOpenError::State)?,
            None => State::default(),
        };
        let log_path = dir.join(LOG_FILE);
        let bytes = fs.read(&log_path)?.unwrap_or_default();
        let scanned = scan(&bytes);
        let file = fs.open_append(&log_path)?;
        if scanned.valid_len < bytes.len() as u64 {
            tracing::warn!(
                path = %log_path.display(),
                cut = bytes.len() as u64 - scanned.valid_len,
                "cutting a torn or corrupt tail off the raft log (never acknowledged)"
            );
            file.truncate(scanned.valid_len)?;
            file.sync_data()?;
        }
        let mut entries = BTreeMap::new();
        let mut committed = None;
        for s in scanned.records {
            match s.record {
                Record::Entry(e) => {
                    entries.split_off(&e.log_id.index);
                    entries.insert(e.log_id.index, (s.offset, e));
                }
                Record::Committed(c) => committed = c,
            }
        }
        if let Some(purged) = state.last_purged {
            entries = entries.split_off(&(purged.index + 1));
        }
        let mut expected = None;
        for &index in entries.keys() {
            if let Some(after) = expected.filter(|&e| e != index) {
                return Err(LogOpenError::Hole { after: after - 1, found: index });
            }
            expected = Some(index + 1);
        }
        let inner = Inner { file, file_len: scanned.valid_len, entries, state, committed, compact_at };
        let (flush_queue, rx) = tokio::sync::mpsc::channel(FLUSH_QUEUE);
        let inner = Arc::new(Mutex::new(inner));
        tokio::spawn(group_commit(inner.clone(), rx));
        Ok(Self { inner, fs, dir: dir.to_path_buf(), flush_queue })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("log store lock poisoned")
    }

    /// Writes `entries` to the file and calls `done` once they are durable. The Raft side wraps
    /// openraft's callback in `done`; the crash tests record acknowledgements with it.
    pub(super) async fn append_then(
        &self,
        entries: impl IntoIterator<Item = Entry<TypeConfig>>,
        done: Done,
    ) -> Result<(), StorageIOError<NodeId>> {
        {
            let mut inner = self.lock();
            let mut buf = Vec::new();
            let mut placed = Vec::new();
            for entry in entries {
                let offset = inner.file_len + buf.len() as u64;
                let record = Record::Entry(entry);
                buf.extend(frame(&record).map_err(io_write)?);
                let Record::Entry(entry) = record else { unreachable!("built as an entry") };
                placed.push((offset, entry));
            }
            inner.file.append(&buf).map_err(io_write)?;
            inner.file_len += buf.len() as u64;
            for (offset, entry) in placed {
                inner.entries.split_off(&entry.log_id.index);
                inner.entries.insert(entry.log_id.index, (offset, entry));
            }
        }
        self.flush_queue.send(done).await.map_err(|_| io_write(io::Error::other("log group-commit task stopped")))
    }

    fn save_state(&self, inner: &mut Inner, state: State) -> io::Result<()> {
        let bytes = codec::encode(&state).map_err(io::Error::other)?;
        self.fs.replace(&self.dir.join(STATE_FILE), &bytes)?;
        inner.state = state;
        Ok(())
    }

    /// Rewrites the log file with only the live entries and the committed id.
    fn compact(&self, inner: &mut Inner) -> io::Result<()> {
        let mut buf = Vec::new();
        let mut offsets = Vec::new();
        for (&index, (_, entry)) in &inner.entries {
            offsets.push((index, buf.len() as u64));
            buf.extend(frame(&Record::Entry(entry.clone()))?);
        }
        buf.extend(frame(&Record::Committed(inner.committed))?);
        let path = self.dir.join(LOG_FILE);
        self.fs.replace(&path, &buf)?;
        inner.file = self.fs.open_append(&path)?;
        inner.file_len = buf.len() as u64;
        for (index, offset) in offsets {
            if let Some(e) = inner.entries.get_mut(&index) {
                e.0 = offset;
            }
        }
        Ok(())
    }
}

/// A membership entry written by [`LogStore::force_membership`], and the vote saved with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forced {
    pub log_id: LogId<NodeId>,
}

/// Why [`LogStore::force_membership`] refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ForceError {
    #[error("term {term} is not above this node's vote term {vote_term} and last log term {last_term}")]
    StaleTerm { term: u64, vote_term: u64, last_term: u64 },
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl LogStore {
    /// The vote's term and the last log id's (term, index), for an operator choosing the term
    /// of a forced membership change.
    pub fn position(&self) -> (u64, u64, u64) {
        let inner = self.lock();
        let last = inner.entries.values().next_back().map(|(_, e)| e.log_id).or(inner.state.last_purged);
        let vote_term = inner.state.vote.map_or(0, |v| v.leader_id().term);
        (vote_term, last.map_or(0, |l| l.leader_id.term), last.map_or(0, |l| l.index))
    }

    /// **Unsafe recovery.** Appends `membership` at the end of this log as an entry of `term`
    /// led by `node`, and saves the vote `(term, node)`, both durable before it returns. Only
    /// for a node whose Raft is stopped: the next Raft started on this log takes the last
    /// membership entry, committed or not, as the effective one, and so elects a leader among
    /// the voters it names.
    ///
    /// `term` must be above every term this log has seen, so the entry's log id exists on no
    /// other node: a leader elected later replaces it wherever logs differ (Log Matching holds).
    pub fn force_membership(
        &self,
        term: u64,
        node: NodeId,
        membership: openraft::Membership<NodeId, crate::Node>,
    ) -> Result<Forced, ForceError> {
        let (vote_term, last_term, last_index) = self.position();
        if term <= vote_term || term <= last_term {
            return Err(ForceError::StaleTerm { term, vote_term, last_term });
        }
        let mut inner = self.lock();
        // The vote first: a crash between the two leaves a higher vote and no entry (harmless),
        // never an entry of term `term` under a lower vote, from which this node could campaign
        // at a term at or below `term` and append entries whose terms go backwards.
        let state = State { vote: Some(Vote::new(term, node)), ..inner.state.clone() };
        self.save_state(&mut inner, state)?;
        let log_id = LogId::new(openraft::CommittedLeaderId::new(term, node), last_index + 1);
        let entry = Entry::<TypeConfig> { log_id, payload: openraft::EntryPayload::Membership(membership) };
        let offset = inner.file_len;
        let bytes = frame(&Record::Entry(entry.clone()))?;
        inner.file.append(&bytes)?;
        inner.file.sync_data()?;
        inner.file_len += bytes.len() as u64;
        inner.entries.insert(log_id.index, (offset, entry));
        Ok(Forced { log_id })
    }
}

/// The group-commit loop: one `fdatasync` for every append queued while the previous one ran.
async fn group_commit(inner: Arc<Mutex<Inner>>, mut rx: tokio::sync::mpsc::Receiver<Done>) {
    let mut waiting = Vec::new();
    while rx.recv_many(&mut waiting, FLUSH_QUEUE).await > 0 {
        let file = inner.lock().expect("log store lock poisoned").file.clone();
        let synced = tokio::task::spawn_blocking(move || file.sync_data())
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)))
            .map_err(|e| e.to_string());
        for done in waiting.drain(..) {
            done(synced.clone().map_err(io::Error::other));
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        Ok(self.lock().entries.range(range).map(|(_, (_, e))| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let inner = self.lock();
        let last_purged_log_id = inner.state.last_purged;
        let last_log_id = inner.entries.values().next_back().map(|(_, e)| e.log_id).or(last_purged_log_id);
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.lock();
        let state = State { vote: Some(*vote), ..inner.state.clone() };
        self.save_state(&mut inner, state).map_err(|e| StorageIOError::write_vote(&e))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.lock().state.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StorageError<NodeId>> {
        // Durable with the next group commit; losing it only means re-applying from further back.
        let mut inner = self.lock();
        let bytes = frame(&Record::Committed(committed)).map_err(io_write)?;
        inner.file.append(&bytes).map_err(io_write)?;
        inner.file_len += bytes.len() as u64;
        inner.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.lock().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.append_then(entries, Box::new(move |r| callback.log_io_completed(r))).await?;
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.lock();
        let Some(&(offset, _)) = inner.entries.get(&log_id.index) else { return Ok(()) };
        inner.entries.split_off(&log_id.index);
        inner.file.truncate(offset).map_err(io_write)?;
        inner.file_len = offset;
        // The cut may have taken the last committed record with it: write it again.
        let committed = frame(&Record::Committed(inner.committed)).map_err(io_write)?;
        inner.file.append(&committed).map_err(io_write)?;
        inner.file_len += committed.len() as u64;
        inner.file.sync_data().map_err(io_write)?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.lock();
        let state = State { last_purged: Some(log_id), ..inner.state.clone() };
        self.save_state(&mut inner, state).map_err(io_write)?;
        inner.entries = inner.entries.split_off(&(log_id.index + 1));
        let live_from = inner.entries.values().next().map_or(inner.file_len, |(offset, _)| *offset);
        if live_from > inner.compact_at && live_from > inner.file_len / 2 {
            self.compact(&mut inner).map_err(io_write)?;
        }
        Ok(())
    }
}
