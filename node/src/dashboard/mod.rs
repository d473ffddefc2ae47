//! The dashboard: `GET /` on `--http` serves one HTML page and its script, both compiled into
//! the binary (`include_str!`; no CDN, nothing to build with Node), and the page polls
//! `GET /api/dashboard` every two seconds for [`view`], this node's picture of the cluster as
//! JSON. The page and script hold no data, so they are served to anyone; the JSON needs a
//! token when the node requires tokens, like `/metrics` (see `http`). The page asks for the
//! token when the JSON answers 401 and keeps it in the browser's `sessionStorage` only (a
//! link may also carry it as `#token=…`, which the page moves into `sessionStorage` and
//! removes from the address bar).
//!
//! The view is read from this node's applied catalog, its Raft metrics, its liveness probes and
//! the function load reports it has, under one catalog read. Lists are newest first and capped
//! at [`LIMIT`] records each (the newest [`EVENTS`] events), so a large catalog does not make a
//! large page.

use std::collections::HashMap;

use flotilla_raft::{Catalog, NodeId};
use serde_json::{json, Value};

use crate::cluster::{Cluster, GroupView};
use crate::function::load::Counts;
use crate::function::FnKey;
use crate::placement;

/// The page.
pub const INDEX_HTML: &str = include_str!("index.html");
/// Its script.
pub const APP_JS: &str = include_str!("app.js");

/// Most records of each kind (sandboxes, runs, snapshots) in one view.
const LIMIT: usize = 100;
/// Recent runs shown per schedule.
const RUNS_PER_SCHEDULE: usize = 5;
/// Newest cluster events shown.
const EVENTS: usize = 50;

/// This node's view of the cluster for the dashboard.
pub fn view(cluster: &Cluster) -> Value {
    let g = cluster.group();
    let up = |id| cluster.liveness.is_up(id);
    let load = cluster.load.cluster(cluster.id, up);
    cluster.view.read(|c| build(c, &g, up, &load, cluster.id))
}

fn build(c: &Catalog, g: &GroupView, up: impl Fn(NodeId) -> bool, load: &HashMap<FnKey, Counts>, me: NodeId) -> Value {
    let room: HashMap<NodeId, placement::Candidate> =
        placement::candidates(c, |_| true).into_iter().map(|n| (n.id, n)).collect();
    let nodes: Vec<Value> = g
        .addrs
        .iter()
        .map(|(&id, addr)| {
            let role = if g.leader == Some(id) {
                "leader"
            } else if g.voters.contains(&id) {
                "follower"
            } else {
                "learner"
            };
            let gpus: Vec<Value> = c.nodes.get(&id).map_or(vec![], |n| {
                n.gpus
                    .iter()
                    .map(|gpu| json!({"index": gpu.index, "model": gpu.model, "leased_to": c.gpu_leases.get(&(id, gpu.index))}))
                    .collect()
            });
            let r = room.get(&id);
            json!({
                "id": id,
                "addr": addr,
                "role": role,
                "status": if up(id) { "up" } else { "down" },
                "cpu": {"capacity": r.map_or(0.0, |r| r.cpus), "used": r.map_or(0.0, |r| r.used_cpu)},
                "memory_mib": {"capacity": r.map_or(0, |r| r.memory_mib), "used": r.map_or(0, |r| r.used_memory_mib)},
                "gpus": gpus,
            })
        })
        .collect();

    let mut queued: HashMap<(&str, &str), usize> = HashMap::new();
    for call in c.calls.values().filter(|call| call.state == flotilla_raft::CallState::Queued) {
        *queued.entry((call.app.as_str(), call.function.as_str())).or_default() += 1;
    }
    let apps: Vec<Value> = c
        .apps
        .values()
        .map(|app| {
            let functions: Vec<Value> = app
                .functions
                .iter()
                .map(|f| {
                    let mut replicas: HashMap<&str, usize> = HashMap::new();
                    for r in c.replicas.values().filter(|r| r.app == app.name && r.function == *f) {
                        *replicas.entry(r.state.as_str()).or_default() += 1;
                    }
                    let l = load.get(&(app.name.clone(), f.clone())).copied().unwrap_or_default();
                    json!({
                        "name": f,
                        "replicas": replicas,
                        "running": l.running,
                        "waiting": l.waiting,
                        "queued": queued.get(&(app.name.as_str(), f.as_str())).copied().unwrap_or(0),
                        "pending": app.pending.get(f).map(|p| p.reason.clone()),
                    })
                })
                .collect();
            json!({"name": app.name, "version": app.version, "state": app.state.as_str(), "functions": functions})
        })
        .collect();

    let mut sandboxes: Vec<_> = c.sandboxes.values().collect();
    sandboxes.sort_by_key(|s| (s.state.is_final(), std::cmp::Reverse(s.created_at_ms)));
    let sandboxes: Vec<Value> = sandboxes
        .into_iter()
        .take(LIMIT)
        .map(|s| {
            json!({
                "id": s.id, "name": s.name, "state": s.state.as_str(), "node": s.node, "image": s.spec.image,
                "generation": s.generation, "last_snapshot": s.last_snapshot, "exit_code": s.exit_code,
            })
        })
        .collect();

    let schedules: Vec<Value> = c
        .schedules
        .iter()
        .map(|s| {
            let mut runs: Vec<_> = c
                .calls
                .values()
                .filter(|call| call.app == s.app && call.function == s.function && call.scheduled_at_ms.is_some())
                .collect();
            runs.sort_by_key(|call| std::cmp::Reverse(call.scheduled_at_ms));
            let runs: Vec<Value> = runs
                .into_iter()
                .take(RUNS_PER_SCHEDULE)
                .map(|call| json!({"id": call.id, "state": call.state.as_str(), "scheduled_at_ms": call.scheduled_at_ms}))
                .collect();
            json!({
                "app": s.app, "function": s.function, "paused": s.paused,
                "next_fire_at_ms": s.next_fire_at_ms, "last_fired_at_ms": s.last_fired_at_ms, "runs": runs,
            })
        })
        .collect();

    let mut snapshots: Vec<_> = c.snapshots.values().collect();
    snapshots.sort_by_key(|s| std::cmp::Reverse(s.created_at_ms));
    let snapshots: Vec<Value> = snapshots
        .into_iter()
        .take(LIMIT)
        .map(|s| {
            json!({
                "id": s.id, "kind": s.kind.as_str(), "sandbox": s.sandbox, "state": s.state.as_str(),
                "size_bytes": s.size_bytes, "replicas": s.replicas,
            })
        })
        .collect();

    let events: Vec<Value> = c
        .events
        .ring
        .iter()
        .rev()
        .take(EVENTS)
        .map(|e| {
            json!({
                "seq": e.seq, "at_ms": e.at_ms, "kind": e.kind.as_str(), "subject": e.subject,
                "message": e.message, "node": e.node, "repeats": e.repeats,
            })
        })
        .collect();

    json!({
        "answered_by": me,
        "leader": g.leader,
        "term": g.term,
        "nodes": nodes,
        "apps": apps,
        "sandboxes": sandboxes,
        "schedules": schedules,
        "snapshots": snapshots,
        "events": events,
    })
}

