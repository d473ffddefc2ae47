//! Files in and out of a running sandbox as tar streams piped through `tar` run in it.
//!
//! The engine's archive API ([`Docker::put_archive`], [`Docker::get_archive`]) works on
//! the container's filesystem as the engine sees it from outside: it cannot see a tmpfs
//! such as `/tmp` (a file there is "not found"), refuses uploads anywhere in a read-only
//! rootfs (even into that tmpfs), and under gVisor misses what lives only in the sandbox's
//! own kernel. A `tar` process run in the sandbox sees exactly what the sandbox's programs
//! see, so [`Docker::tar_in`] and [`Docker::tar_out`] work for any path. The image must
//! have a `tar` (busybox and Debian both do); without one the copy fails saying so.
//!
//! Safety: the `tar` runs inside the sandbox with the sandbox's privileges, so whatever an
//! archive holds it can only write where the sandbox itself could. [`check_entries`] still
//! refuses, before anything runs, an archive whose entries climb out of the target folder
//! (`..`, absolute paths) or write through a symbolic link the archive itself made:
//! extraction lands where the caller asked, or nowhere.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

use super::{Docker, ExecSpec, Output, RuntimeError};

/// Longest message kept from `tar`'s stderr, bytes.
const MAX_STDERR: usize = 4096;

impl Docker {
    /// Extracts `tar` into folder `dir` of running container `id` with the container's own
    /// `tar`. Fails with [`RuntimeError::InvalidSpec`] for an archive [`check_entries`]
    /// refuses, [`RuntimeError::NotFound`] when `dir` is not a folder, and
    /// [`RuntimeError::Engine`] with `tar`'s message for anything else (no space, read-only).
    pub async fn tar_in(&self, id: &str, dir: &str, tar: Vec<u8>) -> Result<(), RuntimeError> {
        check_entries(&tar).map_err(RuntimeError::InvalidSpec)?;
        let test = self.run_collect(id, &["test", "-d", dir], None).await?;
        if test.code != 0 {
            return Err(RuntimeError::NotFound(format!("{dir} is not a folder in the sandbox")));
        }
        let done = self.run_collect(id, &["tar", "-x", "-f", "-", "-C", dir], Some(tar)).await?;
        done.check(dir)
    }

    /// Creates folder `dir` (with its parents) in running container `id` and extracts `tar`
    /// into it, as [`Docker::tar_in`] does.
    pub async fn unpack(&self, id: &str, dir: &str, tar: Vec<u8>) -> Result<(), RuntimeError> {
        self.run_collect(id, &["mkdir", "-p", dir], None).await?.check(dir)?;
        self.tar_in(id, dir, tar).await
    }

    /// `path` (a file or a folder, recursively) of running container `id` as a tar stream
    /// made by the container's own `tar`: one entry named by the base name, or entries under
    /// it. A missing path ends the stream with [`RuntimeError::NotFound`].
    pub fn tar_out(&self, id: &str, path: &str) -> impl Stream<Item = Result<Bytes, RuntimeError>> + Send + 'static {
        let (docker, id, path) = (self.clone(), id.to_string(), path.to_string());
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            if let Err(e) = docker.stream_tar(&id, &path, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx)
    }

    async fn stream_tar(
        &self,
        id: &str,
        path: &str,
        tx: &tokio::sync::mpsc::Sender<Result<Bytes, RuntimeError>>,
    ) -> Result<(), RuntimeError> {
        let (parent, name) = split(path);
        let cmd = ["tar", "-c", "-f", "-", "-C", parent.as_str(), name.as_str()];
        let mut p = self.exec(id, &ExecSpec { cmd: words(&cmd), env: Vec::new(), workdir: None, stdin: false }).await?;
        let mut stderr = Vec::new();
        while let Some(item) = p.output.next().await {
            match item? {
                Output::Stdout(b) => {
                    if tx.send(Ok(b)).await.is_err() {
                        return Ok(()); // The reader left.
                    }
                }
                Output::Stderr(b) => keep(&mut stderr, &b),
            }
        }
        Finished::of(self, &p.exec_id, stderr).await?.check(path)
    }

    /// Runs `cmd` in container `id`, feeding it `stdin` when given, and waits for its end.
    async fn run_collect(&self, id: &str, cmd: &[&str], stdin: Option<Vec<u8>>) -> Result<Finished, RuntimeError> {
        let spec = ExecSpec { cmd: words(cmd), env: Vec::new(), workdir: None, stdin: stdin.is_some() };
        let mut p = self.exec(id, &spec).await?;
        let feed = async {
            if let (Some(mut input), Some(data)) = (p.stdin.take(), stdin) {
                // A process that stops reading (tar failing early) closes the pipe: its exit
                // status and message say why, so a write error here is not the story.
                let _ = input.write_all(&data).await;
                let _ = input.shutdown().await;
            }
        };
        let drain = async {
            let mut stderr = Vec::new();
            while let Some(item) = p.output.next().await {
                if let Output::Stderr(b) = item? {
                    keep(&mut stderr, &b);
                }
            }
            Ok::<_, RuntimeError>(stderr)
        };
        let ((), stderr) = tokio::join!(feed, drain);
        Finished::of(self, &p.exec_id, stderr?).await
    }
}

