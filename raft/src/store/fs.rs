//! The file operations the Raft log needs, behind a trait so a test can stand in for the disk.
//!
//! The log store never touches `std::fs` itself: it appends to one file, makes what it
//! appended durable with [`AppendFile::sync_data`] (`fdatasync`), cuts the file's tail, and
//! replaces small files atomically ([`Fs::replace`]: write a temp file, `fdatasync` it, rename
//! it over the old one, `fsync` the directory). [`OsFs`] does this on the real disk; the crash
//! tests use a simulated disk that keeps what was synced apart from what was only written and
//! drops the unsynced part at a "power loss" (see `sim_fs.rs`).
//!
//! The contract every implementation keeps, and the only one the store relies on:
//! - bytes appended, and a truncation, survive a power loss once `sync_data` on that file has
//!   returned `Ok`; before that, any prefix of the operations since the last sync may survive,
//!   the last append possibly cut short (a torn write);
//! - `replace` and `open_append` (which creates a missing file) are durable when they return,
//!   and `replace` leaves either the old content or the new one, never a mix.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

/// A directory tree the log store keeps its files in.
pub trait Fs: Send + Sync + 'static {
    /// The whole content of `path`, or `None` if there is no such file.
    fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>>;
    /// Opens `path` for appending, creating it (durably) if it is missing.
    fn open_append(&self, path: &Path) -> io::Result<Arc<dyn AppendFile>>;
    /// Atomically and durably replaces the content of `path` with `bytes`.
    fn replace(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// Creates `path` and its parents, durably.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
}

/// A file open for appending. Calls are made by one writer at a time (the log store's lock);
/// `sync_data` may run concurrently with them, from the group-commit task.
pub trait AppendFile: Send + Sync {
    /// Appends `bytes` at the end of the file. Not durable until [`AppendFile::sync_data`].
    fn append(&self, bytes: &[u8]) -> io::Result<()>;
    /// Cuts the file to `len` bytes. Not durable until [`AppendFile::sync_data`].
    fn truncate(&self, len: u64) -> io::Result<()>;
    /// Makes every append and truncation so far durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
}

/// The real disk.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsFs;

fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

impl Fs for OsFs {
    fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        match File::open(path) {
            Ok(mut f) => {
                let mut bytes = Vec::new();
                f.read_to_end(&mut bytes)?;
                Ok(Some(bytes))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn open_append(&self, path: &Path) -> io::Result<Arc<dyn AppendFile>> {
        let existed = path.exists();
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        if !existed {
            file.sync_all()?;
            sync_dir(path)?;
        }
        Ok(Arc::new(OsAppendFile(file)))
    }

    fn replace(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(".tmp");
        let tmp = path.with_file_name(tmp_name);
        let mut f = OpenOptions::new().create(true).write(true).truncate(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_data()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        sync_dir(path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)?;
        sync_dir(path)
    }
}

struct OsAppendFile(File);

impl AppendFile for OsAppendFile {
    fn append(&self, bytes: &[u8]) -> io::Result<()> {
        (&self.0).write_all(bytes)
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}
