//! The node's data directory: created on first start, locked for the life of the process so
//! a second process on the same directory fails at once, and bound to one node id.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use flotilla_raft::NodeId;

/// An open, locked data directory. The lock is released when this is dropped or the process
/// exits, however it exits.
pub struct DataDir {
    path: PathBuf,
    /// Holds the exclusive lock on `LOCK`.
    _lock: File,
}

/// Why the data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("data dir {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("data dir {path} is in use by another flotilla process ({holder}); stop it or pick another --data-dir")]
    Locked { path: String, holder: String },
    #[error(
        "data dir {path} belongs to node {found}, not node {wanted}; pick the matching --node-id or another --data-dir"
    )]
    WrongNode { path: String, found: NodeId, wanted: NodeId },
}

impl DataDir {
    /// Creates (if needed) and locks `path` for node `node_id`.
    pub fn open(path: &Path, node_id: NodeId) -> Result<Self, DataDirError> {
        let shown = path.display().to_string();
        let io = |source| DataDirError::Io { path: shown.clone(), source };
        std::fs::create_dir_all(path).map_err(io)?;
        let mut lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path.join("LOCK"))
            .map_err(io)?;
        if lock.try_lock().is_err() {
            let holder = std::fs::read_to_string(path.join("LOCK"))
                .ok()
                .filter(|s| !s.trim().is_empty())
                .map_or_else(|| "pid unknown".to_string(), |s| format!("pid {}", s.trim()));
            return Err(DataDirError::Locked { path: shown, holder });
        }
        lock.set_len(0).map_err(io)?;
        write!(lock, "{}", std::process::id()).map_err(io)?;

        let id_file = path.join("node_id");
        match std::fs::read_to_string(&id_file) {
            Ok(text) => {
                let found: NodeId = text
                    .trim()
                    .parse()
                    .map_err(|_| io(std::io::Error::other(format!("{} does not hold a node id", id_file.display()))))?;
                if found != node_id {
                    return Err(DataDirError::WrongNode { path: shown, found, wanted: node_id });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::write(&id_file, format!("{node_id}\n")).map_err(io)?;
            }
            Err(e) => return Err(io(e)),
        }
        Ok(Self { path: path.to_path_buf(), _lock: lock })
    }

    /// This node instance's id: random, made on first start and kept in the data dir. It
    /// tells this node's containers from those of other nodes on the same engine.
    pub fn instance_id(&self) -> Result<String, DataDirError> {
        let path = self.path.join("instance_id");
        let io = |source| DataDirError::Io { path: path.display().to_string(), source };
        match std::fs::read_to_string(&path) {
            Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
            Ok(_) | Err(_) => {
                let id = uuid::Uuid::new_v4().simple().to_string();
                std::fs::write(&path, format!("{id}\n")).map_err(io)?;
                Ok(id)
            }
        }
    }

    /// Where the Raft store lives.
    pub fn raft(&self) -> PathBuf {
        self.path.join("raft")
    }

    /// Where snapshot blobs live (see `blobs`).
    pub fn blobs(&self) -> PathBuf {
        self.path.join("blobs")
    }

    /// The node id recorded in `path`, if the directory was used before.
    pub fn recorded_node_id(path: &Path) -> Option<NodeId> {
        std::fs::read_to_string(path.join("node_id")).ok()?.trim().parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_open_is_refused_while_the_first_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDir::open(dir.path(), 1).unwrap();
        let err = DataDir::open(dir.path(), 1).err().expect("second open must fail");
        assert!(matches!(err, DataDirError::Locked { .. }), "{err}");
        assert!(err.to_string().contains(&format!("pid {}", std::process::id())), "{err}");
        drop(first);
        DataDir::open(dir.path(), 1).expect("free again after drop");
    }

    #[test]
    fn a_data_dir_keeps_its_node_id() {
        let dir = tempfile::tempdir().unwrap();
        drop(DataDir::open(dir.path(), 3).unwrap());
        assert_eq!(DataDir::recorded_node_id(dir.path()), Some(3));
        let err = DataDir::open(dir.path(), 4).err().unwrap();
        assert!(matches!(err, DataDirError::WrongNode { found: 3, wanted: 4, .. }), "{err}");
    }
}
