//! Images on the cluster's nodes: pull from a registry, build from a local context, list
//! (cluster-wide), remove, and store a registry login; plus building an app's
//! `image = { dockerfile, context }` functions at deploy ([`Client::build_app_images`]).
//!
//! A build context travels as one tar made here ([`context_tar`]): entries in name order,
//! owner root, one fixed modification time (`tar::HeaderMode::Deterministic`), so the same files always make the same bytes. Its
//! SHA-256 (with the Dockerfile's name) is the content hash an app's built image is tagged
//! with, so an unchanged redeploy finds the image and builds nothing.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use flotilla_proto::images::{
    build_input, image_progress, images_client::ImagesClient, BuildInput, BuildStart, ImageProgress, ListImagesRequest,
    LoginRequest, PullRequest, RemoveImageRequest,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::spec::AppSpec;

/// Largest build context sent, bytes (the nodes refuse more).
pub const MAX_CONTEXT_BYTES: usize = 1 << 30;
/// Chunk size of the context stream.
const CHUNK: usize = 1 << 20;
/// Where a Dockerfile from outside the context is put in the context tar.
const OUTSIDE_DOCKERFILE: &str = ".flotilla.Dockerfile";
/// Repository of images built for apps; the tag is the content hash.
pub const BUILD_REPOSITORY: &str = "flotilla-build";

/// One image as the cluster has it: which nodes' engines hold it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageInfo {
    /// `repo:tag`
    pub name: String,
    /// The engine's image id (`sha256:…`).
    pub id: String,
    pub size_bytes: u64,
    /// Nodes that have it, ascending.
    pub nodes: Vec<u64>,
}

/// How a pull or build ended on one node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeOutcome {
    pub node: u64,
    /// The engine's image id when it succeeded.
    pub id: Option<String>,
    /// Why it failed, in the engine's words.
    pub error: Option<String>,
}

/// What `remove_image` did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Removed {
    pub name: String,
    /// Nodes that had it and removed it.
    pub removed: Vec<u64>,
    /// Nodes that did not have it.
    pub absent: Vec<u64>,
}

/// An image built (or found already built) for one function at deploy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BuiltImage {
    pub function: String,
    /// `flotilla-build/APP:HASH`
    pub image: String,
    /// False when the image already existed (nothing was built).
    pub built: bool,
}

/// A build context packed for sending: the tar and the Dockerfile's path inside it.
#[derive(Debug, Clone)]
pub struct Context {
    pub tar: Vec<u8>,
    pub dockerfile: String,
}

impl Context {
    /// Hex SHA-256 of the tar and the Dockerfile's name: equal contexts, equal hashes.
    pub fn content_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.dockerfile.as_bytes());
        h.update([0]);
        h.update(&self.tar);
        hex::encode(h.finalize())
    }
}

/// Packs the folder `dir` as a build context with the Dockerfile at `dockerfile` (a path on
/// this machine; inside `dir` it is used where it is, outside it is added to the tar).
/// Fails with [`Error::InvalidArgument`] naming `context` or `dockerfile`.
pub fn context_tar(dir: &Path, dockerfile: &Path) -> Result<Context> {
    let bad = |field: &str, why: String| Error::InvalidArgument(format!("{field}: {why}"));
    if !dir.is_dir() {
        return Err(bad("context", format!("{} is not a folder", dir.display())));
    }
    if !dockerfile.is_file() {
        return Err(bad("dockerfile", format!("{} is not a file", dockerfile.display())));
    }
    let canon = |p: &Path| p.canonicalize().map_err(|e| bad("context", format!("{}: {e}", p.display())));
    let (root, df) = (canon(dir)?, canon(dockerfile)?);
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    // Owner root, a fixed modification time: the bytes depend on names, modes and contents.
    tar.mode(tar::HeaderMode::Deterministic);
    let mut files = Vec::new();
    walk(&root, &root, &mut files).map_err(|e| bad("context", e.to_string()))?;
    for rel in &files {
        tar.append_path_with_name(root.join(rel), rel)
            .map_err(|e| bad("context", format!("{}: {e}", rel.display())))?;
        if tar.get_ref().len() > MAX_CONTEXT_BYTES {
            return Err(bad("context", format!("{} is larger than {} MiB", dir.display(), MAX_CONTEXT_BYTES >> 20)));
        }
    }
    let name = match df.strip_prefix(&root) {
        Ok(rel) => rel.to_string_lossy().into_owned(),
        Err(_) => {
            let data = std::fs::read(&df).map_err(|e| bad("dockerfile", format!("{}: {e}", df.display())))?;
            let mut header = tar::Header::new_gnu();
            header.set_mode(0o644);
            header.set_size(data.len() as u64);
            tar.append_data(&mut header, OUTSIDE_DOCKERFILE, data.as_slice())
                .map_err(|e| bad("dockerfile", e.to_string()))?;
            OUTSIDE_DOCKERFILE.to_string()
        }
    };
    let tar = tar.into_inner().map_err(|e| bad("context", e.to_string()))?;
    Ok(Context { tar, dockerfile: name })
}

