//! Images that travel between nodes through the blob store.
//!
//! A node asked for an image (`ExportImage`, from a peer that lacks it) writes its engine's
//! archive of it (`docker save`) to a scratch file and splits it ([`split`]): every file of the
//! archive larger than [`INLINE_BYTES`] (the layers) becomes a blob of its own in this node's
//! store, and the answer lists the archive's entries in order, small files inline. Layers are
//! content-addressed, so an image built on another that this node already sent shares its
//! base layers' blobs.
//!
//! The node that needs the image ([`fetch_from_peers`], the engine's image source: see
//! `runtime::archive`) asks the live peers in turn, by node id, until one has it, fetches only
//! the blobs it lacks (every chunk and the whole digest checked, see [`transfer`]; a transfer
//! that broke resumes where it stopped, from the next peer that has the image), rebuilds
//! the archive ([`assemble`], which refuses an index that would write outside the archive or
//! whose sizes do not match the blobs) and loads it into its engine; its log names the image
//! id it loaded and the peer it came from, and its progress every two seconds; `image` events
//! record each fetch as it starts (what it moves, from where) and ends, and each failed
//! attempt, so `flotilla events -f --kind image` follows them. Tags are not compared across nodes: a tag pointing
//! at different builds on different nodes is served by the lowest-numbered live node that has
//! it. One fetch per image at a time ([`Fetches`]): a second workload wanting it waits for the
//! first and finds it loaded. Blobs fetched (or reused) this way are kept like any unreferenced
//! blob, until the keeper's grace period has passed since their last use, so a second node, or
//! the same node again soon after, finds them. Scratch archives live in the blob store's
//! `tmp/`, cleared when the store opens.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Component, Path};
use std::sync::{Arc, Mutex};

use flotilla_proto::peer::{ExportImageRequest, ImageEntry};
use flotilla_raft::{EventKind, NodeId};
use tonic::Status;

use super::store::{is_digest, BlobStore};
use super::{targets, transfer};
use crate::cluster::Cluster;
use crate::runtime::{Docker, RuntimeError};

/// Files of an image archive up to this size travel inline in the index; larger ones (the
/// layers) as blobs.
pub const INLINE_BYTES: u64 = 64 << 10;

const FILE: u32 = 0;
const DIR: u32 = 1;
const SYMLINK: u32 = 2;

/// This node's exports of its images to peers: one at a time per image, and the index of the
/// last export of each kept, so peers asking for the same image at once or again get it
/// without another `docker save` and split, as long as the engine's image is the same and its
/// blobs are still in the store.
#[derive(Default)]
pub struct Exports(Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Exported>>>>>);

/// An image's engine id and the index its export made.
struct Exported {
    id: String,
    entries: Vec<ImageEntry>,
}

/// Saves image `name` of `docker` and splits it into `store`: the archive's entries (see
/// [`Exports`] for when an earlier export is answered instead).
pub async fn export(
    exports: &Exports,
    docker: &Docker,
    store: &BlobStore,
    name: &str,
) -> Result<Vec<ImageEntry>, Status> {
    let not_found = || Status::not_found(format!("image {name} is not on this node"));
    let slot = exports.0.lock().expect("exports lock").entry(name.to_string()).or_default().clone();
    let mut last = slot.lock().await;
    let id = docker.image_id(name).await.map_err(|e| Status::internal(e.to_string()))?.ok_or_else(not_found)?;
    if let Some(done) = last.as_ref().filter(|done| done.id == id) {
        // Each blob is used again: its grace period before collection starts over.
        if done.entries.iter().all(|e| e.blob.is_empty() || (store.has_blob(&e.blob) && store.touch(&e.blob).is_ok())) {
            return Ok(done.entries.clone());
        }
    }
    let scratch = store.scratch().map_err(|e| Status::internal(e.to_string()))?;
    match docker.save_to(name, scratch.path()).await {
        Ok(_) => {}
        Err(RuntimeError::ImageNotFound(_)) => return Err(not_found()),
        Err(e) => return Err(Status::internal(format!("saving image {name}: {e}"))),
    }
    let store = store.clone();
    let entries = tokio::task::spawn_blocking(move || split(&store, scratch.path()))
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::internal(format!("splitting image {name}: {e}")))?;
    *last = Some(Exported { id, entries: entries.clone() });
    Ok(entries)
}

