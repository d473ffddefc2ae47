//! Building Flotilla's base images without a registry: a rootfs made on this host, packed as a
//! tar and imported (`docker import`).
//!
//! - `flotilla/busybox` (about 2 MB): the static busybox of Debian's `busybox-static` package
//!   and its applet links. Builds in about a second; used by the tests.
//! - a Debian bookworm + python3 image (about 120 MB) made with `debootstrap` from Debian's
//!   mirror; takes a minute or so, so it is skipped when the image already exists.

use std::path::Path;

use tar::{EntryType, Header};

use super::debootstrap::{debootstrap, pack_rootfs, trim_rootfs, ScratchDir};
use super::{Docker, RuntimeError};

/// Where Debian's `busybox-static` package puts its binary.
const BUSYBOX: &str = "/bin/busybox";

/// Config changes applied to every base image.
const BASE_CHANGES: [&str; 1] = ["WORKDIR /work"];

/// Folders of the busybox rootfs with their modes. `work` and `tmp` must exist in the tar:
/// the engine cannot create them later in a read-only rootfs.
const BUSYBOX_DIRS: [(&str, u32); 9] = [
    ("bin", 0o755),
    ("dev", 0o755),
    ("etc", 0o755),
    ("proc", 0o555),
    ("root", 0o700),
    ("sys", 0o555),
    ("tmp", 0o1777),
    ("usr", 0o755),
    ("work", 0o755),
];

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                      nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\nnobody:x:65534:\n";

/// Builds the `name` image (normally `flotilla/busybox`) with no registry: a rootfs with the
/// static busybox binary of Debian's `busybox-static` package, a link for each of its applets
/// (`sh ls cat echo sleep ... `, as `busybox --list` reports), folders `bin dev etc proc root
/// sys tmp usr work` (`usr/bin` links to `/bin`), and an `/etc/passwd` and `/etc/group` with
/// root and nobody, imported with `WORKDIR /work`. Replaces an existing image of that name.
///
/// Calls `progress` with a short description of each step. Fails with
/// [`RuntimeError::ImageBuild`] if `/bin/busybox` is missing or not statically linked.
pub async fn build_busybox(docker: &Docker, name: &str, progress: impl Fn(&str)) -> Result<(), RuntimeError> {
    progress("reading /bin/busybox");
    let binary = read_static_busybox().await?;
    progress("listing busybox applets");
    let applets = busybox_applets().await?;
    progress(&format!("packing rootfs ({} applets)", applets.len()));
    let tar = busybox_rootfs(&binary, &applets)?;
    progress(&format!("importing {name}"));
    docker.import_tar_bytes(name, tar, &BASE_CHANGES).await?;
    progress("done");
    Ok(())
}

/// Builds a Debian bookworm image with python3 as `name`, using
/// `debootstrap --variant=minbase --include=python3` from Debian's mirror, trimmed of apt
/// caches, package lists and documentation, imported with `WORKDIR /work` and
/// `ENV LANG=C.UTF-8`. Skipped when `name` already exists, unless `rebuild`.
///
/// Needs root, network access to deb.debian.org and the `debootstrap` package; fails with
/// [`RuntimeError::ImageBuild`] naming the package when it is missing. Calls `progress` per
/// step and with debootstrap's `I:` lines.
pub async fn build_python(
    docker: &Docker,
    name: &str,
    rebuild: bool,
    progress: impl Fn(&str),
) -> Result<(), RuntimeError> {
    if !rebuild && docker.image_exists(name).await? {
        progress(&format!("{name} exists, not rebuilt"));
        return Ok(());
    }
    let scratch = ScratchDir::create()?;
    let rootfs = scratch.path().join("rootfs");
    let tar_path = scratch.path().join("rootfs.tar");
    progress("debootstrap bookworm (minbase + python3)");
    debootstrap(&rootfs, &progress).await?;
    progress("trimming apt caches and docs");
    trim_rootfs(&rootfs).await?;
    progress("packing rootfs");
    pack_rootfs(&rootfs, &tar_path).await?;
    progress(&format!("importing {name}"));
    let changes = [BASE_CHANGES[0], "ENV LANG=C.UTF-8"];
    docker.import_rootfs(name, &tar_path, &changes).await?;
    progress("done");
    Ok(())
}

