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
    // Node 1's engine has busybox, the image's base layer: it neither travels nor is loaded
    // again; the image's own layer (the marker file) is small and came inline.
    assert_eq!(fetched(&c, 1, &first), [0], "nothing large travelled");
    let log = c.nodes[&1].log_text();
    assert!(
        log.lines().any(|l| l.contains("image fetched") && l.contains(&first) && l.contains("layers_skipped=1")),
        "{log}"
    );
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

/// `FROM flotilla/busybox` with a file of `mib` MiB of random bytes (a layer of its own) and a
/// marker, built as `tag` on node 2's engine and copied to node 3's as `docker save | load`
/// (so both hold the same layers, byte for byte).
fn build_big_on_2_and_3(engines: &Engines, tag: &str, mib: usize, marker: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut big = vec![0u8; mib << 20];
    rand::fill(big.as_mut_slice());
    std::fs::write(dir.path().join("big"), big).unwrap();
    std::fs::write(dir.path().join("marker"), marker).unwrap();
    std::fs::write(dir.path().join("Dockerfile"), "FROM flotilla/busybox\nCOPY big /big\nCOPY marker /marker\n")
        .unwrap();
    let o = Command::new("docker")
        .args(["-H", &engines.host(2), "build", "-q", "-t", tag])
        .arg(dir.path())
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    assert!(o.status.success(), "docker build: {}", String::from_utf8_lossy(&o.stderr));
    let copy = format!("docker -H {} save {tag} | docker -H {} load -q", engines.host(2), engines.host(3));
    let o = Command::new("sh").args(["-c", &copy]).output().unwrap();
    assert!(o.status.success(), "{copy}: {}", String::from_utf8_lossy(&o.stderr));
}

/// The chunk files in node `id`'s blob store.
fn chunk_files(c: &TestCluster, id: u64) -> usize {
    let Ok(dirs) = std::fs::read_dir(c.data_dir(id).join("blobs/chunks")) else { return 0 };
    dirs.flatten().filter_map(|d| std::fs::read_dir(d.path()).ok()).map(|files| files.count()).sum()
}

/// The chunk hashes of node `id`'s largest exported layer of `image`, in order: asks the node to
/// export the image (`Peer/ExportImage`), then reads the layer's blob (`Peer/FetchBlob`).
fn layer_chunks(c: &TestCluster, id: u64, image: &str) -> Vec<String> {
    use flotilla_proto::peer::{blob_part::Part, peer_client::PeerClient, ExportImageRequest, FetchBlobRequest};
    rt().block_on(async {
        let mut peer = PeerClient::connect(c.nodes[&id].endpoint()).await.unwrap().max_decoding_message_size(64 << 20);
        let entries = peer.export_image(ExportImageRequest { name: image.into() }).await.unwrap().into_inner().entries;
        let layer = entries.into_iter().max_by_key(|e| e.size).unwrap();
        let req = FetchBlobRequest { sha256: layer.blob, ..Default::default() };
        let mut parts = peer.fetch_blob(req).await.unwrap().into_inner();
        let mut hashes = Vec::new();
        while let Some(part) = parts.message().await.unwrap() {
            if let Some(Part::Chunk(chunk)) = part.part {
                hashes.push(chunk.hash);
            }
        }
        hashes
    })
}