/// The entries of the image archive in `path`, its large files stored in `store`.
pub fn split(store: &BlobStore, path: &Path) -> std::io::Result<Vec<ImageEntry>> {
    let mut archive = tar::Archive::new(std::fs::File::open(path)?);
    let mut entries = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let header = entry.header().clone();
        let path = entry.path()?.to_string_lossy().into_owned();
        let mode = header.mode().unwrap_or(0o644);
        let size = header.size()?;
        let mut out = ImageEntry { path, mode, size, ..Default::default() };
        match header.entry_type() {
            tar::EntryType::Directory => out.kind = DIR,
            tar::EntryType::Symlink => {
                out.kind = SYMLINK;
                out.link = entry.link_name()?.map(|l| l.to_string_lossy().into_owned()).unwrap_or_default();
            }
            tar::EntryType::Regular | tar::EntryType::Continuous if size > INLINE_BYTES => {
                let mut writer = store.writer();
                std::io::copy(&mut entry, &mut writer)?;
                // A copy of the engine's layer: if a crash loses it, the next export makes it.
                let (blob, _) = writer.finish_cached().map_err(std::io::Error::other)?;
                out.blob = blob;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                entry.read_to_end(&mut out.data)?;
            }
            other => return Err(std::io::Error::other(format!("unexpected entry type {other:?} in an image archive"))),
        }
        entries.push(out);
    }
    Ok(entries)
}

/// Whether `path` stays inside the archive's root (no absolute path, no climbing out).
fn inside(path: &Path) -> bool {
    let mut depth = 0usize;
    for c in path.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir if depth > 0 => depth -= 1,
            _ => return false,
        }
    }
    true
}

/// Writes the archive `entries` describe (large files read from `store`) to `out`, leaving
/// out the files named in `skip` (layers the engine has). Refuses an entry outside the
/// archive, a symbolic link pointing outside it, and a file whose size is not its blob's (the
/// archive would lose step with its headers).
pub fn assemble(
    store: &BlobStore,
    entries: &[ImageEntry],
    skip: &HashSet<String>,
    out: impl Write,
) -> std::io::Result<()> {
    let bad = |what: String| std::io::Error::other(what);
    let mut tar = tar::Builder::new(out);
    for e in entries {
        if !inside(Path::new(&e.path)) {
            return Err(bad(format!("entry {:?} leaves the archive", e.path)));
        }
        if skip.contains(&e.path) {
            continue;
        }
        let mut header = tar::Header::new_gnu();
        header.set_mode(e.mode & 0o777);
        header.set_mtime(0);
        match e.kind {
            DIR => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                tar.append_data(&mut header, &e.path, std::io::empty())?;
            }
            SYMLINK => {
                let parent = Path::new(&e.path).parent().map(Path::to_path_buf).unwrap_or_default();
                if !inside(&parent.join(&e.link)) {
                    return Err(bad(format!("link {:?} -> {:?} leaves the archive", e.path, e.link)));
                }
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                tar.append_link(&mut header, &e.path, &e.link)?;
            }
            FILE if !e.blob.is_empty() => {
                let size = store.manifest(&e.blob).map_err(std::io::Error::other)?.map(|m| m.size);
                if size != Some(e.size) {
                    return Err(bad(format!(
                        "entry {:?}: blob {} holds {size:?} bytes, not {}",
                        e.path, e.blob, e.size
                    )));
                }
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(e.size);
                let reader = store.reader(&e.blob).map_err(std::io::Error::other)?;
                tar.append_data(&mut header, &e.path, reader.take(e.size))?;
            }
            FILE => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(e.data.len() as u64);
                tar.append_data(&mut header, &e.path, e.data.as_slice())?;
            }
            other => return Err(std::io::Error::other(format!("entry {:?} has unknown kind {other}", e.path))),
        }
    }
    tar.finish()
}