/// How an exec run to its end finished.
struct Finished {
    code: i64,
    /// Its stderr (at most [`MAX_STDERR`] bytes), trimmed.
    stderr: String,
    /// The command could not be started at all (not in the image).
    never_started: bool,
}

impl Finished {
    async fn of(docker: &Docker, exec_id: &str, stderr: Vec<u8>) -> Result<Finished, RuntimeError> {
        let code = docker.exec_exit_code(exec_id).await?.unwrap_or(-1);
        let never_started = code != 0 && docker.exec_never_started(exec_id).await?;
        Ok(Finished { code, stderr: String::from_utf8_lossy(&stderr).trim().to_string(), never_started })
    }

    /// `Ok` on exit 0; otherwise the error `tar` reported about `path`.
    fn check(self, path: &str) -> Result<(), RuntimeError> {
        if self.code == 0 {
            return Ok(());
        }
        if self.never_started || self.code == 127 {
            return Err(RuntimeError::InvalidSpec(
                "copying needs a `tar` program in the sandbox's image, and it has none".into(),
            ));
        }
        if self.stderr.contains("No such file") || self.stderr.contains("Cannot stat") {
            return Err(RuntimeError::NotFound(format!("{path}: no such file or folder in the sandbox")));
        }
        let why = if self.stderr.is_empty() { format!("tar exited with {}", self.code) } else { self.stderr };
        Err(RuntimeError::Engine(why))
    }
}

/// Refuses an archive with an entry outside the folder it is extracted into (an absolute
/// path or a `..` component, also as a hard-link target) or below a symbolic link the
/// archive made (extracting would write wherever the link points).
pub fn check_entries(tar: &[u8]) -> Result<(), String> {
    let mut links: HashSet<PathBuf> = HashSet::new();
    let mut archive = tar::Archive::new(tar);
    let entries = archive.entries().map_err(|e| format!("not a tar archive: {e}"))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("not a tar archive: {e}"))?;
        let path = entry.path().map_err(|e| format!("bad entry name: {e}"))?.into_owned();
        inside(&path)?;
        if let Some(through) = path.ancestors().skip(1).find(|a| links.contains(*a)) {
            return Err(format!(
                "entry {} is below {}, a symbolic link the archive made",
                path.display(),
                through.display()
            ));
        }
        match entry.header().entry_type() {
            tar::EntryType::Symlink => {
                links.insert(clean(&path));
            }
            tar::EntryType::Link => {
                if let Some(target) = entry.link_name().map_err(|e| format!("bad link: {e}"))? {
                    inside(&target)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn inside(path: &Path) -> Result<(), String> {
    if path.components().any(|c| matches!(c, Component::ParentDir | Component::RootDir | Component::Prefix(_))) {
        return Err(format!("entry {} is outside of the target folder", path.display()));
    }
    Ok(())
}

/// `path` without `.` components (as the symlink set compares them).
fn clean(path: &Path) -> PathBuf {
    path.components().filter(|c| !matches!(c, Component::CurDir)).collect()
}

/// The folder holding `path` and its base name (`/` itself is `.` in `/`).
fn split(path: &str) -> (String, String) {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rsplit_once('/') {
        None | Some((_, "")) => ("/".into(), ".".into()),
        Some(("", name)) => ("/".into(), name.into()),
        Some((parent, name)) => (parent.into(), name.into()),
    }
}

fn words(cmd: &[&str]) -> Vec<String> {
    cmd.iter().map(|s| s.to_string()).collect()
}

fn keep(stderr: &mut Vec<u8>, b: &[u8]) {
    let room = MAX_STDERR.saturating_sub(stderr.len());
    stderr.extend_from_slice(&b[..b.len().min(room)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(entries: &[(&str, tar::EntryType, Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            h.set_size(0);
            // Set names on the header directly: the builder's own setters refuse `..`.
            h.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path.as_bytes());
            if let Some(l) = link {
                h.set_link_name(l).unwrap();
            }
            h.set_cksum();
            b.append(&h, &[][..]).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn archives_that_climb_out_are_refused() {
        use tar::EntryType::{Directory, Link, Regular, Symlink};
        assert_eq!(check_entries(&archive(&[("d/", Directory, None), ("d/a.txt", Regular, None)])), Ok(()));
        assert_eq!(check_entries(&archive(&[("ok", Symlink, Some("/etc/passwd"))])), Ok(()), "a link alone is fine");
        for (bad, why) in [
            (archive(&[("../x", Regular, None)]), "outside of"),
            (archive(&[("a/../../x", Regular, None)]), "outside of"),
            (archive(&[("/etc/x", Regular, None)]), "outside of"),
            (archive(&[("h", Link, Some("../x"))]), "outside of"),
            (archive(&[("esc", Symlink, Some("/host")), ("esc/owned", Regular, None)]), "symbolic link"),
            (archive(&[("./esc", Symlink, Some("/host")), ("esc/a/b", Regular, None)]), "symbolic link"),
        ] {
            let e = check_entries(&bad).expect_err(why);
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn paths_split_into_folder_and_name() {
        assert_eq!(split("/tmp/x"), ("/tmp".into(), "x".into()));
        assert_eq!(split("/tmp/d/"), ("/tmp".into(), "d".into()));
        assert_eq!(split("/work"), ("/".into(), "work".into()));
        assert_eq!(split("/"), ("/".into(), ".".into()));
    }
}
