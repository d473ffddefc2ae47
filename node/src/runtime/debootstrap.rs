//! Host-side steps of the Debian image build: a scratch folder, `debootstrap`, trimming and
//! packing the rootfs.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

use super::RuntimeError;

/// Debian release of the image.
const SUITE: &str = "bookworm";

/// Debian mirror debootstrap downloads from.
const MIRROR: &str = "http://deb.debian.org/debian";

/// Folders (relative to the rootfs) emptied to make the image smaller. `dev` is provided by
/// the engine at run time.
const TRIMMED: [&str; 9] = [
    "var/cache/apt",
    "var/lib/apt/lists",
    "var/log",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "dev",
];

/// Folders the image must contain (they cannot be created in a read-only rootfs later).
const REQUIRED_DIRS: [&str; 2] = ["work", "tmp"];

/// A fresh folder under the system temp dir, removed on drop — unless something is still
/// mounted below it (a failed debootstrap can leave `/proc` or bind mounts of host devices),
/// in which case it is left alone and logged rather than risk deleting through a mount.
pub(crate) struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    pub(crate) fn create() -> Result<ScratchDir, RuntimeError> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let name = format!("flotilla-rootfs-{}-{nanos}", std::process::id());
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir(&path)?;
        Ok(ScratchDir { path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if has_mounts_under(&self.path) {
            tracing::warn!(dir = %self.path.display(), "mounts left below the build folder; not removing it");
            return;
        }
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!(dir = %self.path.display(), "removing the build folder: {e}");
        }
    }
}

/// Whether `/proc/self/mounts` lists a mount point at or below `dir`. When the table cannot
/// be read, says yes (the safe answer).
fn has_mounts_under(dir: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return true;
    };
    mounts
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        .any(|mount_point| Path::new(mount_point).starts_with(dir))
}

/// Runs debootstrap into `target`, forwarding its `I:` lines to `progress`.
pub(crate) async fn debootstrap(target: &Path, progress: &impl Fn(&str)) -> Result<(), RuntimeError> {
    let mut child = Command::new("debootstrap")
        .args(["--variant=minbase", "--include=python3", SUITE])
        .arg(target)
        .arg(MIRROR)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                RuntimeError::ImageBuild("debootstrap not found: install it with `apt-get install debootstrap`".into())
            }
            _ => RuntimeError::Io(e),
        })?;
    let (stdout, mut stderr) = match (child.stdout.take(), child.stderr.take()) {
        (Some(out), Some(err)) => (out, err),
        _ => return Err(RuntimeError::ImageBuild("debootstrap pipes missing".into())),
    };
    let forward = async {
        let mut lines = BufReader::new(stdout).lines();
        while let Some(line) = lines.next_line().await? {
            if line.starts_with("I: ") {
                progress(&format!("debootstrap: {line}"));
            }
        }
        Ok::<_, std::io::Error>(())
    };
    let mut errors = String::new();
    let (forwarded, read) = tokio::join!(forward, stderr.read_to_string(&mut errors));
    forwarded?;
    read?;
    let status = child.wait().await?;
    if !status.success() {
        return Err(RuntimeError::ImageBuild(format!("debootstrap {SUITE} failed ({status}): {}", errors.trim())));
    }
    Ok(())
}

/// Empties [`TRIMMED`] and makes sure [`REQUIRED_DIRS`] exist.
pub(crate) async fn trim_rootfs(rootfs: &Path) -> Result<(), RuntimeError> {
    let rootfs = rootfs.to_path_buf();
    let trim = move || -> std::io::Result<()> {
        for dir in TRIMMED {
            empty_dir(&rootfs.join(dir))?;
        }
        for dir in REQUIRED_DIRS {
            std::fs::create_dir_all(rootfs.join(dir))?;
        }
        Ok(())
    };
    tokio::task::spawn_blocking(trim)
        .await
        .map_err(|e| RuntimeError::ImageBuild(format!("trimming the rootfs: {e}")))??;
    Ok(())
}

/// Removes everything inside `dir` (not `dir` itself); a missing `dir` is fine.
fn empty_dir(dir: &Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Packs `rootfs` into the tar file `out` with the system `tar` (keeps owners, modes, hard
/// links and special files exactly).
pub(crate) async fn pack_rootfs(rootfs: &Path, out: &Path) -> Result<(), RuntimeError> {
    let result =
        Command::new("tar").arg("--numeric-owner").arg("-C").arg(rootfs).arg("-cf").arg(out).arg(".").output().await?;
    if !result.status.success() {
        return Err(RuntimeError::ImageBuild(format!(
            "tar of the rootfs failed: {}",
            String::from_utf8_lossy(&result.stderr).trim()
        )));
    }
    Ok(())
}
