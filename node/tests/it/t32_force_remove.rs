//! `cluster remove-node ID --force`: the unsafe recovery of a cluster whose quorum is lost for
//! good. Refused while a quorum exists; otherwise the surviving node rewrites its membership,
//! restarts, and the cluster takes writes again with everything acknowledged before.

use std::time::{Duration, Instant};

use crate::harness::*;

/// Runs `remove-node ID --force` through node `via`; returns its exit code, stdout, stderr.
fn force(c: &TestCluster, via: u64, id: u64) -> (Option<i32>, String, String) {
    let out = c.cli(&c.nodes[&via].endpoint(), &["-o", "json", "cluster", "remove-node", &id.to_string(), "--force"]);
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// A linearizable read through `via` fails: no leader can confirm a quorum (writes, which
/// would wait for a commit that never comes, hang for the client's whole timeout instead).
fn stuck(c: &TestCluster, via: u64) {
    let out = c.cli(&c.nodes[&via].endpoint(), &["app", "list"]);
    assert!(!out.status.success(), "a read succeeded without a quorum");
}

#[test]
fn force_remove_restores_a_one_node_cluster_with_a_dead_voter() {
    let mut c = TestCluster::start(1, &[]);
    c.wait_leader(Duration::from_secs(20));
    let n5 = c.add_node(5, How::Wait, &[]);
    assert_eq!(c.json(1, &["cluster", "add-node", "5", &n5])["voters"], serde_json::json!([1, 5]));
    deploy(c.dir.path(), &c.nodes[&1].endpoint(), "before");

    // Node 5 dies with its data: voters {1, 5} with one of them gone for good.
    c.node(5).kill();
    std::fs::remove_dir_all(c.data_dir(5)).unwrap();
    stuck(&c, 1);
    // The normal path refuses at once and points to --force.
    let out = c.cli(&c.nodes[&1].endpoint(), &["cluster", "remove-node", "5"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no quorum") && stderr.contains("--force"), "{stderr}");

    let pid = c.node(1).pid();
    let started = Instant::now();
    let (code, stdout, stderr) = force(&c, 1, 5);
    assert_eq!(code, Some(0), "{stderr}\n{}", c.logs());
    let m: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(m["voters"], serde_json::json!([1]));
    assert!(started.elapsed() < Duration::from_secs(40), "took {:?}", started.elapsed());
    // Node 1 restarted in place (same process id) and leads alone.
    assert!(c.node(1).is_running());
    assert_eq!(c.node(1).pid(), pid);
    assert!(c.nodes[&1].log_text().contains("forced membership entry written"));
    assert_eq!(c.wait_leader(Duration::from_secs(20)), 1);
    // What was acknowledged before is there, and writes commit again.
    assert_eq!(c.json(1, &["app", "show", "before"])["version"].as_u64(), Some(1));
    deploy(c.dir.path(), &c.nodes[&1].endpoint(), "after");
    assert_eq!(app_names(&c, 1), ["after", "before"]);
}

#[test]
fn force_remove_is_refused_while_the_cluster_has_a_quorum() {
    let mut c = TestCluster::start(3, &[]);
    c.wait_leader(Duration::from_secs(20));
    c.node(3).kill();
    let (code, _, stderr) = force(&c, 1, 3);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("has a quorum") && stderr.contains("without --force"), "{stderr}");
    // Nothing changed: node 3 is still a member, and the normal path works.
    let m = c.json(1, &["cluster", "remove-node", "3"]);
    assert_eq!(m["voters"], serde_json::json!([1, 2]));
}

#[test]
fn force_remove_recovers_a_three_node_cluster_with_two_nodes_gone() {
    let mut c = TestCluster::start(3, &[]);
    c.wait_leader(Duration::from_secs(20));
    deploy(c.dir.path(), &c.nodes[&2].endpoint(), "before");
    // Every node has applied the write before two of them die for good.
    c.eventually(Duration::from_secs(10), "every node to apply the write", || {
        (1..=3).all(|id| app_names(&c, id).contains(&"before".to_string()))
    });
    for id in [2, 3] {
        c.node(id).kill();
        std::fs::remove_dir_all(c.data_dir(id)).unwrap();
    }
    stuck(&c, 1);

    // Voters {1, 3} after the first removal still lack a quorum: said at once, exit 0.
    let (code, stdout, stderr) = force(&c, 1, 2);
    assert_eq!(code, Some(0), "{stderr}\n{}", c.logs());
    assert!(stderr.contains("still lack a quorum"), "{stderr}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&stdout).unwrap()["voters"], serde_json::json!([1, 3]));
    let (code, stdout, stderr) = force(&c, 1, 3);
    assert_eq!(code, Some(0), "{stderr}\n{}", c.logs());
    assert_eq!(serde_json::from_str::<serde_json::Value>(&stdout).unwrap()["voters"], serde_json::json!([1]));

    assert_eq!(c.json(1, &["app", "show", "before"])["version"].as_u64(), Some(1));
    deploy(c.dir.path(), &c.nodes[&1].endpoint(), "after");
    assert_eq!(app_names(&c, 1), ["after", "before"]);
}