/// The busybox binary, checked to be statically linked (a dynamic one fails in a rootfs
/// without a C library).
async fn read_static_busybox() -> Result<Vec<u8>, RuntimeError> {
    let binary = tokio::fs::read(BUSYBOX).await.map_err(|e| {
        RuntimeError::ImageBuild(format!(
            "cannot read {BUSYBOX} ({e}): install it with `apt-get install busybox-static`"
        ))
    })?;
    if elf_interpreter_present(&binary) {
        return Err(RuntimeError::ImageBuild(format!(
            "{BUSYBOX} is dynamically linked: install the static one with \
             `apt-get install busybox-static`"
        )));
    }
    Ok(binary)
}

/// Applet names from `busybox --list`, without `busybox` itself.
async fn busybox_applets() -> Result<Vec<String>, RuntimeError> {
    let out = tokio::process::Command::new(BUSYBOX).arg("--list").output().await?;
    if !out.status.success() {
        return Err(RuntimeError::ImageBuild(format!(
            "`{BUSYBOX} --list` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
        .map(str::to_string)
        .collect())
}

/// Whether an ELF binary has a `PT_INTERP` program header, i.e. needs a dynamic loader.
/// Anything that is not a 64-bit little-endian ELF counts as "has one" (unusable).
fn elf_interpreter_present(binary: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |at: usize| binary.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |at: usize| binary.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let u64_at = |at: usize| binary.get(at..at + 8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_le_bytes);
    if !binary.starts_with(b"\x7fELF\x02\x01") {
        return true;
    }
    let (Some(phoff), Some(entsize), Some(count)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return true;
    };
    (0..usize::from(count)).any(|i| {
        let at = usize::try_from(phoff).unwrap_or(usize::MAX);
        let at = at.saturating_add(i * usize::from(entsize));
        u32_at(at).is_none_or(|typ| typ == PT_INTERP)
    })
}

/// The busybox rootfs as an in-memory tar.
pub(crate) fn busybox_rootfs(binary: &[u8], applets: &[String]) -> Result<Vec<u8>, RuntimeError> {
    let mut tar = tar::Builder::new(Vec::new());
    for (dir, mode) in BUSYBOX_DIRS {
        append(&mut tar, EntryType::Directory, dir, mode, &[])?;
    }
    append(&mut tar, EntryType::Regular, "bin/busybox", 0o755, binary)?;
    for applet in applets {
        symlink(&mut tar, &format!("bin/{applet}"), "busybox")?;
    }
    symlink(&mut tar, "usr/bin", "../bin")?;
    append(&mut tar, EntryType::Regular, "etc/passwd", 0o644, PASSWD.as_bytes())?;
    append(&mut tar, EntryType::Regular, "etc/group", 0o644, GROUP.as_bytes())?;
    Ok(tar.into_inner()?)
}

fn root_header(kind: EntryType, mode: u32, size: u64) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn append(
    tar: &mut tar::Builder<Vec<u8>>,
    kind: EntryType,
    path: &str,
    mode: u32,
    data: &[u8],
) -> Result<(), RuntimeError> {
    let mut header = root_header(kind, mode, data.len() as u64);
    Ok(tar.append_data(&mut header, path, data)?)
}

fn symlink(tar: &mut tar::Builder<Vec<u8>>, path: &str, target: &str) -> Result<(), RuntimeError> {
    let mut header = root_header(EntryType::Symlink, 0o777, 0);
    Ok(tar.append_link(&mut header, path, Path::new(target))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_from_busybox_static_is_static() {
        let binary = std::fs::read(BUSYBOX).expect("apt-get install busybox-static");
        assert!(!elf_interpreter_present(&binary));
        let dynamic = std::fs::read("/bin/ls").expect("/bin/ls");
        assert!(elf_interpreter_present(&dynamic));
        assert!(elf_interpreter_present(b"#!/bin/sh\n"));
    }

    #[test]
    fn rootfs_tar_has_the_folders_links_and_users() {
        let applets = vec!["sh".to_string(), "ls".to_string()];
        let tar = busybox_rootfs(b"\x7fELF", &applets).expect("tar");
        let mut archive = tar::Archive::new(tar.as_slice());
        let entries: Vec<(String, EntryType)> = archive
            .entries()
            .expect("entries")
            .map(|e| {
                let e = e.expect("entry");
                let path = e.path().expect("path").display().to_string();
                (path, e.header().entry_type())
            })
            .collect();
        for wanted in ["bin", "tmp", "work", "etc", "proc", "sys", "dev"] {
            assert!(entries.contains(&(wanted.into(), EntryType::Directory)), "{wanted}");
        }
        assert!(entries.contains(&("bin/sh".into(), EntryType::Symlink)));
        assert!(entries.contains(&("etc/passwd".into(), EntryType::Regular)));
    }
}
