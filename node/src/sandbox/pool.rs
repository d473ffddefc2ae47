//! The warm pool: containers of chosen images created and started ahead of time, so a
//! sandbox of such an image starts in milliseconds instead of the engine's create+start.
//!
//! A pooled container runs the idle keepalive with no environment and generous limits.
//! Handing it out renames it to the sandbox's container name (its identity from then on)
//! and applies the sandbox's CPU, memory and pids limits; the sandbox's environment and
//! working directory are applied to each exec instead of the container. A sandbox can use
//! the pool only when nothing else about it must be fixed at creation: no entrypoint
//! command, the default runtime, networking on, and the default `/work` size (a pooled
//! container's disk is made with it). The pool refills in the background.
//! Pool containers left from an earlier run of the node are removed at start-up with the
//! other orphans (they are not named for any sandbox).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_raft::SandboxSpec;
use tokio::sync::{watch, Notify};

use super::validate::DEFAULT_DISK_MIB;
use super::LABEL_INSTANCE;
use crate::runtime::{ContainerSpec, Docker, Limits};

/// Label on pooled containers: the image they were made for.
pub const LABEL_POOL: &str = "flotilla.pool";
/// Limits of a pooled container before handout: it only runs the keepalive.
const IDLE_LIMITS: Limits = Limits { cpu: 1.0, memory_mib: 256, pids: 64 };
/// After a failed refill (e.g. the image is missing) wait this long before trying again.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Ready containers per image, and the sizes to keep.
pub struct WarmPool {
    docker: Docker,
    instance: String,
    sizes: BTreeMap<String, usize>,
    ready: Mutex<HashMap<String, VecDeque<String>>>,
    refill: Notify,
}

impl WarmPool {
    pub fn new(docker: Docker, instance: String, sizes: BTreeMap<String, usize>) -> Arc<Self> {
        Arc::new(Self { docker, instance, sizes, ready: Default::default(), refill: Notify::new() })
    }

    /// Whether a sandbox with this spec may take a pooled container. Its `/tmp` was sized
    /// from the pool's memory when it was created and cannot change, so only a sandbox with
    /// at least that much memory takes one (its `/tmp` then fills at most half its memory).
    pub fn eligible(spec: &SandboxSpec) -> bool {
        spec.command.is_empty()
            && spec.runtime == "runc"
            && !spec.block_network
            && !spec.writable_rootfs
            && spec.memory_mib >= IDLE_LIMITS.memory_mib
            && spec.disk_mib == DEFAULT_DISK_MIB
    }

    /// A started container of `image`, if one is ready.
    pub fn take(&self, image: &str) -> Option<String> {
        let taken = self.ready.lock().expect("pool lock").get_mut(image).and_then(VecDeque::pop_front);
        if taken.is_some() {
            self.refill.notify_one();
        }
        taken
    }

    fn ready_count(&self, image: &str) -> usize {
        self.ready.lock().expect("pool lock").get(image).map_or(0, VecDeque::len)
    }

    async fn make(&self, image: &str) -> Result<String, crate::runtime::RuntimeError> {
        let spec = ContainerSpec {
            name: Some(format!("flotilla-pool-{}", &uuid::Uuid::new_v4().simple().to_string()[..16])),
            image: image.to_string(),
            cmd: None,
            env: Vec::new(),
            workdir: None,
            limits: IDLE_LIMITS,
            block_network: false,
            runtime: None,
            labels: BTreeMap::from([
                (LABEL_INSTANCE.to_string(), self.instance.clone()),
                (LABEL_POOL.to_string(), image.to_string()),
            ]),
            gpu_devices: Vec::new(),
            disk_mib: Some(DEFAULT_DISK_MIB),
            writable_rootfs: false,
        };
        let id = self.docker.create(&spec).await?;
        if let Err(e) = self.docker.start(&id).await {
            let _ = self.docker.remove(&id).await;
            return Err(e);
        }
        Ok(id)
    }

    /// Keeps every image's pool full until `shutdown`; pooled containers are removed then.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let mut failed = false;
            for (image, &size) in &self.sizes {
                while self.ready_count(image) < size && !*shutdown.borrow() {
                    match self.make(image).await {
                        Ok(id) => self.ready.lock().expect("pool lock").entry(image.clone()).or_default().push_back(id),
                        Err(e) => {
                            tracing::warn!(%image, error = %e, "warm pool cannot make a container");
                            failed = true;
                            break;
                        }
                    }
                }
            }
            let wait = if failed { RETRY_AFTER } else { Duration::from_secs(3600) };
            tokio::select! {
                _ = self.refill.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => break,
            }
        }
        let leftover: Vec<String> = self.ready.lock().expect("pool lock").drain().flat_map(|(_, q)| q).collect();
        for id in leftover {
            let _ = self.docker.remove(&id).await;
        }
    }
}
