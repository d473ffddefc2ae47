//! The node's data directory: created on first start, locked for the life of the process so
//! a second process on the same directory fails at once, and bound to one node id.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use flotilla_raft::network::ClusterId;
use flotilla_raft::NodeId;
use sha2::Digest;

use crate::config::Start;

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
    #[error(
        "{path} does not hold an instance id (it labels this node's containers, so a new one \
         would orphan them); restore the file, or delete it to start over with a new id"
    )]
    BadInstanceId { path: String },
}

/// Whether `id` looks like an instance id this module wrote: 1 to 64 ASCII letters, digits,
/// `-` or `_` (new ones are 32 hex digits).
fn is_instance_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
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
    /// tells this node's containers from those of other nodes on the same engine, so losing
    /// it would orphan every container the node owns: only a missing file makes a new one.
    /// Any other failure (permissions, unreadable, not an id) stops the node, naming the file.
    /// The file is written whole (a temporary file renamed over it), so a crash never leaves
    /// it half-written.
    pub fn instance_id(&self) -> Result<String, DataDirError> {
        let path = self.path.join("instance_id");
        let shown = path.display().to_string();
        let io = |source| DataDirError::Io { path: shown.clone(), source };
        match std::fs::read(&path) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let id = text.trim();
                if is_instance_id(id) {
                    Ok(id.to_string())
                } else {
                    Err(DataDirError::BadInstanceId { path: shown.clone() })
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = uuid::Uuid::new_v4().simple().to_string();
                let tmp = self.path.join("instance_id.tmp");
                std::fs::write(&tmp, format!("{id}\n")).map_err(io)?;
                std::fs::rename(&tmp, &path).map_err(io)?;
                Ok(id)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// This node's cluster id (see [`ClusterId`]), kept in `cluster_id`. A node forming a
    /// cluster makes it before it serves: random for a one-node bootstrap, and for
    /// `--initial-cluster` derived from the member list, so that every initial member makes the
    /// same one. A node that joins learns it from its seed's answer, a node waiting to be added
    /// from the leader's add-node probe (see `grpc::peer`).
    pub fn cluster_id(&self, start: &Start) -> Result<ClusterId, DataDirError> {
        let path = self.path.join("cluster_id");
        let fresh = match start {
            Start::Bootstrap => Some(uuid::Uuid::new_v4().simple().to_string()),
            Start::InitialCluster(members) => {
                let list = members.iter().map(|(id, addr)| format!("{id}={addr}")).collect::<Vec<_>>().join(",");
                Some(hex::encode(&sha2::Sha256::digest(list.as_bytes())[..16]))
            }
            Start::Join(_) | Start::Wait => None,
        };
        ClusterId::open(&path, fresh).map_err(|source| DataDirError::Io { path: path.display().to_string(), source })
    }

    /// Where the Raft store lives.
    pub fn raft(&self) -> PathBuf {
        self.path.join("raft")
    }

    /// Where snapshot blobs live (see `blobs`).
    pub fn blobs(&self) -> PathBuf {
        self.path.join("blobs")
    }

    /// Logs kept of removed sandbox containers (see [`crate::sandbox::kept_logs`]).
    pub fn sandbox_logs(&self) -> PathBuf {
        self.path.join("logs")
    }

    /// Sandboxes' `/work` disks (see [`crate::runtime::disk`]).
    pub fn disks(&self) -> PathBuf {
        self.path.join("disks")
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

    #[test]
    fn instance_id_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let d = DataDir::open(dir.path(), 1).unwrap();
        let first = d.instance_id().unwrap();
        assert_eq!(first.len(), 32);
        assert_eq!(d.instance_id().unwrap(), first);
        assert!(!dir.path().join("instance_id.tmp").exists());
    }

    #[test]
    fn unreadable_or_garbage_instance_id_stops_instead_of_making_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let d = DataDir::open(dir.path(), 1).unwrap();
        let file = dir.path().join("instance_id");
        for garbage in [&b""[..], b"   \n", b"not an id!\n", &[0xff, 0xfe, 0x00][..], &[b'a'; 65][..]] {
            std::fs::write(&file, garbage).unwrap();
            let err = d.instance_id().err().unwrap_or_else(|| panic!("{garbage:?} accepted"));
            assert!(matches!(err, DataDirError::BadInstanceId { .. }), "{err}");
            assert!(err.to_string().contains(&file.display().to_string()), "{err}");
            assert_eq!(std::fs::read(&file).unwrap(), garbage, "the file must be left as it was");
        }
        // Not a file at all: a read error other than "missing".
        std::fs::remove_file(&file).unwrap();
        std::fs::create_dir(&file).unwrap();
        let err = d.instance_id().expect_err("a directory is not an instance id");
        assert!(matches!(err, DataDirError::Io { .. }), "{err}");
        assert!(err.to_string().contains(&file.display().to_string()), "{err}");
        assert!(file.is_dir(), "nothing may be written in its place");
    }
}
