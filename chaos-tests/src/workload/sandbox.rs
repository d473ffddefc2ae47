//! The sandbox workload: one `--restore-on-failure` sandbox, exec'd through every node.
//!
//! [`create`] makes the sandbox before the faults start (`restore_on_failure`, a periodic
//! filesystem snapshot every 5 s), writes `/work/copy`, and takes one snapshot by hand so a
//! restore point holds the file from the start. [`execer`] then runs `cat /work/copy &&
//! hostname` through each node in turn until the run stops, and records every exec as a
//! [`ExecRecord`]: the hostname names the copy that answered (each generation is a new
//! container, whose hostname is its container id). A `cat` that cannot open the file, or an
//! answer without its content, is a lost write; an exec killed with its copy (exit 137, a
//! fence or a stale copy removed) is only a failed exec. After the run, [`check`] hands the
//! records to [`crate::check::sandbox`], and [`snapshot_digests`] hashes the blob every listed
//! replica holds for [`crate::check::snapshot`].

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use flotilla::{Client, ClientOptions, Sandbox};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::check::sandbox::ExecRecord;
use crate::check::snapshot::{ReplicaDigests, Snapshot};
use crate::check::Violation;

/// What `/work/copy` holds.
const CONTENT: &str = "chaos";

/// Time between two execs (over all nodes).
const EVERY: Duration = Duration::from_millis(200);

/// Creates the sandbox, writes the file and snapshots it; returns the sandbox's id.
pub async fn create(client: &Client) -> anyhow::Result<String> {
    let sb = client
        .sandbox()
        .image("flotilla/busybox")
        .restore_on_failure(true)
        .snapshot_every(Duration::from_secs(5))
        .tag("flotilla-chaos", "1")
        .create()
        .await
        .context("create the sandbox")?;
    let out = sb.exec(["sh", "-c", &format!("echo {CONTENT} > /work/copy")]).output().await?;
    anyhow::ensure!(out.exit_code == 0, "writing /work/copy exited {}", out.exit_code);
    sb.snapshot_filesystem().await.context("first snapshot")?;
    Ok(sb.id)
}

/// What the exec workload saw.
#[derive(Debug, Default)]
pub struct Execs {
    pub records: Vec<ExecRecord>,
    /// Answers that did not hold the file's content.
    pub wrong: Vec<String>,
}

/// One exec through `client`, recorded.
async fn exec_once(sb: &Sandbox, start: Instant) -> (ExecRecord, Option<String>) {
    let invoke_us = start.elapsed().as_micros() as u64;
    let mut record = ExecRecord { sandbox: sb.id.clone(), invoke_us, complete_us: None, copy: None };
    let out = sb.exec(["sh", "-c", "cat /work/copy && hostname"]).timeout(Duration::from_secs(3)).output();
    let Ok(Ok(out)) = tokio::time::timeout(Duration::from_secs(5), out).await else { return (record, None) };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("can't open '/work/copy'") {
        return (record, Some(format!("exec at {invoke_us} us: {stderr:?}")));
    }
    if out.exit_code != 0 {
        // Killed with its container (a fence, a node removing a stale copy): a failed exec.
        return (record, None);
    }
    let mut lines = text.lines();
    let (content, host) = (lines.next(), lines.next());
    if content != Some(CONTENT) {
        return (record, Some(format!("exec at {invoke_us} us printed {text:?}")));
    }
    record.complete_us = Some(start.elapsed().as_micros() as u64);
    record.copy = host.map(str::to_string);
    (record, None)
}

/// Execs in sandbox `id` through each of `endpoints` in turn until `stop`.
pub async fn execer(
    endpoints: Vec<String>,
    id: String,
    start: Instant,
    execs: Arc<Mutex<Execs>>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let options = ClientOptions {
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_secs(3),
        retry_for: Duration::ZERO,
        ..Default::default()
    };
    let mut handles: Vec<(Client, Option<Sandbox>)> = Vec::new();
    for e in &endpoints {
        handles.push((Client::connect_with([e], options.clone()).await?, None));
    }
    let mut turn = 0;
    while !*stop.borrow() {
        let (client, sb) = &mut handles[turn % endpoints.len()];
        turn += 1;
        if sb.is_none() {
            *sb = tokio::time::timeout(Duration::from_secs(3), client.sandbox_from_id(&id))
                .await
                .ok()
                .and_then(Result::ok);
        }
        if let Some(sb) = sb {
            let (record, wrong) = exec_once(sb, start).await;
            let mut execs = execs.lock().expect("execs lock poisoned");
            execs.records.push(record);
            execs.wrong.extend(wrong);
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = stop.changed() => {}
        }
    }
    Ok(())
}