/// The image fetches of one node: one at a time per image.
#[derive(Default)]
pub struct Fetches(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

/// Finds image `name` on a live peer, fetches the blobs of it this node lacks, and loads it
/// into `docker`. `Ok(false)` when no live peer has it. While another fetch of `name` runs
/// here, waits for it (and is done if it loaded the image).
pub async fn fetch_from_peers(
    fetches: &Fetches,
    cluster: &Cluster,
    store: &BlobStore,
    docker: &Docker,
    name: &str,
) -> Result<bool, RuntimeError> {
    let slot = fetches.0.lock().expect("fetches lock").entry(name.to_string()).or_default().clone();
    let _one_at_a_time = slot.lock().await;
    if docker.image_exists(name).await? {
        return Ok(true);
    }
    let mut failures = Vec::new();
    for (node, addr) in targets(cluster) {
        let asked = std::time::Instant::now();
        let entries = match ask(cluster, &addr, name).await {
            Ok(entries) => entries,
            Err(s) if s.code() == tonic::Code::NotFound => continue,
            Err(s) => {
                failures.push(format!("node {node}: {}", s.message()));
                continue;
            }
        };
        let export_secs = asked.elapsed().as_secs_f64();
        match load(cluster, store, docker, Source { node, addr: &addr, image: name }, &entries).await {
            Ok(Loaded { bytes, fetch_secs, load_secs, layers_skipped }) => {
                let id = docker.image_id(name).await.ok().flatten().unwrap_or_default();
                let secs = asked.elapsed().as_secs_f64();
                tracing::info!(
                    image = name,
                    %id,
                    from = node,
                    fetched_bytes = bytes,
                    secs,
                    export_secs,
                    fetch_secs,
                    load_secs,
                    layers_skipped,
                    "image fetched from a peer and loaded"
                );
                cluster.record_event(
                    EventKind::Image,
                    name.to_string(),
                    format!(
                        "node {} fetched image {name} from node {node}: {} moved in {secs:.1} s",
                        cluster.id,
                        mib(bytes)
                    ),
                    Some(cluster.id),
                );
                return Ok(true);
            }
            Err(e) => {
                tracing::warn!(image = name, from = node, error = %e, "image fetch failed; trying the next node that has it");
                cluster.record_event(
                    EventKind::Image,
                    name.to_string(),
                    format!("node {} could not fetch image {name} from node {node}: {e}", cluster.id),
                    Some(cluster.id),
                );
                failures.push(format!("node {node}: {e}"));
            }
        }
    }
    if failures.is_empty() {
        Ok(false)
    } else {
        Err(RuntimeError::Fetch { image: name.to_string(), reason: failures.join("; ") })
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

async fn ask(cluster: &Cluster, addr: &str, name: &str) -> Result<Vec<ImageEntry>, Status> {
    let mut client =
        cluster.peers.bulk(addr).map_err(|e| Status::unavailable(e.to_string()))?.max_decoding_message_size(64 << 20);
    let mut req = tonic::Request::new(ExportImageRequest { name: name.to_string() });
    req.set_timeout(std::time::Duration::from_secs(600));
    Ok(client.export_image(req).await?.into_inner().entries)
}

/// The peer an image is fetched from.
#[derive(Clone, Copy)]
struct Source<'a> {
    node: NodeId,
    addr: &'a str,
    image: &'a str,
}

/// How often a fetch logs its progress.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// The layer files of the archive `entries` describe whose layers the engine has already
/// (the longest run of the image's layers, from the bottom, that one of its images starts
/// with). `docker load` never opens such a file, so it need not travel or be written. Empty
/// when the archive is not the one-image `docker save` format this reads.
fn layers_present(entries: &[ImageEntry], chains: &[Vec<String>]) -> HashSet<String> {
    #[derive(serde::Deserialize)]
    struct Item {
        #[serde(rename = "Config")]
        config: String,
        #[serde(rename = "Layers")]
        layers: Vec<String>,
    }
    #[derive(serde::Deserialize)]
    struct Config {
        rootfs: RootFs,
    }
    #[derive(serde::Deserialize)]
    struct RootFs {
        diff_ids: Vec<String>,
    }
    let inline = |path: &str| entries.iter().find(|e| e.path == path && e.blob.is_empty()).map(|e| e.data.as_slice());
    let Some(Ok(mut items)) = inline("manifest.json").map(serde_json::from_slice::<Vec<Item>>) else {
        return HashSet::new();
    };
    if items.len() != 1 {
        return HashSet::new();
    }
    let item = items.remove(0);
    let Some(Ok(config)) = inline(&item.config).map(serde_json::from_slice::<Config>) else { return HashSet::new() };
    let diff_ids = config.rootfs.diff_ids;
    if diff_ids.len() != item.layers.len() {
        return HashSet::new();
    }
    let shared = |chain: &Vec<String>| chain.iter().zip(&diff_ids).take_while(|(a, b)| a == b).count();
    let present = chains.iter().map(shared).max().unwrap_or(0);
    item.layers.into_iter().take(present).collect()
}

/// Writes into a channel of byte pieces of about 1 MiB: the archive goes to the engine as it
/// is assembled, never to a file.
struct ToEngine {
    tx: tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>,
    buf: Vec<u8>,
}

impl Write for ToEngine {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 1 << 20 {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let piece = bytes::Bytes::from(std::mem::take(&mut self.buf));
            self.tx
                .blocking_send(Ok(piece))
                .map_err(|_| std::io::Error::other("the engine stopped reading the image"))?;
        }
        Ok(())
    }
}

/// Rebuilds the archive (without the files in `skip`) and loads it as it is built.
async fn assemble_and_load(
    store: &BlobStore,
    docker: &Docker,
    entries: &[ImageEntry],
    skip: HashSet<String>,
) -> Result<(), String> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let (s, list) = (store.clone(), entries.to_vec());
    let assembling = tokio::task::spawn_blocking(move || {
        let mut out = ToEngine { tx: tx.clone(), buf: Vec::with_capacity(1 << 20) };
        let done = assemble(&s, &list, &skip, &mut out).and_then(|()| out.flush());
        if let Err(e) = &done {
            // The engine must see a broken body, not a short archive that looks whole.
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
        done
    });
    let loaded = docker.load_stream(tokio_stream::wrappers::ReceiverStream::new(rx)).await;
    let assembled = assembling.await.map_err(|e| e.to_string())?;
    // The engine's own reason first: when it stops reading, the rebuild only sees that.
    loaded.map_err(|e| e.to_string())?;
    assembled.map_err(|e| format!("rebuilding the image archive: {e}"))
}

/// What a successful fetch moved and where its time went.
struct Loaded {
    bytes: u64,
    fetch_secs: f64,
    load_secs: f64,
    layers_skipped: usize,
}

/// Fetches the blobs of `entries` this node lacks from `from`, rebuilds the archive and loads
/// it into the engine as it is rebuilt. Layers the engine already has neither travel nor go
/// into the archive (see [`layers_present`]); if the engine then refuses the archive, the
/// whole one is fetched and loaded. Logs its progress every [`PROGRESS_EVERY`]. A blob whose
/// transfer broke before (this peer died, or another copy was bad) moves only the chunks
/// still missing (see [`transfer::fetch`]).
async fn load(
    cluster: &Cluster,
    store: &BlobStore,
    docker: &Docker,
    from: Source<'_>,
    entries: &[ImageEntry],
) -> Result<Loaded, String> {
    if let Some(e) = entries.iter().find(|e| !e.blob.is_empty() && !is_digest(&e.blob)) {
        return Err(format!("the index names {:?}, not a blob", e.blob));
    }
    let chains = docker.layer_chains().await.map_err(|e| e.to_string())?;
    let skip = layers_present(entries, &chains);
    let started = std::time::Instant::now();
    let mut bytes = fetch_blobs(cluster, store, from, entries, &skip).await?;
    let fetched_at = std::time::Instant::now();
    let mut layers_skipped = skip.len();
    if let Err(e) = assemble_and_load(store, docker, entries, skip.clone()).await {
        if skip.is_empty() {
            return Err(e);
        }
        tracing::warn!(image = from.image, error = %e, "the engine refused the image without the layers it has; loading it whole");
        bytes += fetch_blobs(cluster, store, from, entries, &HashSet::new()).await?;
        assemble_and_load(store, docker, entries, HashSet::new()).await?;
        layers_skipped = 0;
    }
    Ok(Loaded {
        bytes,
        fetch_secs: (fetched_at - started).as_secs_f64(),
        load_secs: fetched_at.elapsed().as_secs_f64(),
        layers_skipped,
    })
}

/// Fetches the blobs of `entries` (but those of the files in `skip`) that the store lacks.
/// Returns the bytes fetched.
async fn fetch_blobs(
    cluster: &Cluster,
    store: &BlobStore,
    from: Source<'_>,
    entries: &[ImageEntry],
    skip: &HashSet<String>,
) -> Result<u64, String> {
    let mut lacking = Vec::new();
    for e in entries.iter().filter(|e| !e.blob.is_empty() && !skip.contains(&e.path)) {
        // A copy here is used again: its grace period before collection starts over.
        let here = store.has_blob(&e.blob) && store.touch(&e.blob).is_ok();
        if !here && !lacking.iter().any(|l: &&ImageEntry| l.blob == e.blob) {
            lacking.push(e);
        }
    }
    if lacking.is_empty() {
        return Ok(0);
    }
    let total: u64 = lacking.iter().map(|e| e.size).sum();
    tracing::info!(
        image = from.image,
        from = from.node,
        layers = lacking.len(),
        bytes = total,
        "fetching an image's layers"
    );
    cluster.record_event(
        EventKind::Image,
        from.image.to_string(),
        format!(
            "node {} fetching image {} from node {}: {} in {} layers it lacks",
            cluster.id,
            from.image,
            from.node,
            mib(total),
            lacking.len()
        ),
        Some(cluster.id),
    );
    let started = std::time::Instant::now();
    let last_log = Mutex::new(started);
    let mut fetched = 0;
    for e in lacking {
        let before = fetched;
        let report = |received: u64, _| {
            let mut last = last_log.lock().expect("progress lock");
            if last.elapsed() >= PROGRESS_EVERY {
                *last = std::time::Instant::now();
                let done = before + received;
                let rate = done as f64 / started.elapsed().as_secs_f64() / (1 << 20) as f64;
                tracing::info!(image = from.image, from = from.node, done = %mib(done), of = %mib(total), rate_mib_s = format!("{rate:.1}"), "fetching an image");
            }
        };
        fetched +=
            transfer::fetch(&cluster.peers, from.addr, store, &e.blob, report).await.map_err(|e| e.to_string())?;
    }
    Ok(fetched)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_archive_splits_into_blobs_and_assembles_back_byte_for_byte_in_content() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(&dir.path().join("blobs")).unwrap();
        let layer: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut original = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        original.append_data(&mut h, "abc/", std::io::empty()).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(layer.len() as u64);
        original.append_data(&mut h, "abc/layer.tar", layer.as_slice()).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(2);
        original.append_data(&mut h, "manifest.json", &b"[]"[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        original.append_link(&mut h, "def/layer.tar", "../abc/layer.tar").unwrap();
        let path = dir.path().join("image.tar");
        std::fs::write(&path, original.into_inner().unwrap()).unwrap();

        let entries = split(&store, &path).unwrap();
        let kinds: Vec<(&str, u32, bool)> =
            entries.iter().map(|e| (e.path.as_str(), e.kind, !e.blob.is_empty())).collect();
        assert_eq!(
            kinds,
            [
                ("abc/", DIR, false),
                ("abc/layer.tar", FILE, true),
                ("manifest.json", FILE, false),
                ("def/layer.tar", SYMLINK, false)
            ]
        );
        assert_eq!(entries[2].data, b"[]");
        assert_eq!(entries[3].link, "../abc/layer.tar");

        let mut rebuilt = Vec::new();
        assemble(&store, &entries, &HashSet::new(), &mut rebuilt).unwrap();
        let mut back = tar::Archive::new(rebuilt.as_slice());
        let mut seen = Vec::new();
        for e in back.entries().unwrap() {
            let mut e = e.unwrap();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            seen.push((e.path().unwrap().to_string_lossy().into_owned(), data));
        }
        assert_eq!(seen[1], ("abc/layer.tar".to_string(), layer));
        assert_eq!(seen[2].1, b"[]");
        let refused = [
            ImageEntry { path: "../evil".into(), ..Default::default() },
            ImageEntry { path: "/etc/evil".into(), ..Default::default() },
            ImageEntry { path: "a/layer.tar".into(), kind: SYMLINK, link: "../../etc".into(), ..Default::default() },
            ImageEntry { path: "a/layer.tar".into(), kind: SYMLINK, link: "/etc/passwd".into(), ..Default::default() },
            ImageEntry { size: entries[1].size + 1, ..entries[1].clone() },
        ];
        for e in refused {
            assert!(
                assemble(&store, std::slice::from_ref(&e), &HashSet::new(), &mut Vec::new()).is_err(),
                "refused: {e:?}"
            );
        }
    }

    /// The engine has the image's bottom layers through another image: those files are left
    /// out; a layer above one it lacks is not (the engine finds layers by their whole chain).
    #[test]
    fn layers_the_engine_has_from_the_bottom_are_left_out() {
        let inline = |path: &str, data: &str| ImageEntry { path: path.into(), data: data.into(), ..Default::default() };
        let entries = [
            inline("c.json", r#"{"rootfs": {"type": "layers", "diff_ids": ["sha256:a", "sha256:b", "sha256:c"]}}"#),
            inline(
                "manifest.json",
                r#"[{"Config": "c.json", "Layers": ["1/layer.tar", "2/layer.tar", "3/layer.tar"]}]"#,
            ),
        ];
        let chains =
            |c: &[&[&str]]| c.iter().map(|l| l.iter().map(|s| s.to_string()).collect()).collect::<Vec<Vec<_>>>();
        let present = |c: &[&[&str]]| {
            let mut v: Vec<String> = layers_present(&entries, &chains(c)).into_iter().collect();
            v.sort();
            v
        };
        assert_eq!(present(&[&["sha256:a", "sha256:b"], &["sha256:a"]]), ["1/layer.tar", "2/layer.tar"]);
        assert_eq!(present(&[&["sha256:b", "sha256:c"]]), Vec::<String>::new(), "not from the bottom");
        assert_eq!(present(&[&["sha256:a", "sha256:b", "sha256:c", "sha256:d"]]).len(), 3);
        assert!(present(&[]).is_empty());
        // Not the format this reads: nothing is left out.
        let odd = [inline("manifest.json", "{}")];
        assert!(layers_present(&odd, &chains(&[&["sha256:a"]])).is_empty());
    }
}
