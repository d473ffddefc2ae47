//! Which images each node's engine has, as the nodes tell each other in their liveness pings
//! (`PingReply.images`), so placement can prefer a node that can start a workload without
//! fetching its image first (see `placement::place_preferring`). This node's own entry is
//! refreshed from its engine every [`REFRESH_EVERY`]; a peer's is as old as its last answer.
//! Best effort: a node missing here is only not preferred.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_raft::NodeId;
use tokio::sync::watch;

use crate::runtime::Docker;

/// How often a node lists its own engine's images.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// Image names by node. Cheap to clone; clones share the map.
#[derive(Clone, Default)]
pub struct ImageInventory(Arc<Mutex<HashMap<NodeId, BTreeSet<String>>>>);

impl ImageInventory {
    /// Node `node`'s engine has `images` (replacing what was known).
    pub fn record(&self, node: NodeId, images: impl IntoIterator<Item = String>) {
        self.0.lock().expect("inventory lock").insert(node, images.into_iter().collect());
    }

    /// Whether node `node` was last known to have `image` (a name without a tag is `:latest`,
    /// as the engine lists it).
    pub fn has(&self, node: NodeId, image: &str) -> bool {
        let tagged = image.rsplit('/').next().is_some_and(|last| last.contains(':') || last.contains('@'));
        let latest = (!tagged).then(|| format!("{image}:latest"));
        let known = self.0.lock().expect("inventory lock");
        known.get(&node).is_some_and(|i| i.contains(image) || latest.as_ref().is_some_and(|l| i.contains(l)))
    }

    /// What node `node` was last known to have, sorted.
    pub fn of(&self, node: NodeId) -> Vec<String> {
        self.0.lock().expect("inventory lock").get(&node).map(|i| i.iter().cloned().collect()).unwrap_or_default()
    }
}

/// Lists this node's engine's images into `inventory` every [`REFRESH_EVERY`] until shutdown.
pub async fn refresh(inventory: ImageInventory, me: NodeId, docker: Docker, mut shutdown: watch::Receiver<bool>) {
    loop {
        match docker.list_images().await {
            Ok(images) => inventory.record(me, images.into_iter().map(|i| i.name)),
            Err(e) => tracing::debug!(error = %e, "image inventory: the engine did not answer"),
        }
        tokio::select! {
            _ = tokio::time::sleep(REFRESH_EVERY) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_without_a_tag_is_latest_and_peers_are_kept_apart() {
        let inventory = ImageInventory::default();
        inventory.record(1, ["flotilla/busybox:latest".to_string(), "host:5000/team/app:1".to_string()]);
        assert!(inventory.has(1, "flotilla/busybox") && inventory.has(1, "flotilla/busybox:latest"));
        assert!(inventory.has(1, "host:5000/team/app:1"));
        assert!(!inventory.has(1, "host:5000/team/app"), "a registry port is not a tag");
        assert!(!inventory.has(2, "flotilla/busybox"), "nothing known of node 2");
        inventory.record(1, Vec::new());
        assert!(!inventory.has(1, "flotilla/busybox"), "a new list replaces the old");
    }
}