#[cfg(test)]
mod tests {
    use flotilla_raft::Command;

    use super::*;

    #[test]
    fn nodes_show_role_liveness_and_room() {
        let mut c = Catalog::default();
        for id in [1, 2] {
            c.apply(Command::RegisterNode {
                id,
                addr: format!("n{id}:7100"),
                cpus: 2,
                memory_mib: 1024,
                gpus: vec![],
                at_ms: 0,
            });
        }
        let g = GroupView {
            leader: Some(2),
            term: 3,
            voters: vec![1, 2],
            learners: vec![3],
            addrs: [(1, "n1:7100".into()), (2, "n2:7100".into()), (3, "n3:7100".into())].into(),
            last_log_index: 0,
            last_applied: 0,
            snapshot_index: 0,
            purged_index: 0,
        };
        for subject in ["node 1", "node 2"] {
            c.apply(Command::RecordEvent {
                kind: flotilla_raft::EventKind::Fence,
                subject: subject.into(),
                message: "fenced".into(),
                node: None,
                at_ms: 0,
            });
        }
        let v = build(&c, &g, |id| id != 1, &HashMap::new(), 2);
        let nodes = v["nodes"].as_array().unwrap();
        let summary: Vec<_> =
            nodes.iter().map(|n| (n["id"].as_u64().unwrap(), n["role"].clone(), n["status"].clone())).collect();
        assert_eq!(
            summary,
            [
                (1, json!("follower"), json!("down")),
                (2, json!("leader"), json!("up")),
                (3, json!("learner"), json!("up"))
            ]
        );
        // Offered CPU counts placement's overcommit; an unregistered member offers nothing.
        assert_eq!(nodes[0]["cpu"]["capacity"], json!(2.0 * placement::CPU_OVERCOMMIT));
        assert_eq!(nodes[2]["memory_mib"]["capacity"], json!(0));
        assert_eq!((v["leader"].clone(), v["answered_by"].clone()), (json!(2), json!(2)));
        assert_eq!(v["sandboxes"], json!([]));
        // Events, newest first.
        let events: Vec<_> = v["events"].as_array().unwrap().iter().map(|e| e["subject"].clone()).collect();
        assert_eq!(events, [json!("node 2"), json!("node 1")]);
    }
}
