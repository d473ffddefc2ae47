//! A three-node cluster elects a leader, and every node accepts writes and serves reads that
//! see the latest acknowledged write.

use std::time::Duration;

use crate::harness::*;

#[test]
fn three_nodes_elect_a_leader_and_report_roles() {
    let mut c = TestCluster::start(3, &[]);
    let leader = c.wait_leader(Duration::from_secs(20));
    c.eventually(Duration::from_secs(10), "all three nodes up and registered in cluster status", || {
        let s = c.status(leader).unwrap();
        s["nodes"].as_array().unwrap().iter().all(|n| n["status"] == "up" && n["cpus"].as_u64() > Some(0))
    });
    for id in 1..=3 {
        let s = c.status(id).unwrap();
        assert_eq!(s["leader"].as_u64(), Some(leader));
        assert!(s["term"].as_u64().unwrap() >= 1);
        let nodes = s["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), 3);
        for n in nodes {
            let want = if n["id"].as_u64() == Some(leader) { "leader" } else { "follower" };
            assert_eq!(n["role"], want, "{s}");
            assert_eq!(n["addr"].as_str(), Some(c.nodes[&n["id"].as_u64().unwrap()].addr.as_str()));
            assert_eq!(n["gpus"], serde_json::json!([]));
        }
    }
    // The text form names the leader too.
    let out = c.cli(&c.nodes[&1].endpoint(), &["cluster", "status"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("leader {leader}")));
}

#[test]
fn writes_through_any_node_are_read_back_through_every_other() {
    let mut c = TestCluster::start(3, &[]);
    c.wait_leader(Duration::from_secs(20));
    let dir = c.dir.path().to_path_buf();
    for via in 1..=3u64 {
        let name = format!("via-{via}");
        assert_eq!(deploy(&dir, &c.nodes[&via].endpoint(), &name), 1);
        // Read right after the acknowledged write, through each of the other nodes.
        for reader in (1..=3).filter(|r| *r != via) {
            let app = c.json(reader, &["app", "show", &name]);
            assert_eq!((app["version"].as_u64(), app["state"].as_str()), (Some(1), Some("deployed")), "{app}");
        }
    }
    // A redeploy bumps the version, seen at once elsewhere.
    assert_eq!(deploy(&dir, &c.nodes[&2].endpoint(), "via-1"), 2);
    assert_eq!(c.json(3, &["app", "show", "via-1"])["version"].as_u64(), Some(2));
    // Stop through one node, seen through another.
    let stopped = c.json(3, &["app", "stop", "via-2"]);
    assert_eq!(stopped["state"], "stopped");
    assert_eq!(c.json(1, &["app", "show", "via-2"])["state"], "stopped");
    let mut names = app_names(&c, 2);
    names.sort();
    assert_eq!(names, ["via-1", "via-2", "via-3"]);
}

#[test]
fn clients_skip_dead_endpoints() {
    let mut c = TestCluster::start(3, &[]);
    c.wait_leader(Duration::from_secs(20));
    let dead = format!("http://127.0.0.1:{}", free_port());
    let endpoints = format!("{dead},{}", c.nodes[&2].endpoint());
    // CLI: the dead endpoint is tried first, then the live one.
    let out = cli(&endpoints, &["-o", "json", "cluster", "status"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // SDK: same, and a deploy through it is visible through a third node.
    rt().block_on(async {
        let client = flotilla::Client::connect(endpoints.split(',')).await.unwrap();
        let spec = flotilla::AppSpec::from_toml_str(
            "name = \"sdk-app\"\n[functions.f]\nimage = \"flotilla/busybox\"\ncommand = [\"true\"]\n",
        )
        .unwrap();
        let app = client.deploy(spec).await.unwrap();
        assert_eq!((app.name.as_str(), app.version, app.state.as_str()), ("sdk-app", 1, "deployed"));
        let status = client.cluster_status().await.unwrap();
        assert_eq!(status.nodes.len(), 3);
    });
    assert_eq!(c.json(3, &["app", "show", "sdk-app"])["version"].as_u64(), Some(1));
}
