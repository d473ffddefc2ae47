//! Makes this node's replica actors match the catalog: an actor for every replica record
//! assigned here (not failed), none for the others.
//!
//! Like the sandbox reconciler it waits until the node has caught up with the leader before
//! its first pass, and then runs a pass whenever the applied log moves. At start it removes
//! every replica container this node instance left behind (see `replica` for why they are
//! not adopted), and at shutdown it retires every replica (drain, then remove).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_raft::{Replica, ReplicaState};
use ractor::ActorRef;
use tokio::sync::watch;
use tracing::Instrument;

use super::replica::{self, ReplicaMsg};
use super::{FunctionHost, LABEL_REPLICA};

/// A pass also runs this often with no catalog change.
const RESYNC_EVERY: Duration = Duration::from_secs(2);
/// How long shutdown waits for replicas to finish their inputs and go.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(10);

#[derive(Default, Clone)]
struct Actors {
    running: Arc<Mutex<HashMap<String, ActorRef<ReplicaMsg>>>>,
    starting: Arc<Mutex<HashSet<String>>>,
}

/// Runs until `shutdown` turns true.
pub async fn run(host: FunctionHost, mut shutdown: watch::Receiver<bool>) {
    while let Err(e) = host.cluster.linearizable().await {
        tracing::debug!(error = %e, "function reconciler waiting to catch up with the leader");
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = shutdown.changed() => return,
        }
    }
    remove_leftovers(&host).await;
    let actors = Actors::default();
    let mut metrics = host.cluster.raft.metrics();
    loop {
        pass(&host, &actors);
        tokio::select! {
            _ = metrics.changed() => {}
            _ = tokio::time::sleep(RESYNC_EVERY) => {}
            _ = shutdown.changed() => break,
        }
    }
    retire_all(&actors).await;
}

/// On shutdown: every replica drains and removes its container. Unlike sandboxes, replicas
/// are not adopted by the next start, so leaving them would only leak containers.
async fn retire_all(actors: &Actors) {
    let running: Vec<ActorRef<ReplicaMsg>> = actors.running.lock().expect("actors lock").values().cloned().collect();
    for a in &running {
        let _ = a.cast(ReplicaMsg::Retire);
    }
    let deadline = tokio::time::Instant::now() + SHUTDOWN_DRAIN;
    while running.iter().any(|a| a.get_status() != ractor::ActorStatus::Stopped)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn mine(host: &FunctionHost) -> Vec<Replica> {
    let me = host.cluster.id;
    host.cluster
        .view
        .read(|c| c.replicas.values().filter(|r| r.node == me && r.state != ReplicaState::Failed).cloned().collect())
}

fn pass(host: &FunctionHost, actors: &Actors) {
    let live = mine(host);
    let live_ids: HashSet<&str> = live.iter().map(|r| r.id.as_str()).collect();
    {
        let mut running = actors.running.lock().expect("actors lock");
        running.retain(|id, actor| {
            let stopped = actor.get_status() == ractor::ActorStatus::Stopped;
            if !stopped && !live_ids.contains(id.as_str()) {
                let _ = actor.cast(ReplicaMsg::Retire);
                return false;
            }
            !stopped
        });
    }
    for record in live {
        let known = actors.running.lock().expect("actors lock").contains_key(&record.id);
        if known || !actors.starting.lock().expect("actors lock").insert(record.id.clone()) {
            continue;
        }
        let spec = host.cluster.view.read(|c| host.spec(c, &record.app, &record.function, record.version));
        let Some(spec) = spec else {
            // Its version was replaced; the autoscaler will remove the record.
            actors.starting.lock().expect("actors lock").remove(&record.id);
            continue;
        };
        let (host, actors) = (host.clone(), actors.clone());
        tokio::spawn(
            async move {
                let id = record.id.clone();
                if let Some(actor) = replica::spawn(&host, record, spec).await {
                    if actor.get_status() != ractor::ActorStatus::Stopped {
                        actors.running.lock().expect("actors lock").insert(id.clone(), actor);
                    }
                }
                actors.starting.lock().expect("actors lock").remove(&id);
            }
            .in_current_span(),
        );
    }
}

/// Removes replica containers of this node instance left by an earlier run.
async fn remove_leftovers(host: &FunctionHost) {
    let containers =
        match host.docker.list_named(&format!("{}={}", crate::sandbox::LABEL_INSTANCE, host.instance)).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot list replica containers");
                return;
            }
        };
    for c in containers.into_iter().filter(|c| c.labels.contains_key(LABEL_REPLICA)) {
        tracing::info!(container = %c.name, "removing a replica container from an earlier run");
        if let Err(e) = host.docker.remove(&c.id).await {
            tracing::warn!(container = %c.id, error = %e, "could not remove replica container");
        }
    }
}
