//! The logs of sandbox containers this node has removed: a failed-over or moved sandbox's
//! earlier generations, and an ended sandbox's last one, for `flotilla logs sandbox`.
//!
//! The engine's log of a container goes with the container. So just before this node removes
//! a sandbox's container (the sandbox ended or moved, the container is a leftover of an
//! earlier generation, or a dead one replaced within its generation), [`KeptLogs::keep`]
//! copies the engine's log into `DATA_DIR/logs/<sandbox>/g<generation>-<container>.log`, one
//! JSON object per line. The copy is as bounded as the engine's log is (`max-size` at create),
//! written once per container, and read within [`READ_FOR`] (a wedged engine delays a removal
//! by that much at most).
//! The files of a sandbox are deleted once its record has left the catalog (retention), by the
//! reconciler's [`KeptLogs::forget_unless`]. What a node keeps is readable while that node
//! is up: a sandbox that failed over because its node died shows its earlier generations'
//! lines again when that node is back.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::runtime::{Docker, LogLine, LogStream};

/// Longest the engine's log of one container is read for.
pub const READ_FOR: Duration = Duration::from_secs(10);

/// Logs of removed sandbox containers, kept under one folder.
#[derive(Clone)]
pub struct KeptLogs {
    dir: PathBuf,
}

/// One kept line, as stored.
#[derive(Serialize, Deserialize)]
struct Stored {
    time: String,
    stderr: bool,
    text: String,
}

/// The kept lines of one container of a sandbox.
pub struct Generation {
    pub generation: u64,
    pub lines: Vec<LogLine>,
}

/// Whether `id` is safe as a file name (sandbox ids are `sb-` and hex digits).
fn plain(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl KeptLogs {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn folder(&self, sandbox: &str) -> Option<PathBuf> {
        plain(sandbox).then(|| self.dir.join(sandbox))
    }

    /// Copies the engine's log of `container` (generation `generation` of `sandbox`) before
    /// the container is removed. Failures are logged, never fatal: removal goes on.
    pub async fn keep(&self, docker: &Docker, container: &str, sandbox: &str, generation: u64) {
        let Some(folder) = self.folder(sandbox) else { return };
        let short: String = container.chars().filter(char::is_ascii_alphanumeric).take(12).collect();
        let path = folder.join(format!("g{generation}-{short}.log"));
        if path.exists() {
            return;
        }
        let read = async {
            let mut lines = Box::pin(docker.logs(container, false, None));
            let mut out = Vec::new();
            while let Some(line) = lines.next().await {
                let l = line?;
                let stored = Stored { time: l.time, stderr: l.stream == LogStream::Stderr, text: l.text };
                out.extend(serde_json::to_vec(&stored).expect("a stored line encodes"));
                out.push(b'\n');
            }
            Ok::<_, crate::runtime::RuntimeError>(out)
        };
        let out = match tokio::time::timeout(READ_FOR, read).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => {
                tracing::warn!(%sandbox, generation, error = %e, "could not read a removed container's logs");
                return;
            }
            Err(_) => {
                tracing::warn!(%sandbox, generation, "gave up reading a removed container's logs: the engine is slow");
                return;
            }
        };
        if let Err(e) = write_new(&folder, &path, &out) {
            tracing::warn!(%sandbox, generation, error = %e, "could not keep a removed container's logs");
        }
    }

    /// The kept containers of `sandbox` (as many as it had per generation), oldest
    /// generation first.
    pub fn read(&self, sandbox: &str) -> Vec<Generation> {
        let Some(folder) = self.folder(sandbox) else { return vec![] };
        let Ok(entries) = std::fs::read_dir(&folder) else { return vec![] };
        let mut found: Vec<Generation> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let (generation, _container) = name.strip_prefix('g')?.strip_suffix(".log")?.split_once('-')?;
                let generation = generation.parse().ok()?;
                let text = std::fs::read_to_string(e.path()).ok()?;
                let lines = text
                    .lines()
                    .filter_map(|l| serde_json::from_str::<Stored>(l).ok())
                    .map(|s| LogLine {
                        time: s.time,
                        stream: if s.stderr { LogStream::Stderr } else { LogStream::Stdout },
                        text: s.text,
                    })
                    .collect();
                Some(Generation { generation, lines })
            })
            .collect();
        found.sort_by_key(|g| g.generation);
        found
    }

    /// Deletes the kept logs of every sandbox `known` says no longer exists.
    pub fn forget_unless(&self, known: impl Fn(&str) -> bool) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        for e in entries.filter_map(|e| e.ok()) {
            let Ok(name) = e.file_name().into_string() else { continue };
            if !known(&name) {
                if let Err(err) = std::fs::remove_dir_all(e.path()) {
                    tracing::warn!(sandbox = %name, error = %err, "could not delete kept logs");
                }
            }
        }
    }
}

/// Writes `data` to `path` through a temporary file, so a reader never sees half of it.
fn write_new(folder: &Path, path: &Path, data: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(folder)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(logs: &KeptLogs, sandbox: &str, generation: u64, lines: &[(&str, bool, &str)]) {
        let mut out = Vec::new();
        for (time, stderr, text) in lines {
            let stored = Stored { time: time.to_string(), stderr: *stderr, text: text.to_string() };
            out.extend(serde_json::to_vec(&stored).unwrap());
            out.push(b'\n');
        }
        let folder = logs.folder(sandbox).unwrap();
        write_new(&folder, &folder.join(format!("g{generation}-c{}.log", lines.len())), &out).unwrap();
    }

    #[test]
    fn generations_read_back_in_order_and_go_with_their_sandbox() {
        let dir = tempfile::tempdir().unwrap();
        let logs = KeptLogs::new(dir.path().join("logs"));
        assert!(logs.read("sb-1").is_empty(), "nothing kept yet, and no folder");
        write(&logs, "sb-1", 10, &[("t3", false, "ten")]);
        write(&logs, "sb-1", 2, &[("t1", false, "two"), ("t2", true, "two err")]);
        write(&logs, "sb-2", 1, &[("t1", false, "other")]);
        let kept = logs.read("sb-1");
        assert_eq!(kept.iter().map(|g| g.generation).collect::<Vec<_>>(), [2, 10], "numeric order");
        assert_eq!(kept[0].lines[1], LogLine { time: "t2".into(), stream: LogStream::Stderr, text: "two err".into() });
        logs.forget_unless(|id| id == "sb-2");
        assert!(logs.read("sb-1").is_empty());
        assert_eq!(logs.read("sb-2").len(), 1);
        assert!(logs.folder("../etc").is_none() && logs.read("../etc").is_empty(), "ids are never paths");
    }
}