/// The single-copy check over the execs, plus one violation per answer without the file.
pub fn check(execs: &Execs) -> Vec<Violation> {
    let mut out = crate::check::sandbox::check(&execs.records);
    out.extend(execs.wrong.iter().map(|w| Violation::new("sandbox-files-kept", w.clone())));
    out
}

/// A blob's manifest as the node's blob store writes it (`blobs/manifests/<sha256>`).
#[derive(Deserialize)]
struct Manifest {
    chunks: Vec<ChunkRef>,
}

#[derive(Deserialize)]
struct ChunkRef {
    /// The chunk's name (its BLAKE3 hash).
    hash: String,
}

/// The sha256 of the blob `digest` as the node with data dir `data` holds it: its manifest's
/// chunks, in order; `None` when the node lacks the manifest or a chunk.
fn blob_digest(data: &Path, digest: &str) -> Option<String> {
    let blobs = data.join("blobs");
    let manifest: Manifest = serde_json::from_slice(&std::fs::read(blobs.join("manifests").join(digest)).ok()?).ok()?;
    let mut hash = Sha256::new();
    for c in &manifest.chunks {
        hash.update(std::fs::read(blobs.join("chunks").join(c.hash.get(..2)?).join(&c.hash)).ok()?);
    }
    Some(hex::encode(hash.finalize()))
}

/// Every snapshot of sandbox `id`, and the digest of each replica's copy, read from the
/// nodes' data dirs (`data_dirs` by node id).
pub async fn snapshot_digests(
    client: &Client,
    id: &str,
    data_dirs: &BTreeMap<u64, std::path::PathBuf>,
) -> anyhow::Result<(Vec<Snapshot>, ReplicaDigests)> {
    let infos = client.list_snapshots(Some(id)).await?;
    let mut digests = ReplicaDigests::new();
    let snapshots = infos
        .into_iter()
        .map(|s| {
            for node in &s.replicas {
                if let Some(d) = data_dirs.get(node).and_then(|dir| blob_digest(dir, &s.sha256)) {
                    digests.insert((s.id.clone(), *node), d);
                }
            }
            Snapshot { id: s.id, sha256: s.sha256, replicas: s.replicas, state: s.state }
        })
        .collect();
    Ok((snapshots, digests))
}

/// What the sandbox checks covered.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Execs answered, and those that failed or timed out.
    pub answered: usize,
    pub failed: usize,
    /// Copies (containers) that answered, in order of their first answer.
    pub copies: Vec<String>,
    /// The sandbox's generation and node when the run ended.
    pub generation: u64,
    pub node: u64,
    /// Ready snapshots checked, and the replica copies hashed.
    pub snapshots: usize,
    pub replicas: usize,
}

impl Summary {
    pub fn new(execs: &Execs) -> Self {
        let mut first: Vec<(u64, &str)> = Vec::new();
        for r in &execs.records {
            if let (Some(done), Some(copy)) = (r.complete_us, r.copy.as_deref()) {
                match first.iter_mut().find(|(_, c)| *c == copy) {
                    Some(f) => f.0 = f.0.min(done),
                    None => first.push((done, copy)),
                }
            }
        }
        first.sort();
        let answered = execs.records.iter().filter(|r| r.copy.is_some()).count();
        Summary {
            answered,
            failed: execs.records.len() - answered,
            copies: first.into_iter().map(|(_, c)| c.to_string()).collect(),
            ..Default::default()
        }
    }
}

/// The node hosting sandbox `id`, asked until one answers within `within` (right after a
/// fault heals, the cluster may still be electing).
pub async fn node_of(client: &Client, id: &str, within: Duration) -> anyhow::Result<u64> {
    let deadline = Instant::now() + within;
    loop {
        match client.sandbox_info(id).await {
            Ok(info) => return Ok(info.node),
            Err(e) if Instant::now() >= deadline => anyhow::bail!("sandbox {id} not shown within {within:?}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}
