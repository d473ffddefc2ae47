//! Sandbox `/work` disks: a size limit the kernel enforces.
//!
//! An anonymous Docker volume has no size limit (overlay2 or fuse-overlayfs on ext4 offers
//! no project quota), so a sandbox that wrote 2 GiB into `/work` wrote them onto the host's
//! disk. Here each sandbox container that asks for a disk gets its own small filesystem:
//!
//! 1. a sparse file `DIR/KEY.img` of the quota's size (it takes host space only as blocks are
//!    written, and never more than its size),
//! 2. `mkfs.ext4 -q -F -m 0 -O ^has_journal` on it: no blocks reserved for root (sandboxes
//!    run as root, and a reserve would let them write past the quota), and no journal. A
//!    disk lives exactly as long as its container, which does not outlive a host crash, so a
//!    journal would only cost 32 MiB of host disk per sandbox and a slower mkfs (an empty
//!    1 GiB disk takes about 0.7 MB on the host and 40 to 90 ms to make, 65 ms to remove),
//! 3. `mount -o loop` at `DIR/KEY/` on the host (an auto-clearing loop device, freed when
//!    the filesystem is unmounted), with `lost+found` removed so `/work` starts empty,
//! 4. bind-mounted into the container as `/work` (runc and gVisor alike).
//!
//! A write past the quota fails inside the sandbox with `ENOSPC` ("No space left on
//! device"); the sandbox itself keeps working. The container carries the label
//! [`LABEL_DISK`] with the disk's key, so [`Docker::remove`](super::Docker::remove)
//! unmounts and deletes the disk with the container, and [`WorkDisks::sweep`] (run when the
//! node starts, like the container sweep) removes every disk no container of the node holds.
//!
//! Unlike a volume, a bind mount is not filled with the image's own `/work` contents:
//! `/work` starts empty.
//!
//! Disks need root (loop devices, mount) and an engine that sees the node's files (a local
//! engine). [`WorkDisks::open`] checks this once by making and removing a tiny disk; where
//! it cannot, the node says so in its log and sandboxes get the unlimited volume as before.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use tokio::process::Command;

use super::RuntimeError;

/// Container label holding the key of the container's `/work` disk.
pub const LABEL_DISK: &str = "flotilla.disk";

/// Size of the disk [`WorkDisks::open`] makes to check that disks work, MiB.
const PROBE_MIB: u64 = 4;

/// The disks of one node, in one folder of its data dir.
#[derive(Debug)]
pub struct WorkDisks {
    /// Holds `KEY.img` (the filesystem) and `KEY/` (where it is mounted) per disk.
    dir: PathBuf,
}

/// One prepared disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkDisk {
    /// Names the disk's files, and labels its container ([`LABEL_DISK`]).
    pub key: String,
    /// Where its filesystem is mounted on the host: the bind source of `/work`.
    pub mount: PathBuf,
}

