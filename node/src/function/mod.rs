//! Functions on this node: warm replicas, synchronous calls, durable calls, and (on the
//! leader) the autoscaler.
//!
//! ```text
//!            leader: autoscaler ──AddReplica/RemoveReplica──▶ catalog (Raft)
//!                      ▲ load (Ping replies)                    │ applied
//!                      │                                        ▼
//! client ─CallFunction─▶ any node ─router─▶ node with a ready replica ─▶ ReplicaActor
//! client ─SpawnCall────▶ catalog: queued ─executor (StartCall claim)──▶ ReplicaActor ─FinishCall▶ catalog
//! ```
//!
//! * [`replica`]: one ractor [`replica::ReplicaActor`] per replica record assigned here. It
//!   creates the container (a keepalive PID 1, like a sandbox), starts the worker process in
//!   worker mode, reports `ReplicaReady`, and on removal drains: no new inputs, in-flight
//!   ones finish, then the container goes. Inputs run through [`replica::ReplicaCore`],
//!   shared with the router, not through the actor's mailbox, so the hot path has no extra
//!   hop: a semaphore of `concurrency` permits, then [`exec_mode`] or [`worker_mode`].
//! * [`reconciler`]: makes this node's replica actors match the catalog.
//! * [`router`]: a synchronous call runs on a local ready replica when there is one,
//!   otherwise on a peer's (Worker `Invoke`); with none anywhere it waits, counted as
//!   waiting load, until the autoscaler has started one.
//! * [`executor`]: claims queued durable calls for functions with a ready replica here, runs
//!   them, and records the outcome (or the next retry's time).
//! * [`autoscaler`]: on the leader only; desired replicas per function from load, within
//!   `min/max/buffer_containers` and `scaledown_window_s`; replaces old versions after a
//!   redeploy; removes replicas of dead nodes and requeues their running calls.
//! * [`load`]: inputs running and waiting per function on this node, reported to every
//!   peer in Ping replies so the leader sees the whole cluster's load.

pub mod autoscaler;
pub mod exec_mode;
pub mod executor;
pub mod load;
pub mod output;
pub mod reconciler;
pub mod replica;
pub mod router;
pub mod worker_mode;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use flotilla::spec::{AppSpec, FunctionSpec};
use flotilla_raft::Catalog;

use crate::cluster::Cluster;
use crate::runtime::Docker;

/// Container label holding the replica id.
pub const LABEL_REPLICA: &str = "flotilla.replica";

/// The name of a replica's container.
pub fn container_name(replica: &str) -> String {
    format!("flotilla-{replica}")
}

/// An app name and one of its versions.
type AppVersion = (String, u64);

/// A function's identity: app and function name.
pub type FnKey = (String, String);

/// Everything the function machinery of this node shares. Cheap to clone.
#[derive(Clone)]
pub struct FunctionHost {
    pub docker: Docker,
    pub cluster: Cluster,
    /// This node's instance id (the `flotilla.instance` label of its containers).
    pub instance: String,
    /// Replicas with an actor on this node, by replica id.
    pub replicas: Arc<Mutex<HashMap<String, Arc<replica::ReplicaCore>>>>,
    /// The node's load counters (the same as `cluster.load`).
    pub load: load::Load,
    /// What function processes wrote to stderr here, for `flotilla logs fn`.
    pub output: output::OutputLog,
    /// The node's blob store, where functions' `code` comes from.
    pub blobs: crate::blobs::BlobStore,
    /// Copies of an uploaded blob made before the upload is acknowledged.
    pub blob_copies: usize,
    specs: Arc<Mutex<HashMap<AppVersion, Arc<AppSpec>>>>,
}

impl FunctionHost {
    pub fn new(
        docker: Docker,
        cluster: Cluster,
        instance: String,
        blobs: crate::blobs::BlobStore,
        blob_copies: usize,
    ) -> Self {
        Self {
            docker,
            load: cluster.load.clone(),
            cluster,
            instance,
            replicas: Default::default(),
            output: Default::default(),
            blobs,
            blob_copies,
            specs: Default::default(),
        }
    }

    /// The spec of `function` in `app` at `version`, parsed once per app version. `None` if
    /// the catalog no longer has that version (a newer deploy replaced it) or no such function.
    pub fn spec(&self, catalog: &Catalog, app: &str, function: &str, version: u64) -> Option<Arc<FunctionSpec>> {
        let a = catalog.apps.get(app).filter(|a| a.version == version)?;
        let mut cache = self.specs.lock().expect("spec cache lock");
        let spec = match cache.get(&(app.to_string(), version)) {
            Some(s) => s.clone(),
            None => {
                let parsed: AppSpec = serde_json::from_str(&a.spec_json).ok()?;
                let parsed = Arc::new(parsed);
                cache.retain(|(name, _), _| name != app);
                cache.insert((app.to_string(), version), parsed.clone());
                parsed
            }
        };
        spec.functions.get(function).cloned().map(Arc::new)
    }

    /// Ready, non-draining replicas of `app`/`function` on this node, fewest inputs running first.
    pub fn local_ready(&self, app: &str, function: &str) -> Vec<Arc<replica::ReplicaCore>> {
        let mut ready: Vec<_> = self
            .replicas
            .lock()
            .expect("replicas lock")
            .values()
            .filter(|r| r.app == app && r.function == function && r.accepting())
            .cloned()
            .collect();
        ready.sort_by_key(|r| (std::cmp::Reverse(r.version), r.running()));
        ready
    }
}
