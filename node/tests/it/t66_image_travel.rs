//! Images that travel between nodes: each node on an engine of its own (see `engines`) and an
//! image built on node 2's engine only. Placement prefers node 2 while the nodes have about the
//! same room; once node 2 is busier, a sandbox placed on node 1 fetches the image from node 2
//! through the blob store, layer by layer, and runs it. A second image built on the first sends
//! nothing its base already sent. An image no node has fails with the reason. A sandbox failing
//! over to a node without its image gets it from a live node that has it.

use std::process::Command;
use std::time::Duration;

use crate::engines::Engines;
use crate::harness::*;

/// `FROM base`, a file `/marker` holding `marker`, built as `tag` on node `id`'s engine.
fn build_on(engines: &Engines, id: u64, base: &str, tag: &str, marker: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("marker"), marker).unwrap();
    std::fs::write(dir.path().join("Dockerfile"), format!("FROM {base}\nCOPY marker /marker\n")).unwrap();
    let o = Command::new("docker")
        .args(["-H", &engines.host(id), "build", "-q", "-t", tag])
        .arg(dir.path())
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    assert!(o.status.success(), "docker build: {}", String::from_utf8_lossy(&o.stderr));
}

/// The `fetched_bytes` of node `id`'s log lines saying it fetched `image`.
fn fetched(c: &TestCluster, id: u64, image: &str) -> Vec<u64> {
    c.nodes[&id]
        .log_text()
        .lines()
        .filter(|l| l.contains("image fetched from a peer and loaded") && l.contains(image))
        .filter_map(|l| l.split("fetched_bytes=").nth(1)?.split_whitespace().next()?.parse().ok())
        .collect()
}

#[test]
fn an_image_on_one_node_runs_on_another_fetched_through_the_blob_store() {
    busybox_image();
    let engines = Engines::start(2);
    let unique = format!("{}-{}", std::process::id(), rand::random::<u32>());
    let (first, second) = (format!("flotilla-test/travel-a:{unique}"), format!("flotilla-test/travel-b:{unique}"));
    build_on(&engines, 2, "flotilla/busybox", &first, "first image");
    let mut c = TestCluster::start_each(2, |id| vec!["--docker-host".into(), engines.host(id)], &[]);
    c.wait_leader(Duration::from_secs(20));
    let on = |name: &str| -> Vec<u64> {
        let images = c.json(1, &["image", "ls"]);
        let found = images.as_array().unwrap().iter().find(|i| i["name"] == name).cloned();
        found.map(|i| i["nodes"].as_array().unwrap().iter().filter_map(|n| n.as_u64()).collect()).unwrap_or_default()
    };
    assert_eq!(on(&first), [2], "only node 2's engine has it");
    // The nodes tell each other their images in their liveness pings (every 0.5 s).
    std::thread::sleep(Duration::from_secs(2));
    // Each sandbox takes a tenth of a node's offered CPU (its cores times 4), so one more
    // sandbox on a node is twice the preference's slack of room, whatever the machine.
    let mut cores = 0;
    c.eventually(Duration::from_secs(20), "both nodes registered", || {
        let status = c.json(1, &["cluster", "status"]);
        let cpus: Vec<u64> = status["nodes"].as_array().unwrap().iter().filter_map(|n| n["cpus"].as_u64()).collect();
        cores = cpus.iter().copied().min().unwrap_or(0);
        cpus.len() == 2 && cores > 0
    });
    let cpu = format!("{:.2}", cores as f64 * 4.0 / 10.0);
    let create = |image: &str| -> (String, u64) {
        let created = c.json(1, &["sandbox", "create", "--image", image, "--cpu", &cpu, "--wait"]);
        let id = created["id"].as_str().unwrap().to_string();
        let node = c.json(1, &["sandbox", "show", &id])["node"].as_u64().unwrap();
        (id, node)
    };
    let marker = |id: &str| {
        let o = c.cli(&c.endpoints(), &["sandbox", "exec", id, "--", "cat", "/marker"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };

    // Equal room: placement prefers the node that has the image.
    let (_, node) = create(&first);
    assert_eq!(node, 2, "the node with the image");
    assert!(fetched(&c, 2, &first).is_empty(), "nothing fetched");

    // Node 2 is now busier by more than the preference's slack: node 1 takes the next one,
    // fetches the image from node 2 and runs it.
    let (b, node) = create(&first);
    assert_eq!(node, 1, "the node with more room");
    assert_eq!(marker(&b), "first image");
    assert_eq!(on(&first), [1, 2], "node 1 has it now");
    let base_layers = fetched(&c, 1, &first);
    assert!(base_layers.len() == 1 && base_layers[0] > 100_000, "the base layer travelled: {base_layers:?}");
    assert!(c.cli(&c.endpoints(), &["sandbox", "terminate", &b]).status.success());

    // An image built on the first: its base layer's blob is here already, nothing large travels.
    build_on(&engines, 2, &first, &second, "second image");
    let (id, node) = create(&second);
    assert_eq!(node, 1);
    assert_eq!(marker(&id), "second image");
    assert_eq!(fetched(&c, 1, &second), [0], "only what node 1 lacked travelled");

    // No node has it: the reason, not a hang.
    let o = c.cli(&c.endpoints(), &["sandbox", "create", "--image", "flotilla-test/nowhere:1", "--wait"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("flotilla-test/nowhere:1"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A sandbox whose node dies fails over to a node whose engine lacks its image: that node
/// fetches the image from the live node that has it, and the restored sandbox runs.
#[test]
fn a_sandbox_fails_over_to_a_node_without_its_image() {
    busybox_image();
    let engines = Engines::start(3);
    let image = format!("flotilla-test/travel-f:{}-{}", std::process::id(), rand::random::<u32>());
    for id in [1, 3] {
        build_on(&engines, id, "flotilla/busybox", &image, "kept");
    }
    let mut c = TestCluster::start_each(3, |id| vec!["--docker-host".into(), engines.host(id)], &[]);
    c.wait_leader(Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(2));
    let args = ["sandbox", "create", "--image", &image, "--restore-on-failure", "--snapshot-every", "5", "--wait"];
    let id = c.json(1, &args)["id"].as_str().unwrap().to_string();
    // Equal room: the lowest-numbered node that has the image.
    assert_eq!(c.json(1, &["sandbox", "show", &id])["node"], 1);
    c.eventually(Duration::from_secs(30), "a periodic snapshot", || {
        c.json(2, &["sandbox", "show", &id])["last_snapshot"]
            .as_str()
            .is_some_and(|s| c.json(2, &["snapshot", "show", s])["state"] == "ready")
    });
    c.node(1).kill();
    let live = format!("{},{}", c.nodes[&2].endpoint(), c.nodes[&3].endpoint());
    let mut moved = serde_json::Value::Null;
    c.eventually(Duration::from_secs(60), "the sandbox running on node 2", || {
        let o = cli(&live, &["-o", "json", "sandbox", "show", &id]);
        moved = serde_json::from_slice(&o.stdout).unwrap_or_default();
        moved["state"] == "running" && moved["node"] == 2
    });
    assert_eq!(moved["generation"], 2, "{moved}");
    let o = cli(&live, &["sandbox", "exec", &id, "--", "cat", "/marker"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "kept", "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(fetched(&c, 2, &image).len(), 1, "node 2 fetched the image (from node 3)");
}