/// A fetch that meets a corrupt chunk on one peer, and one whose peer dies mid-transfer, each
/// carries on from another node with the same image and moves only what is still missing.
#[test]
fn an_image_fetch_resumes_from_another_copy_after_a_bad_chunk_or_a_dead_peer() {
    const MIB: usize = 64;
    busybox_image();
    let engines = Engines::start(3);
    let unique = format!("{}-{}", std::process::id(), rand::random::<u32>());
    let (first, second) = (format!("flotilla-test/fault-a:{unique}"), format!("flotilla-test/fault-b:{unique}"));
    build_big_on_2_and_3(&engines, &first, MIB, "first");
    build_big_on_2_and_3(&engines, &second, MIB, "second");
    let mut c = TestCluster::start_each(3, |id| vec!["--docker-host".into(), engines.host(id)], &[]);
    c.wait_leader(Duration::from_secs(20));
    let mut cores = 0;
    c.eventually(Duration::from_secs(20), "every node registered, images known", || {
        let status = c.json(1, &["cluster", "status"]);
        let cpus: Vec<u64> = status["nodes"].as_array().unwrap().iter().filter_map(|n| n["cpus"].as_u64()).collect();
        cores = cpus.iter().copied().min().unwrap_or(0);
        cpus.len() == 3 && cores > 0
    });
    std::thread::sleep(Duration::from_secs(2));
    let cpu = format!("{:.2}", cores as f64 * 4.0 / 10.0);
    let create = |image: &str| c.json(1, &["sandbox", "create", "--image", image, "--cpu", &cpu, "--wait"]);
    let node_of = |id: &str| c.json(1, &["sandbox", "show", id])["node"].as_u64().unwrap();
    // One sandbox on each node with the images (they prefer them), so node 1, with the most
    // room, takes the next ones and has to fetch.
    for expected in [2, 3] {
        let id = create(&first)["id"].as_str().unwrap().to_string();
        assert_eq!(node_of(&id), expected);
    }

    // 1. Node 2's copy of a chunk in the middle of the big layer is corrupt.
    let chunks = layer_chunks(&c, 2, &first);
    assert!(chunks.len() >= MIB, "{} chunks", chunks.len());
    let bad = &chunks[chunks.len() / 2];
    let path = c.data_dir(2).join("blobs/chunks").join(&bad[..2]).join(bad);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let id = create(&first)["id"].as_str().unwrap().to_string();
    assert_eq!(node_of(&id), 1);
    let o = c.cli(&c.endpoints(), &["sandbox", "exec", &id, "--", "cat", "/marker"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "first", "{}", String::from_utf8_lossy(&o.stderr));
    let log = c.nodes[&1].log_text();
    assert!(log.contains("image fetch failed; trying the next node") && log.contains("corrupt"), "{log}");
    let from_3 = fetched(&c, 1, &first);
    assert_eq!(from_3.len(), 1, "{log}");
    // Node 2 sent the chunks before the bad one; node 3 only the rest.
    let half = (MIB << 20) as u64 / 2;
    assert!(from_3[0] > half / 2 && from_3[0] < half * 3 / 2, "node 3 sent {} bytes of {MIB} MiB", from_3[0]);
    let events = c.json(1, &["events", "--kind", "image"]);
    let messages: Vec<&str> = events.as_array().unwrap().iter().filter_map(|e| e["message"].as_str()).collect();
    assert!(messages.iter().any(|m| m.contains("could not fetch") && m.contains("from node 2")), "{messages:?}");
    assert!(messages.iter().any(|m| m.contains("fetched image") && m.contains("from node 3")), "{messages:?}");
    assert!(messages.iter().any(|m| m.contains("fetching image") && m.contains("from node 2")), "{messages:?}");
    assert!(c.cli(&c.endpoints(), &["sandbox", "terminate", &id]).status.success());

    // 2. Node 2 dies while node 1 fetches the second image from it.
    let before = chunk_files(&c, 1);
    let args = ["sandbox", "create", "--image", &second, "--cpu", &cpu, "--wait"];
    let creating = Command::new(BIN)
        .args(["--endpoint", &c.nodes[&1].endpoint(), "-o", "json"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Polled every few milliseconds: the transfer starts right after this line.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !c.nodes[&1].log_text().lines().any(|l| l.contains("fetching an image's layers") && l.contains(&second)) {
        assert!(std::time::Instant::now() < deadline, "node 1 never started fetching from node 2\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(2));
    }
    // Stopped, let run for moments, until node 1 holds some of the layer; then killed.
    let pid = c.nodes[&2].pid().unwrap().to_string();
    let signal = |s: &str| assert!(Command::new("kill").args([s, &pid]).status().unwrap().success());
    signal("-STOP");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while chunk_files(&c, 1) == before {
        assert!(std::time::Instant::now() < deadline, "no chunk arrived from node 2");
        signal("-CONT");
        std::thread::sleep(Duration::from_millis(20));
        signal("-STOP");
    }
    let got_from_2 = chunk_files(&c, 1) - before;
    c.node(2).kill();
    let out = creating.wait_with_output().unwrap();
    assert!(out.status.success(), "create failed\n{}", c.logs());
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = created["id"].as_str().unwrap();
    let live = format!("{},{}", c.nodes[&1].endpoint(), c.nodes[&3].endpoint());
    let o = cli(&live, &["sandbox", "exec", id, "--", "cat", "/marker"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "second", "{}", String::from_utf8_lossy(&o.stderr));
    let from_3 = fetched(&c, 1, &second);
    assert_eq!(from_3.len(), 1, "{}", c.nodes[&1].log_text());
    assert!(
        got_from_2 < MIB && from_3[0] <= ((MIB - got_from_2) << 20) as u64 + (1 << 20),
        "node 3 sent {} bytes after node 2 had sent {got_from_2} of {MIB} chunks",
        from_3[0]
    );
}
