//! Leader loss, restarts, and a full-cluster restart lose nothing that was acknowledged.

use std::time::Duration;

use crate::harness::*;

#[test]
fn leader_sigkill_elects_a_new_leader_and_the_old_one_catches_up() {
    let mut c = TestCluster::start(3, &[]);
    let dir = c.dir.path().to_path_buf();
    let old = c.wait_leader(Duration::from_secs(20));
    deploy(&dir, &c.endpoints(), "before");

    tracing_note(&format!("--- SIGKILL leader {old}"));
    c.node(old).kill();
    let new = c.wait_leader(Duration::from_secs(20));
    assert_ne!(new, old);
    let survivors: Vec<u64> = (1..=3).filter(|id| *id != old).collect();
    for id in &survivors {
        assert_eq!(c.status(*id).unwrap()["leader"].as_u64(), Some(new));
    }
    // Writes continue through the survivors.
    let live = survivors.iter().map(|id| c.nodes[id].endpoint()).collect::<Vec<_>>().join(",");
    deploy(&dir, &live, "after");
    // The old leader shows as down to the others.
    c.eventually(Duration::from_secs(10), "killed node reported down", || {
        let s = c.status(new).unwrap();
        s["nodes"].as_array().unwrap().iter().any(|n| n["id"].as_u64() == Some(old) && n["status"] == "down")
    });

    tracing_note(&format!("--- restart node {old} with the same data dir"));
    c.node(old).start();
    c.eventually(Duration::from_secs(20), "restarted node to catch up", || {
        let leader_applied = c.status(new).map(|s| s["last_applied"].as_u64().unwrap_or(0));
        let node_applied = c.status(old).map(|s| s["last_applied"].as_u64().unwrap_or(0));
        matches!((leader_applied, node_applied), (Some(l), Some(n)) if n >= l)
    });
    let mut names = app_names(&c, old);
    names.sort();
    assert_eq!(names, ["after", "before"]);
    assert_eq!(c.status(old).unwrap()["leader"].as_u64(), Some(new));
}

#[test]
fn full_cluster_restart_keeps_everything_acknowledged() {
    let mut c = TestCluster::start(3, &[]);
    let dir = c.dir.path().to_path_buf();
    c.wait_leader(Duration::from_secs(20));
    deploy_many(&c.endpoints(), "keep", 25);
    assert_eq!(deploy(&dir, &c.endpoints(), "keep-3"), 2);
    c.json(2, &["app", "stop", "keep-7"]);

    for id in 1..=3 {
        assert!(c.node(id).stop(), "node {id} did not shut down cleanly on SIGTERM");
    }
    for id in 1..=3 {
        c.node(id).start();
    }
    c.wait_leader(Duration::from_secs(20));
    for id in 1..=3 {
        let apps = c.json(id, &["app", "list"]);
        let apps = apps.as_array().unwrap();
        assert_eq!(apps.len(), 25, "node {id}");
        let get = |n: &str| apps.iter().find(|a| a["name"] == n).unwrap().clone();
        assert_eq!(get("keep-3")["version"].as_u64(), Some(2));
        assert_eq!(get("keep-7")["state"], "stopped");
        assert_eq!(get("keep-24")["state"], "deployed");
    }
}

/// Narrates a test step in the test's output, so a failure shows where it was.
fn tracing_note(step: &str) {
    eprintln!("{step}");
}
