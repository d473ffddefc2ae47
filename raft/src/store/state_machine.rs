//! The state machine: the [`Catalog`] in memory, made durable by persisted snapshots.

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::command::Response;
use crate::{codec, Node, NodeId, TypeConfig};

/// Key of the persisted snapshot in the `meta` tree.
pub(super) const SNAPSHOT: &[u8] = b"snapshot";

/// What applying the log has produced so far.
#[derive(Debug, Default)]
struct Applied {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Node>,
    catalog: Catalog,
}

/// A snapshot as persisted in the `meta` tree.
#[derive(Serialize, Deserialize)]
pub(super) struct StoredSnapshot {
    pub(super) meta: SnapshotMeta<NodeId, Node>,
    /// `codec::encode(&Catalog)`.
    pub(super) data: Vec<u8>,
}

/// Read-only handle on the applied catalog, for the node's services. Locks are held only for
/// the closure, never across an `.await`.
#[derive(Clone)]
pub struct CatalogView {
    applied: Arc<RwLock<Applied>>,
}

impl CatalogView {
    /// Runs `f` on the catalog as applied on this node.
    pub fn read<R>(&self, f: impl FnOnce(&Catalog) -> R) -> R {
        f(&self.applied.read().expect("catalog lock poisoned").catalog)
    }
}

/// openraft's state machine half. Cloning shares the catalog (the snapshot builder is a clone).
#[derive(Clone)]
pub struct StateMachineStore {
    db: sled::Db,
    meta: sled::Tree,
    applied: Arc<RwLock<Applied>>,
    /// Makes snapshot ids unique among snapshots of the same log id.
    snapshot_seq: Arc<AtomicU64>,
    /// The last log id of the snapshot on disk; held while one is written. openraft builds
    /// snapshots in a task of their own, so one built from an older state can finish after a
    /// newer one was installed from the leader: written last, it replaced the newer one, and
    /// after a crash the node found its log purged past its snapshot and could not start
    /// (openraft panicked; chaos run with seed 1795695978675937082, node 1 SIGKILLed).
    persisted: Arc<tokio::sync::Mutex<Option<LogId<NodeId>>>>,
    /// sled's data file. sled's `flush` ends in `sync_file_range`, which does not flush the
    /// disk's write cache; an `fsync` of this file after it does, so a persisted snapshot
    /// survives a power loss (the log is purged behind it).
    db_file: Arc<std::path::Path>,
}

pub(super) enum LoadError {
    Sled(sled::Error),
    Codec(codec::CodecError),
}

impl StateMachineStore {
    /// Loads the last persisted snapshot, if any, as the starting state.
    pub(super) fn load(db: sled::Db, db_file: &std::path::Path) -> Result<Self, LoadError> {
        let meta = db.open_tree("meta").map_err(LoadError::Sled)?;
        let mut applied = Applied::default();
        let mut persisted = None;
        if let Some(bytes) = meta.get(SNAPSHOT).map_err(LoadError::Sled)? {
            let stored: StoredSnapshot = codec::decode(&bytes).map_err(LoadError::Codec)?;
            persisted = stored.meta.last_log_id;
            applied = Applied {
                last_applied: stored.meta.last_log_id,
                membership: stored.meta.last_membership,
                catalog: codec::decode(&stored.data).map_err(LoadError::Codec)?,
            };
        }
        Ok(Self {
            db,
            meta,
            applied: Arc::new(RwLock::new(applied)),
            snapshot_seq: Arc::new(AtomicU64::new(0)),
            persisted: Arc::new(tokio::sync::Mutex::new(persisted)),
            db_file: db_file.into(),
        })
    }

    /// A read handle on the catalog for the node's services.
    pub fn view(&self) -> CatalogView {
        CatalogView { applied: self.applied.clone() }
    }

    /// Writes `stored` and flushes, unless the snapshot on disk is as new or newer.
    pub(super) async fn persist(&self, stored: &StoredSnapshot) -> Result<(), StorageError<NodeId>> {
        let mut persisted = self.persisted.lock().await;
        if stored.meta.last_log_id <= *persisted {
            return Ok(());
        }
        let signature = Some(stored.meta.signature());
        let bytes = codec::encode(stored).map_err(|e| StorageIOError::write_snapshot(signature.clone(), &e))?;
        self.meta.insert(SNAPSHOT, bytes).map_err(|e| StorageIOError::write_snapshot(signature.clone(), &e))?;
        self.db.flush_async().await.map_err(|e| StorageIOError::write_snapshot(signature.clone(), &e))?;
        let db_file = self.db_file.clone();
        tokio::task::spawn_blocking(move || std::fs::File::open(&*db_file)?.sync_all())
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            .map_err(|e| StorageIOError::write_snapshot(signature, &e))?;
        *persisted = stored.meta.last_log_id;
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let (meta, data) = {
            let applied = self.applied.read().expect("catalog lock poisoned");
            let data = codec::encode(&applied.catalog).map_err(|e| StorageIOError::write_snapshot(None, &e))?;
            let seq = self.snapshot_seq.fetch_add(1, Ordering::Relaxed);
            let snapshot_id = match applied.last_applied {
                Some(l) => format!("{}-{}-{seq}", l.leader_id, l.index),
                None => format!("empty-{seq}"),
            };
            let meta = SnapshotMeta {
                last_log_id: applied.last_applied,
                last_membership: applied.membership.clone(),
                snapshot_id,
            };
            (meta, data)
        };
        let stored = StoredSnapshot { meta, data };
        self.persist(&stored).await?;
        Ok(Snapshot { meta: stored.meta, snapshot: Box::new(Cursor::new(stored.data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Node>), StorageError<NodeId>> {
        let applied = self.applied.read().expect("catalog lock poisoned");
        Ok((applied.last_applied, applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut applied = self.applied.write().expect("catalog lock poisoned");
        let mut responses = Vec::new();
        for entry in entries {
            applied.last_applied = Some(entry.log_id);
            let response = match entry.payload {
                EntryPayload::Blank => Response::Empty,
                EntryPayload::Normal(cmd) => applied.catalog.apply(cmd),
                EntryPayload::Membership(m) => {
                    applied.membership = StoredMembership::new(Some(entry.log_id), m);
                    Response::Empty
                }
            };
            responses.push(response);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let catalog: Catalog =
            codec::decode_snapshot(&data).map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        let stored = StoredSnapshot { meta: meta.clone(), data };
        self.persist(&stored).await?;
        *self.applied.write().expect("catalog lock poisoned") =
            Applied { last_applied: meta.last_log_id, membership: meta.last_membership.clone(), catalog };
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let Some(bytes) = self.meta.get(SNAPSHOT).map_err(|e| StorageIOError::read_snapshot(None, &e))? else {
            return Ok(None);
        };
        let stored: StoredSnapshot = codec::decode(&bytes).map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(Some(Snapshot { meta: stored.meta, snapshot: Box::new(Cursor::new(stored.data)) }))
    }
}