impl WorkDisks {
    /// The disks kept in `dir` (created if needed), or `None`, said in the log with the
    /// reason, when this host cannot make them (not root, no loop devices, no mkfs.ext4).
    pub async fn open(dir: PathBuf) -> Option<WorkDisks> {
        let probe = async {
            std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
            // Absolute, without symlinks: the form `/proc/self/mountinfo` lists mount points in,
            // and a bind source the engine accepts (`flotilla dev`'s data dir is relative).
            let dir = std::fs::canonicalize(&dir).map_err(|e| io_error(&dir, e))?;
            let disks = WorkDisks { dir };
            let disk = disks.create(PROBE_MIB).await?;
            disks.release(&disk.key).await?;
            Ok::<_, RuntimeError>(disks)
        };
        match probe.await {
            Ok(disks) => Some(disks),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "sandbox /work disks unavailable: /work has no size limit on this node");
                None
            }
        }
    }

    /// Makes and mounts a new disk of `mib` MiB. On error nothing is left behind.
    pub async fn create(&self, mib: u64) -> Result<WorkDisk, RuntimeError> {
        let key = uuid::Uuid::new_v4().simple().to_string();
        let disk = WorkDisk { mount: self.dir.join(&key), key };
        let made = async {
            let image = self.image(&disk.key);
            let file = std::fs::File::create(&image).map_err(|e| io_error(&image, e))?;
            file.set_len(mib.saturating_mul(1 << 20)).map_err(|e| io_error(&image, e))?;
            drop(file);
            run(Command::new("mkfs.ext4").args(["-q", "-F", "-m", "0", "-O", "^has_journal"]).arg(&image)).await?;
            std::fs::create_dir_all(&disk.mount).map_err(|e| io_error(&disk.mount, e))?;
            run(Command::new("mount").args(["-o", "loop"]).arg(&image).arg(&disk.mount)).await?;
            let lost = disk.mount.join("lost+found");
            std::fs::remove_dir(&lost).map_err(|e| io_error(&lost, e))
        };
        match made.await {
            Ok(()) => Ok(disk),
            Err(e) => {
                let _ = self.release(&disk.key).await;
                Err(e)
            }
        }
    }

    /// Unmounts and deletes disk `key`; parts already gone are fine.
    pub async fn release(&self, key: &str) -> Result<(), RuntimeError> {
        let mount = self.dir.join(key);
        if is_mounted(&mount) {
            run(Command::new("umount").arg(&mount)).await?;
        }
        for result in [std::fs::remove_dir(&mount), std::fs::remove_file(self.image(key))] {
            match result {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_error(&mount, e)),
                _ => {}
            }
        }
        Ok(())
    }

    /// Releases every disk whose key is not in `in_use` (the keys on the node's containers).
    pub async fn sweep(&self, in_use: &HashSet<String>) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        let keys: HashSet<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().map(|n| n.trim_end_matches(".img").to_string()))
            .collect();
        for key in keys.difference(in_use) {
            tracing::info!(disk = %key, "removing a sandbox disk no container holds");
            if let Err(e) = self.release(key).await {
                tracing::warn!(disk = %key, error = %e, "could not remove a leftover sandbox disk");
            }
        }
    }

    fn image(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.img"))
    }
}

/// Unmounts every disk mounted below `root` (a killed node's data dirs), for the cleanup of
/// a benchmark's nodes: their containers are removed from outside, and a mount left behind
/// would keep its loop device after the folder is deleted. Best effort, blocking.
pub fn unmount_under(root: &Path) {
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    for point in mount_points().into_iter().filter(|p| p.starts_with(&root)) {
        let _ = std::process::Command::new("umount").arg(point).output();
    }
}

/// Whether something is mounted at `path` (per `/proc/self/mountinfo`).
fn is_mounted(path: &Path) -> bool {
    mount_points().iter().any(|p| p == path)
}

/// The mount points in `/proc/self/mountinfo` (its fifth field, with the octal escapes the
/// kernel writes for spaces, tabs, newlines and backslashes decoded).
fn mount_points() -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return Vec::new() };
    let unescape =
        |field: &str| field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\");
    info.lines().filter_map(|l| l.split(' ').nth(4)).map(|p| PathBuf::from(unescape(p))).collect()
}

/// Runs a host command; a failure carries its stderr.
async fn run(cmd: &mut Command) -> Result<(), RuntimeError> {
    let shown = format!("{:?}", cmd.as_std());
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| RuntimeError::Disk(format!("{shown}: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    Err(RuntimeError::Disk(format!("{shown}: {} {}", out.status, String::from_utf8_lossy(&out.stderr).trim())))
}

fn io_error(path: &Path, e: std::io::Error) -> RuntimeError {
    RuntimeError::Disk(format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A disk holds at most its size: the write past it fails with ENOSPC, the image file
    /// stays within the quota, and release leaves nothing behind.
    #[tokio::test]
    async fn a_disk_enforces_its_size_and_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let disks = WorkDisks::open(dir.path().join("disks")).await.expect("disks work on the test host");
        let disk = disks.create(8).await.unwrap();
        assert_eq!(std::fs::read_dir(&disk.mount).unwrap().count(), 0, "starts empty");
        let big = vec![7u8; 9 << 20];
        let err = std::fs::write(disk.mount.join("big"), &big).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(28), "ENOSPC: {err}");
        let on_host = std::fs::metadata(disks.image(&disk.key)).unwrap().len();
        assert!(on_host <= 8 << 20, "{on_host}");
        let other = disks.create(8).await.unwrap();
        disks.sweep(&HashSet::from([other.key.clone()])).await;
        assert!(!disk.mount.exists() && !disks.image(&disk.key).exists(), "swept");
        assert!(is_mounted(&other.mount), "a disk in use is kept");
        disks.release(&other.key).await.unwrap();
        assert_eq!(std::fs::read_dir(dir.path().join("disks")).unwrap().count(), 0);
    }
}
