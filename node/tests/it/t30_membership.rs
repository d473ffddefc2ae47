//! Membership changes: bootstrap + join, add-node and remove-node, and a node that fell
//! behind past log compaction catching up from a snapshot.

use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

fn ids(status: &Value, role: &str) -> Vec<u64> {
    let mut v: Vec<u64> = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| match role {
            "" => true,
            "voter" => n["role"] == "leader" || n["role"] == "follower",
            _ => n["role"] == role,
        })
        .map(|n| n["id"].as_u64().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn bootstrap_then_join_then_add_and_remove() {
    let mut c = TestCluster::empty();
    let seed = c.add_node(1, How::Bootstrap, &[]);
    c.wait_leader(Duration::from_secs(20));
    let dir = c.dir.path().to_path_buf();
    deploy(&dir, &c.nodes[&1].endpoint(), "early");

    // Node 2 joins through the leader, node 3 through a follower (node 2).
    let n2 = c.add_node(2, How::Join(&seed), &[]);
    c.eventually(Duration::from_secs(30), "node 2 to become a voter", || {
        c.status(1).is_some_and(|s| ids(&s, "voter") == [1, 2])
    });
    c.add_node(3, How::Join(&n2), &[]);
    c.eventually(Duration::from_secs(30), "node 3 to become a voter", || {
        c.status(1).is_some_and(|s| ids(&s, "voter") == [1, 2, 3])
    });
    // The joined nodes have the data written before they joined.
    assert_eq!(c.json(3, &["app", "show", "early"])["version"].as_u64(), Some(1));

    // remove-node through a follower.
    let m = c.json(2, &["cluster", "remove-node", "3"]);
    assert_eq!(m["voters"], serde_json::json!([1, 2]));
    c.eventually(Duration::from_secs(10), "node 3 gone from status", || {
        c.status(1).is_some_and(|s| ids(&s, "") == [1, 2])
    });
    c.node(3).kill();

    // add-node: a node started with no bootstrap flag waits to be added.
    let n4 = c.add_node(4, How::Wait, &[]);
    let m = c.json(2, &["cluster", "add-node", "4", &n4]);
    assert_eq!(m["voters"], serde_json::json!([1, 2, 4]));
    assert_eq!(c.json(4, &["app", "show", "early"])["version"].as_u64(), Some(1));
    let s = c.status(4).unwrap();
    assert_eq!(ids(&s, ""), [1, 2, 4]);

    // Bad membership requests are refused with a reason.
    let out = cli(&c.nodes[&1].endpoint(), &["cluster", "remove-node", "9"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a member"));
    let out = cli(&c.nodes[&1].endpoint(), &["cluster", "add-node", "4", "127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already a member"));
}

#[test]
fn far_behind_node_catches_up_from_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(&config, "[raft]\nsnapshot_every = 20\nlogs_kept_after_snapshot = 0\n").unwrap();
    let config = config.to_str().unwrap().to_string();
    let mut c = TestCluster::start(3, &["--config", &config]);
    let leader = c.wait_leader(Duration::from_secs(20));
    let behind = (1..=3).find(|id| *id != leader).unwrap();
    let behind_index = c.status(behind).unwrap()["last_log_index"].as_u64().unwrap();

    c.node(behind).kill();
    let live = (1..=3).filter(|id| *id != behind).map(|id| c.nodes[&id].endpoint()).collect::<Vec<_>>().join(",");
    // Write until the leader has compacted past the stopped node's last entry. openraft
    // defers a purge while a replication stream still reads the log, so this can take a few
    // snapshot rounds.
    let mut written = 0;
    let purged = loop {
        deploy_many(&live, &format!("bulk{written}"), 30);
        written += 30;
        let s = c.status(leader).unwrap();
        let purged = s["purged_index"].as_u64().unwrap();
        if purged > behind_index {
            break purged;
        }
        assert!(written < 300, "leader never compacted past {behind_index}: {s}");
    };

    c.node(behind).start();
    c.eventually(Duration::from_secs(30), "stopped node to install the snapshot and catch up", || {
        let Some(s) = c.status(behind) else { return false };
        s["snapshot_index"].as_u64().unwrap_or(0) >= purged
            && s["last_applied"].as_u64() >= c.status(leader).and_then(|l| l["last_applied"].as_u64())
    });
    assert_eq!(app_names(&c, behind).len(), written);
}
