//! openraft storage: [`LogStore`] (log, vote, committed index) in an append-only file with
//! `fdatasync`, and [`StateMachineStore`] (the in-memory catalog plus its persisted snapshot)
//! in sled.
//!
//! Layout of the store's directory (`<data-dir>/raft/`):
//! - `wal/log`, `wal/state`: the Raft log and the vote / last purged id (see [`log`]), written
//!   through the [`fs::Fs`] seam so the crash tests can simulate power loss;
//! - everything else is one sled database, values bincode-encoded: tree `meta` holds
//!   `data_version` and `snapshot` (the last state machine snapshot). sled's own flush ends
//!   in `sync_file_range`, so persisting a snapshot also `fsync`s sled's `db` file.
//!
//! Every write that openraft must find after a power loss is on the disk (`fdatasync`) before
//! openraft is told it is done. The catalog itself is rebuilt on start from the last snapshot
//! plus the log (openraft re-applies the entries up to the persisted committed id).
//!
//! **Older data dirs** are refused with a message naming both versions: records are
//! bincode-encoded by position, so an older catalog or log entry cannot be read with this
//! release's types, and there is no migration yet.

mod fs;
mod log;
mod records;
mod state_machine;

use std::path::Path;
use std::sync::Arc;

pub use log::{ForceError, Forced, LogOpenError, LogStore};
pub use state_machine::{CatalogView, StateMachineStore};

use crate::codec;

/// Version of the on-disk format. Bump it whenever a persisted type or
/// the tree layout changes; a node refuses to open a database with a version it does not know.
// 6: catalog events, registry logins, retention state and request-id indexes, and the
// sandbox spec's `disk_mib` and `writable_rootfs` (bincode encodes by position, so a version 5
// catalog does not decode here: refused with a message rather than read as corrupt).
pub const DATA_VERSION: u32 = 6;

pub(crate) const DATA_VERSION_KEY: &[u8] = b"data_version";

/// Opening the store failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the raft store at {path}: {source}")]
    Sled { path: String, source: sled::Error },
    #[error(
        "the raft store at {path} has data version {found}, this build reads version {DATA_VERSION} and has no \
         migration from it: keep the old binary for that data dir, or start this one on an empty data dir"
    )]
    Version { path: String, found: u32 },
    #[error("the raft store at {path} is corrupt: {source}")]
    Corrupt { path: String, source: codec::CodecError },
    #[error("cannot open the raft log at {path}: {source}")]
    Log { path: String, source: LogOpenError },
}

/// The log's directory inside the store's directory.
fn wal_dir(dir: &Path) -> std::path::PathBuf {
    dir.join("wal")
}

/// Opens (or creates) the store under `dir` and returns its two openraft halves. Must be
/// called inside a tokio runtime (the log starts its group-commit task).
pub fn open(dir: &Path) -> Result<(LogStore, StateMachineStore), OpenError> {
    let path = dir.display().to_string();
    let sled_err = |source| OpenError::Sled { path: path.clone(), source };
    let fs: Arc<dyn fs::Fs> = Arc::new(fs::OsFs);
    let db = sled::Config::new().path(dir).open().map_err(sled_err)?;
    let meta = db.open_tree("meta").map_err(sled_err)?;
    match meta.get(DATA_VERSION_KEY).map_err(sled_err)? {
        None => {
            meta.insert(DATA_VERSION_KEY, codec::encode(&DATA_VERSION).expect("u32 encodes")).map_err(sled_err)?;
            db.flush().map_err(sled_err)?;
        }
        Some(bytes) => {
            let found: u32 =
                codec::decode(&bytes).map_err(|source| OpenError::Corrupt { path: path.clone(), source })?;
            match found {
                DATA_VERSION => {}
                found => return Err(OpenError::Version { path, found }),
            }
        }
    }
    let log = LogStore::open(fs, &wal_dir(dir), log::COMPACT_AT)
        .map_err(|source| OpenError::Log { path: wal_dir(dir).display().to_string(), source })?;
    let sm = StateMachineStore::load(db, &dir.join("db")).map_err(|e| match e {
        state_machine::LoadError::Sled(source) => OpenError::Sled { path: path.clone(), source },
        state_machine::LoadError::Codec(source) => OpenError::Corrupt { path: path.clone(), source },
    })?;
    Ok((log, sm))
}

#[cfg(test)]
mod crash_tests;
#[cfg(test)]
mod sim_fs;
#[cfg(test)]
mod tests;
