//! The node's Prometheus metrics, served as text at `GET /metrics` on `--http` (see
//! docs/reference/metrics.md for every series).
//!
//! One [`Metrics`] per node holds the registry and typed handles; it rides on
//! [`Cluster`](crate::cluster::Cluster), so the places where things happen record them
//! without globals. Two kinds of series:
//!
//! - **Read at scrape time** from this node's Raft metrics and applied catalog: the Raft
//!   indexes and term, the catalog's size, what this node offers and what is reserved on it,
//!   and the cluster-wide gauges (sandboxes, replicas and calls by state). [`Metrics::render`]
//!   refreshes them, then encodes, under one lock, so two scrapes never interleave.
//! - **Recorded where the event happens**: call and exec durations on the node that ran
//!   them, schedule fires and their lateness on the leader that committed them, snapshot
//!   bytes on the node that took them. Counters and histograms are per node and only grow, so
//!   `sum(rate(...))` over nodes is the cluster's figure.
//!
//! **Cluster-wide gauges come from the leader only.** Every node holds the same catalog, so
//! if each reported `flotilla_sandboxes{state="running"}`, a PromQL `sum` would count every
//! sandbox once per node. Only the node that leads at scrape time fills those families;
//! followers expose them with no samples. `sum(flotilla_sandboxes{state="running"})` over all
//! targets is therefore the cluster's count; between a leader's loss and the next election
//! the series are briefly absent. Per-node gauges (`flotilla_node_*`, `flotilla_raft_*`,
//! `flotilla_catalog_bytes`) are reported by every node about itself.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_raft::{codec, CallState, Catalog, NodeId, SandboxState};
use openraft::ServerState;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::cluster::Cluster;
use crate::placement;

/// Bucket bounds of function call durations, seconds: from a warm exec-mode input (a few ms)
/// up to the longest timeouts people set (an hour).
const CALL_BUCKETS: &[f64] =
    &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0];
/// Bucket bounds of sandbox exec durations, seconds (an exec of `true` takes ~60 ms here).
const EXEC_BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0];
/// Bucket bounds of schedule fire lateness, seconds: commit lateness is tens of ms on a
/// healthy leader; catch-up after an outage is minutes to hours.
const LATENESS_BUCKETS: &[f64] =
    &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0, 86400.0];

/// Every sandbox state, so a state with none reads 0 instead of being absent.
const SANDBOX_STATES: [SandboxState; 6] = [
    SandboxState::Pending,
    SandboxState::Running,
    SandboxState::Snapshotting,
    SandboxState::Restoring,
    SandboxState::Terminated,
    SandboxState::Failed,
];
/// Every call state, for the same reason.
const CALL_STATES: [CallState; 6] = [
    CallState::Queued,
    CallState::Running,
    CallState::Succeeded,
    CallState::Failed,
    CallState::Skipped,
    CallState::Cancelled,
];