/// Every entry below `dir`, relative to `root`, folders before their contents, in name order.
fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        out.push(path.strip_prefix(root).map_err(std::io::Error::other)?.to_path_buf());
        if e.file_type()?.is_dir() {
            walk(root, &path, out)?;
        }
    }
    Ok(())
}

fn outcome(msg: &ImageProgress) -> Option<NodeOutcome> {
    match &msg.event {
        Some(image_progress::Event::Done(d)) => {
            Some(NodeOutcome { node: msg.node, id: Some(d.id.clone()), error: None })
        }
        Some(image_progress::Event::Error(e)) => Some(NodeOutcome { node: msg.node, id: None, error: Some(e.clone()) }),
        _ => None,
    }
}

impl Client {
    fn images_client(channel: crate::client::Authed) -> ImagesClient<crate::client::Authed> {
        ImagesClient::new(channel).max_decoding_message_size(64 << 20)
    }

    /// Pulls `reference` from its registry on every node, or on `node` only. `progress` gets
    /// each node's progress lines. Returns one outcome per node; a failure on a node is in
    /// its outcome, not an `Err`.
    pub async fn pull_image(
        &self,
        reference: &str,
        node: Option<u64>,
        progress: impl FnMut(u64, &str),
    ) -> Result<Vec<NodeOutcome>> {
        let req = PullRequest { reference: reference.to_string(), node };
        let progress = Mutex::new(progress);
        self.on_endpoints(|channel| {
            let (req, progress) = (req.clone(), &progress);
            async move {
                let mut stream = Self::images_client(channel).pull(req).await?.into_inner();
                let mut outcomes = Vec::new();
                while let Some(msg) = stream.message().await? {
                    if let Some(image_progress::Event::Line(line)) = &msg.event {
                        (progress.lock().expect("progress lock"))(msg.node, line);
                    }
                    outcomes.extend(outcome(&msg));
                }
                Ok(outcomes)
            }
        })
        .await
    }

    /// Builds `context` as image `tag` on the node this client reaches (or on `node`),
    /// `progress` getting the build output line by line. Returns the image id; a failed
    /// build is [`Error::FailedPrecondition`] with the engine's message.
    pub async fn build_image(
        &self,
        tag: &str,
        context: &Context,
        node: Option<u64>,
        progress: impl FnMut(&str),
    ) -> Result<String> {
        let start = BuildStart { tag: tag.to_string(), dockerfile: context.dockerfile.clone(), node };
        let progress = Mutex::new(progress);
        let done = self
            .on_endpoints(|channel| {
                let (start, progress) = (start.clone(), &progress);
                async move {
                    let first = BuildInput { input: Some(build_input::Input::Start(start)) };
                    let chunks: Vec<BuildInput> = context
                        .tar
                        .chunks(CHUNK)
                        .map(|c| BuildInput { input: Some(build_input::Input::Context(c.to_vec())) })
                        .collect();
                    let input = futures::stream::iter(std::iter::once(first).chain(chunks));
                    let mut stream = Self::images_client(channel).build(input).await?.into_inner();
                    while let Some(msg) = stream.message().await? {
                        if let Some(image_progress::Event::Line(line)) = &msg.event {
                            (progress.lock().expect("progress lock"))(line);
                        }
                        if let Some(o) = outcome(&msg) {
                            return Ok(o);
                        }
                    }
                    Err(Error::Unavailable("the build stream ended without a result".into()))
                }
            })
            .await?;
        match done {
            NodeOutcome { id: Some(id), .. } => Ok(id),
            NodeOutcome { node, error, .. } => Err(Error::FailedPrecondition(format!(
                "building {tag} on node {node} failed: {}",
                error.unwrap_or_default()
            ))),
        }
    }

    /// Every tagged image on the cluster's nodes (or on `node`), with the nodes that have it.
    pub async fn list_images(&self, node: Option<u64>) -> Result<Vec<ImageInfo>> {
        let reply = self
            .on_endpoints(|channel| async move {
                Ok(Self::images_client(channel).list(ListImagesRequest { node }).await?.into_inner())
            })
            .await?;
        if !reply.unreachable.is_empty() {
            tracing::warn!(nodes = ?reply.unreachable, "image list: some nodes did not answer");
        }
        Ok(reply
            .images
            .into_iter()
            .map(|i| ImageInfo { name: i.name, id: i.id, size_bytes: i.size_bytes, nodes: i.nodes })
            .collect())
    }

