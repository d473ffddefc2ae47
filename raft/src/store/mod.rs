//! openraft storage over one sled database: [`LogStore`] (log, vote, committed index) and
//! [`StateMachineStore`] (the in-memory catalog plus its persisted snapshot).
//!
//! Layout, all values bincode-encoded:
//! - tree `log`: big-endian index -> `Entry`
//! - tree `meta`: `data_version`, `vote`, `committed`, `last_purged`, `snapshot`
//!
//! Every write that openraft must find after a crash is flushed (fsync) before openraft is
//! told it is done. The catalog itself is rebuilt on start from the last snapshot plus the log.

mod log;
mod state_machine;

use std::path::Path;

pub use log::LogStore;
pub use state_machine::{CatalogView, StateMachineStore};

use crate::codec;

/// Version of the on-disk format. Bump it whenever a persisted type or
/// the tree layout changes; a node refuses to open a database with a version it does not know.
pub const DATA_VERSION: u32 = 4;

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
}

/// Opens (or creates) the store under `dir` and returns its two openraft halves.
pub fn open(dir: &Path) -> Result<(LogStore, StateMachineStore), OpenError> {
    let path = dir.display().to_string();
    let sled_err = |source| OpenError::Sled { path: path.clone(), source };
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
            if found != DATA_VERSION {
                return Err(OpenError::Version { path, found });
            }
        }
    }
    let log = LogStore::new(db.clone()).map_err(sled_err)?;
    let sm = StateMachineStore::load(db).map_err(|e| match e {
        state_machine::LoadError::Sled(source) => OpenError::Sled { path: path.clone(), source },
        state_machine::LoadError::Codec(source) => OpenError::Corrupt { path: path.clone(), source },
    })?;
    Ok((log, sm))
}

#[cfg(test)]
mod tests;