/// Labels: one `state`.
type StateLabel = [(&'static str, String); 1];
/// Labels: `app`, `function`, `state`.
type FunctionStateLabels = [(&'static str, String); 3];
/// Labels: one `resource` (`cpu`, `memory_bytes`, `gpu`).
type ResourceLabel = [(&'static str, &'static str); 1];
/// Labels: one snapshot `kind`.
type KindLabel = [(&'static str, &'static str); 1];
/// A gauge of a fractional value (CPU cores).
type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// The registry and its handles. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

struct Inner {
    /// Held while the scrape-time gauges are refreshed and the registry encoded.
    registry: Mutex<Registry>,
    raft_term: Gauge,
    raft_leader: Gauge,
    raft_commit_index: Gauge,
    raft_applied_index: Gauge,
    catalog_bytes: Gauge,
    sandboxes: Family<StateLabel, Gauge>,
    replicas: Family<FunctionStateLabels, Gauge>,
    calls: Family<StateLabel, Gauge>,
    node_capacity: Family<ResourceLabel, FloatGauge>,
    node_used: Family<ResourceLabel, FloatGauge>,
    call_duration: Family<FunctionStateLabels, Histogram, fn() -> Histogram>,
    schedule_fires: Counter,
    schedule_lateness: Histogram,
    exec_duration: Histogram,
    snapshot_bytes: Family<KindLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let inner = Inner {
            registry: Mutex::new(Registry::default()),
            raft_term: Gauge::default(),
            raft_leader: Gauge::default(),
            raft_commit_index: Gauge::default(),
            raft_applied_index: Gauge::default(),
            catalog_bytes: Gauge::default(),
            sandboxes: Family::default(),
            replicas: Family::default(),
            calls: Family::default(),
            node_capacity: Family::default(),
            node_used: Family::default(),
            call_duration: Family::new_with_constructor(|| Histogram::new(CALL_BUCKETS.iter().copied())),
            schedule_fires: Counter::default(),
            schedule_lateness: Histogram::new(LATENESS_BUCKETS.iter().copied()),
            exec_duration: Histogram::new(EXEC_BUCKETS.iter().copied()),
            snapshot_bytes: Family::default(),
        };
        {
            let mut r = inner.registry.lock().expect("metrics lock poisoned");
            let i = &inner;
            r.register("flotilla_raft_term", "Raft term this node is in", i.raft_term.clone());
            r.register("flotilla_raft_leader", "1 on the node that leads, 0 elsewhere", i.raft_leader.clone());
            r.register(
                "flotilla_raft_commit_index",
                "Highest log index this node knows committed (on the leader: held by a quorum of voters)",
                i.raft_commit_index.clone(),
            );
            r.register("flotilla_raft_applied_index", "Highest log index applied to this node's catalog", {
                i.raft_applied_index.clone()
            });
            r.register("flotilla_catalog_bytes", "Size of this node's applied catalog, encoded", {
                i.catalog_bytes.clone()
            });
            r.register("flotilla_sandboxes", "Sandboxes by state (reported by the leader only)", {
                i.sandboxes.clone()
            });
            r.register("flotilla_replicas", "Function replicas by app, function and state (leader only)", {
                i.replicas.clone()
            });
            r.register("flotilla_calls", "Durable calls in the catalog by state (leader only)", i.calls.clone());
            r.register(
                "flotilla_node_capacity",
                "What this node offers to workloads: cpu (cores, overcommit included), memory_bytes, gpu",
                i.node_capacity.clone(),
            );
            r.register(
                "flotilla_node_used",
                "What live sandboxes and replicas reserve on this node: cpu, memory_bytes, gpu",
                i.node_used.clone(),
            );
            r.register(
                "flotilla_call_duration_seconds",
                "Function inputs run on this node's replicas, from start to result",
                i.call_duration.clone(),
            );
            r.register("flotilla_schedule_fires", "Schedule ticks this node committed as leader", {
                i.schedule_fires.clone()
            });
            r.register(
                "flotilla_schedule_lateness_seconds",
                "From a tick's scheduled time to the leader seeing its fire committed",
                i.schedule_lateness.clone(),
            );
            r.register("flotilla_exec_duration_seconds", "Sandbox execs run on this node, start to exit", {
                i.exec_duration.clone()
            });
            r.register("flotilla_snapshot_bytes", "Bytes of snapshots this node took, by kind", {
                i.snapshot_bytes.clone()
            });
        }
        Metrics(Arc::new(inner))
    }
}

impl Metrics {
    /// One function input ran on a replica here for `took`; `ok` says whether it succeeded.
    pub fn call_finished(&self, app: &str, function: &str, ok: bool, took: Duration) {
        let state = if ok { "succeeded" } else { "failed" };
        let labels = [("app", app.to_string()), ("function", function.to_string()), ("state", state.to_string())];
        self.0.call_duration.get_or_create(&labels).observe(took.as_secs_f64());
    }

    /// Ticks this node committed as leader, with each one's lateness in ms.
    pub fn schedule_fired(&self, lateness_ms: &[i64]) {
        self.0.schedule_fires.inc_by(lateness_ms.len() as u64);
        for l in lateness_ms {
            self.0.schedule_lateness.observe((*l).max(0) as f64 / 1000.0);
        }
    }

    /// A sandbox exec ended here after `took`.
    pub fn exec_finished(&self, took: Duration) {
        self.0.exec_duration.observe(took.as_secs_f64());
    }

    /// This node took a snapshot of `kind` of `bytes`.
    pub fn snapshot_taken(&self, kind: &'static str, bytes: u64) {
        self.0.snapshot_bytes.get_or_create(&[("kind", kind)]).inc_by(bytes);
    }

    /// Refreshes the scrape-time gauges from `cluster` and encodes every series in the
    /// Prometheus text format (version 0.0.4).
    pub fn render(&self, cluster: &Cluster) -> String {
        let registry = self.0.registry.lock().expect("metrics lock poisoned");
        self.refresh(cluster);
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
        text
    }

    fn refresh(&self, cluster: &Cluster) {
        let i = &self.0;
        let m = cluster.raft.metrics().borrow().clone();
        let leading = m.state == ServerState::Leader;
        let applied = m.last_applied.map_or(0, |l| l.index);
        let committed = if leading {
            let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
            let matched = |id: NodeId| match (&m.replication, id == m.id) {
                (_, true) => m.last_log_index.unwrap_or(0),
                (Some(r), false) => r.get(&id).copied().flatten().map_or(0, |l| l.index),
                (None, false) => 0,
            };
            quorum_index(voters.into_iter().map(matched).collect()).max(applied)
        } else {
            // A follower applies entries once it learns they are committed.
            applied
        };
        i.raft_term.set(m.current_term as i64);
        i.raft_leader.set(leading as i64);
        i.raft_commit_index.set(committed as i64);
        i.raft_applied_index.set(applied as i64);
        cluster.view.read(|c| {
            i.catalog_bytes.set(codec::encoded_len(c).map_or(0, |n| n as i64));
            self.node_gauges(c, cluster.id);
            i.sandboxes.clear();
            i.replicas.clear();
            i.calls.clear();
            if leading {
                self.cluster_gauges(c);
            }
        });
    }

    /// What this node offers and what is reserved on it, as placement counts them.
    fn node_gauges(&self, c: &Catalog, me: NodeId) {
        let Some(n) = placement::candidates(c, |id| id == me).pop() else { return };
        let leased = n.gpus.len() - n.free_gpus.len();
        let mib = 1024.0 * 1024.0;
        let set = |family: &Family<ResourceLabel, FloatGauge>, resource, v: f64| {
            family.get_or_create(&[("resource", resource)]).set(v);
        };
        set(&self.0.node_capacity, "cpu", n.cpus);
        set(&self.0.node_capacity, "memory_bytes", n.memory_mib as f64 * mib);
        set(&self.0.node_capacity, "gpu", n.gpus.len() as f64);
        set(&self.0.node_used, "cpu", n.used_cpu);
        set(&self.0.node_used, "memory_bytes", n.used_memory_mib as f64 * mib);
        set(&self.0.node_used, "gpu", leased as f64);
    }

    /// Sandboxes, replicas and calls by state: the whole cluster's, from the catalog.
    fn cluster_gauges(&self, c: &Catalog) {
        let i = &self.0;
        for s in SANDBOX_STATES {
            i.sandboxes.get_or_create(&[("state", s.as_str().to_string())]).set(0);
        }
        for s in c.sandboxes.values() {
            i.sandboxes.get_or_create(&[("state", s.state.as_str().to_string())]).inc();
        }
        for r in c.replicas.values() {
            let labels =
                [("app", r.app.clone()), ("function", r.function.clone()), ("state", r.state.as_str().to_string())];
            i.replicas.get_or_create(&labels).inc();
        }
        for s in CALL_STATES {
            i.calls.get_or_create(&[("state", s.as_str().to_string())]).set(0);
        }
        for call in c.calls.values() {
            i.calls.get_or_create(&[("state", call.state.as_str().to_string())]).inc();
        }
    }
}

/// The highest index held by a majority of voters, given each voter's matched index.
fn quorum_index(mut matched: Vec<u64>) -> u64 {
    if matched.is_empty() {
        return 0;
    }
    matched.sort_unstable_by(|a, b| b.cmp(a));
    matched[matched.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commit_index_is_what_a_majority_holds() {
        assert_eq!(quorum_index(vec![]), 0);
        assert_eq!(quorum_index(vec![7]), 7);
        assert_eq!(quorum_index(vec![10, 4, 9]), 9);
        assert_eq!(quorum_index(vec![10, 4, 3]), 4);
        // Four voters need three: the third highest.
        assert_eq!(quorum_index(vec![10, 9, 2, 8]), 8);
    }

    #[test]
    fn recorded_series_render_in_prometheus_text() {
        let m = Metrics::default();
        m.schedule_fired(&[20, 1500]);
        m.call_finished("etl", "tick", true, Duration::from_millis(30));
        m.exec_finished(Duration::from_millis(70));
        m.snapshot_taken("fs", 4096);
        let mut text = String::new();
        let registry = m.0.registry.lock().unwrap();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("# TYPE flotilla_schedule_fires_total counter\nflotilla_schedule_fires_total 2\n"),
            "{text}"
        );
        assert!(text.contains("flotilla_schedule_lateness_seconds_bucket{le=\"0.025\"} 1\n"), "{text}");
        assert!(text.contains("flotilla_schedule_lateness_seconds_bucket{le=\"2.5\"} 2\n"), "{text}");
        assert!(
            text.contains("flotilla_call_duration_seconds_count{app=\"etl\",function=\"tick\",state=\"succeeded\"} 1"),
            "{text}"
        );
        assert!(text.contains("flotilla_exec_duration_seconds_count 1\n"), "{text}");
        assert!(text.contains("flotilla_snapshot_bytes_total{kind=\"fs\"} 4096\n"), "{text}");
    }
}