    /// Removes image `name` on every node. [`Error::NotFound`] when no node had it;
    /// [`Error::Unavailable`] naming them when some nodes did not answer (it is removed on the
    /// others).
    pub async fn remove_image(&self, name: &str) -> Result<Removed> {
        let req = RemoveImageRequest { name: name.to_string(), node: None };
        let reply = self
            .on_endpoints(|channel| {
                let req = req.clone();
                async move { Ok(Self::images_client(channel).remove(req).await?.into_inner()) }
            })
            .await?;
        if !reply.unreachable.is_empty() {
            return Err(Error::Unavailable(format!(
                "image {name}: removed on node(s) {:?}; node(s) {:?} did not answer and may still have it \
                 (run it again when they are back)",
                reply.removed, reply.unreachable
            )));
        }
        Ok(Removed { name: name.to_string(), removed: reply.removed, absent: reply.absent })
    }

    /// Stores the login the nodes use to pull from `registry` (`host[:port]`). The password
    /// is never returned by any call.
    pub async fn registry_login(&self, registry: &str, username: &str, password: &str) -> Result<()> {
        let req = LoginRequest { registry: registry.into(), username: username.into(), password: password.into() };
        self.on_endpoints(|channel| {
            let req = req.clone();
            async move { Ok(Self::images_client(channel).login(req).await.map(|_| ())?) }
        })
        .await
    }

    /// Builds the image of every function of `spec` declared as `image = { dockerfile,
    /// context }`, unless an image with the same content hash already exists on a node, and
    /// points the function at it (`flotilla-build/APP:HASH`). [`Client::deploy`] calls it;
    /// call it first to see the build output.
    pub async fn build_app_images(
        &self,
        spec: &mut AppSpec,
        mut progress: impl FnMut(&str),
    ) -> Result<Vec<BuiltImage>> {
        let mut done = Vec::new();
        let mut existing: Option<Vec<ImageInfo>> = None;
        for (name, function) in spec.functions.iter_mut() {
            let Some(build) = function.build.take() else { continue };
            let context = context_tar(Path::new(&build.context), &Path::new(&build.context).join(&build.dockerfile))
                .map_err(|e| match e {
                    Error::InvalidArgument(m) => Error::InvalidArgument(format!("functions.{name}.image.{m}")),
                    other => other,
                })?;
            let hash = context.content_hash();
            let tag = format!("{BUILD_REPOSITORY}/{}:{}", spec.name, &hash[..24]);
            if existing.is_none() {
                existing = Some(self.list_images(None).await?);
            }
            let have =
                existing.iter().flatten().any(|i| i.name == tag) || done.iter().any(|b: &BuiltImage| b.image == tag);
            if !have {
                self.build_image(&tag, &context, None, &mut progress).await?;
            }
            function.image = tag.clone();
            done.push(BuiltImage { function: name.clone(), image: tag, built: !have });
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_files_make_the_same_context_and_a_change_changes_the_hash() {
        let dir = std::env::temp_dir().join(format!("flotilla-ctx-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("sub")).expect("dir");
        std::fs::write(dir.join("Dockerfile"), "FROM flotilla/busybox\nCOPY sub /sub\n").expect("write");
        std::fs::write(dir.join("sub/a.txt"), "one").expect("write");
        let first = context_tar(&dir, &dir.join("Dockerfile")).expect("tar");
        std::thread::sleep(std::time::Duration::from_millis(1100));
        std::fs::write(dir.join("sub/a.txt"), "one").expect("rewrite, new mtime");
        let again = context_tar(&dir, &dir.join("Dockerfile")).expect("tar");
        assert_eq!(first.content_hash(), again.content_hash());
        assert_eq!(again.dockerfile, "Dockerfile");
        std::fs::write(dir.join("sub/a.txt"), "two").expect("change");
        let changed = context_tar(&dir, &dir.join("Dockerfile")).expect("tar");
        assert_ne!(first.content_hash(), changed.content_hash());
        let names: Vec<String> = tar::Archive::new(changed.tar.as_slice())
            .entries()
            .expect("entries")
            .map(|e| e.expect("entry").path().expect("path").display().to_string())
            .collect();
        assert_eq!(names, ["Dockerfile", "sub", "sub/a.txt"]);
        let missing = context_tar(&dir.join("nope"), &dir.join("Dockerfile")).expect_err("no folder");
        assert!(missing.to_string().contains("context"), "{missing}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
