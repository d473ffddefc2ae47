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

/// `add-node` with an address nothing answers on: refused within ~12 s naming the address,
/// the membership unchanged, and writes still work.
fn bogus_add_is_refused(c: &TestCluster, via: u64) {
    let voters_before = ids(&c.status(via).unwrap(), "");
    let bogus = format!("127.0.0.1:{}", free_port());
    let started = std::time::Instant::now();
    let out = c.cli(&c.nodes[&via].endpoint(), &["cluster", "add-node", "5", &bogus]);
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&bogus) && stderr.contains("not added"), "{stderr}");
    assert!(took < Duration::from_secs(12), "add-node of a dead address took {took:?}");
    assert_eq!(ids(&c.status(via).unwrap(), ""), voters_before, "membership changed");
    // Writes still commit, through every node.
    for (i, n) in c.nodes.values().enumerate() {
        deploy(c.dir.path(), &n.endpoint(), &format!("after-bogus-{i}"));
    }
}

#[test]
fn add_node_with_a_wrong_address_changes_nothing() {
    let mut one = TestCluster::start(1, &[]);
    one.wait_leader(Duration::from_secs(20));
    bogus_add_is_refused(&one, 1);

    let mut three = TestCluster::start(3, &[]);
    let leader = three.wait_leader(Duration::from_secs(20));
    bogus_add_is_refused(&three, leader % 3 + 1);
    // The address of a live node, under another id: refused, it is not that node.
    let out = three.cli(&three.nodes[&1].endpoint(), &["cluster", "add-node", "7", &three.nodes[&2].addr]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is node 2"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(ids(&three.status(1).unwrap(), ""), [1, 2, 3]);
}

#[test]
fn remove_node_drops_a_voter_that_is_gone_for_good() {
    let mut c = TestCluster::start(3, &[]);
    c.wait_leader(Duration::from_secs(20));
    let n4 = c.add_node(4, How::Wait, &[]);
    assert_eq!(c.json(1, &["cluster", "add-node", "4", &n4])["voters"], serde_json::json!([1, 2, 3, 4]));
    // Node 4 dies with its data: a voter that will never answer again.
    c.node(4).kill();
    std::fs::remove_dir_all(c.data_dir(4)).unwrap();
    let m = c.json(2, &["cluster", "remove-node", "4"]);
    assert_eq!(m["voters"], serde_json::json!([1, 2, 3]));
    c.eventually(Duration::from_secs(10), "node 4 gone from every node's status", || {
        (1..=3).all(|id| c.status(id).is_some_and(|s| ids(&s, "") == [1, 2, 3]))
    });
    deploy(c.dir.path(), &c.nodes[&3].endpoint(), "after-remove");
}

#[test]
fn a_removed_node_says_so_and_exits() {
    let mut c = TestCluster::start(3, &[]);
    let leader = c.wait_leader(Duration::from_secs(20));
    let gone = leader % 3 + 1;
    let via = gone % 3 + 1;
    let m = c.json(via, &["cluster", "remove-node", &gone.to_string()]);
    assert_eq!(m["voters"].as_array().unwrap().len(), 2);
    let code = c.node(gone).wait_exit(Duration::from_secs(15));
    assert!(matches!(code, Some(c) if c != 0), "removed node {gone} still running or exited 0: {code:?}\n{}", c.logs());
    let log = c.nodes[&gone].log_text();
    assert!(log.contains("was removed from the cluster"), "{log}");
    assert!(!log.contains("freezing"), "{log}");
    deploy(c.dir.path(), &c.nodes[&via].endpoint(), "after-removal");
}

/// A node of another cluster comes up at the address of a member that died (a machine
/// reinstalled, or ports handed out again): the old cluster keeps calling that address, and
/// neither cluster may take the other's messages. Both keep working, each with its own catalog.
#[test]
fn a_node_of_another_cluster_at_a_dead_members_address_is_left_alone() {
    let mut a = TestCluster::start(3, &[]);
    let leader = a.wait_leader(Duration::from_secs(20));
    deploy(a.dir.path(), &a.nodes[&leader].endpoint(), "of-a");
    // Enough entries that the two logs differ well past their first entries.
    for i in 0..20 {
        deploy(a.dir.path(), &a.nodes[&leader].endpoint(), &format!("a-{i}"));
    }
    let dead = leader % 3 + 1;
    a.node(dead).kill();
    let addr = a.nodes[&dead].addr.clone();

    // Cluster B: one node at the dead member's address, with its node id too, so that ids
    // and addresses alone cannot tell the clusters apart.
    let mut b = TestCluster::empty();
    b.add_node_at(dead, &addr, How::Bootstrap, &[], &[]);
    b.wait_leader(Duration::from_secs(20));
    deploy(b.dir.path(), &b.nodes[&dead].endpoint(), "of-b");
    // A's leader calls the address every heartbeat; give it time to do harm.
    std::thread::sleep(Duration::from_secs(5));
    deploy(b.dir.path(), &b.nodes[&dead].endpoint(), "of-b-later");
    assert_eq!(app_names(&b, dead), ["of-b", "of-b-later"], "B's catalog took A's entries");
    let log = b.nodes[&dead].log_text();
    assert!(!log.contains("panicked"), "B's node panicked:\n{log}");
    assert!(log.contains("another cluster"), "B's node did not refuse A's calls:\n{log}");
    // Adding B's node to A is refused at once, naming the reason.
    let survivor = (1..=3).find(|id| *id != dead).unwrap();
    let out = a.cli(&a.nodes[&survivor].endpoint(), &["cluster", "add-node", "9", &addr]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("another cluster") && stderr.contains("not added"), "{stderr}");
    assert!(b.node(dead).is_running(), "B's node exited:\n{log}");

    // A still has its quorum (two of three) and its own catalog.
    deploy(a.dir.path(), &a.nodes[&survivor].endpoint(), "a-after");
    let names = app_names(&a, survivor);
    assert!(names.contains(&"a-after".to_string()) && !names.contains(&"of-b".to_string()), "{names:?}");

    // A second member of A dies (A has no quorum now: its last node stands for election and
    // asks the dead addresses for votes), and a node waiting to be added comes up at its
    // address. It takes nothing from A, and B adds it.
    let second = (1..=3).find(|id| *id != dead && *id != survivor).unwrap();
    a.node(second).kill();
    let addr2 = a.nodes[&second].addr.clone();
    b.add_node_at(second, &addr2, How::Wait, &[], &[]);
    std::thread::sleep(Duration::from_secs(3));
    let m = b.json(dead, &["cluster", "add-node", &second.to_string(), &addr2]);
    assert_eq!(m["voters"].as_array().unwrap().len(), 2, "{m}");
    b.eventually(Duration::from_secs(20), "the added node to have B's apps", || {
        b.status(second).is_some() && app_names(&b, second).contains(&"of-b".to_string())
    });
    assert!(!app_names(&b, second).iter().any(|n| n.starts_with("a-")), "the added node took A's entries");
    let log = b.nodes[&second].log_text();
    assert!(!log.contains("panicked"), "{log}");
}
