//! Sandbox failover end to end: the node hosting a `--restore-on-failure` sandbox is
//! SIGKILLed together with its containers; the leader restores the sandbox (same id, next
//! generation) on a live node from its latest periodic snapshot, clients reach it there
//! unchanged, and the old node, restarted, does not bring back a second copy; the sandbox's
//! logs then hold both generations' lines. And a node that loses its quorum fences itself.

use std::time::{Duration, Instant};

use crate::harness::*;
use crate::t80_snapshots::{create, sh, show, three};

/// Containers of the sandbox that run, frozen or not.
fn running_copies(id: &str) -> usize {
    docker(&["ps", "-q", "--filter", &format!("label=flotilla.sandbox={id}")]).lines().count()
}

/// Containers of the sandbox frozen by a fence (`docker pause`).
fn frozen_copies(id: &str) -> usize {
    docker(&["ps", "-q", "--filter", &format!("label=flotilla.sandbox={id}"), "--filter", "status=paused"])
        .lines()
        .count()
}

#[test]
fn a_dead_nodes_sandbox_comes_back_elsewhere_with_its_files() {
    let mut c = three();
    let id = create(&c, &["--restore-on-failure", "--snapshot-every", "5"]);
    sh(&c, &id, "mkdir -p /work/state && echo 42 > /work/state/answer && chmod 600 /work/state/answer");
    let written_ms = chrono_ms();
    // Wait for a periodic snapshot taken after the write.
    c.eventually(Duration::from_secs(30), "a periodic snapshot after the write", || {
        let s = show(&c, &id);
        s["last_snapshot"].as_str().is_some_and(|snap| {
            let info = c.json(1, &["snapshot", "show", snap]);
            info["state"] == "ready" && info["created_at_ms"].as_i64().unwrap() > written_ms
        })
    });
    let before = show(&c, &id);
    let old = before["node"].as_u64().unwrap();
    assert_eq!(before["generation"].as_u64(), Some(1));

    tracing_line(&format!("--- SIGKILL node {old} and its containers"));
    let dead_label = c.instance_label(old);
    c.node(old).kill();
    for cid in containers(&dead_label) {
        docker(&["rm", "-f", "-v", &cid]);
    }
    let killed = Instant::now();

    let live: Vec<String> = c.nodes.values().filter(|n| n.id != old).map(|n| n.endpoint()).collect();
    let ep = live.join(",");
    let mut moved = serde_json::Value::Null;
    c.eventually(Duration::from_secs(40), "the sandbox running on another node", || {
        let o = cli(&ep, &["-o", "json", "sandbox", "show", &id]);
        moved = serde_json::from_slice(&o.stdout).unwrap_or_default();
        moved["state"] == "running" && moved["node"].as_u64().is_some_and(|n| n != old)
    });
    assert_eq!(moved["generation"].as_u64(), Some(2), "same id, next generation: {moved}");
    // The move is a failover event, listed by `events` and shown with the sandbox.
    let to = moved["node"].as_u64().unwrap();
    let failover = format!("moved from node {old} to node {to} as generation 2");
    let is_failover = |e: &serde_json::Value| {
        e["kind"] == "failover" && e["subject"] == id.as_str() && e["message"].as_str().unwrap().contains(&failover)
    };
    assert!(moved["events"].as_array().unwrap().iter().any(is_failover), "sandbox show: {moved}");
    let o = cli(&ep, &["-o", "json", "events", "--kind", "failover"]);
    let events: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(events.as_array().unwrap().iter().any(is_failover), "events --kind failover: {events}");
    // Clients reach it unchanged: the CLI with every endpoint (the dead one included)…
    let o = c.cli(
        &c.endpoints(),
        &["sandbox", "exec", &id, "--", "sh", "-c", "cat /work/state/answer; stat -c %a /work/state/answer"],
    );
    assert_eq!((o.status.code(), String::from_utf8_lossy(&o.stdout).as_ref()), (Some(0), "42\n600\n"));
    let took = killed.elapsed();
    // …and the SDK.
    rt().block_on(async {
        let client = flotilla::Client::connect(c.endpoints().split(',')).await.unwrap();
        let sb = client.sandbox_from_id(&id).await.unwrap();
        let out = sb.exec(["cat", "/work/state/answer"]).output().await.unwrap();
        assert_eq!(out.stdout, b"42\n");
    });
    eprintln!("failover: node death to exec answered elsewhere in {took:?}");

    tracing_line(&format!("--- restart node {old}"));
    c.node(old).start();
    c.eventually(Duration::from_secs(20), "the old node back", || c.status(old).is_some());
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(running_copies(&id), 1, "one live copy after the old node came back");
    assert_eq!(show(&c, &id)["node"], moved["node"]);
    assert_eq!(sh(&c, &id, "cat /work/state/answer"), "42\n");
}

#[test]
fn a_failed_over_sandbox_shows_its_earlier_generations_logs_once_their_node_is_back() {
    let mut c = three();
    let id = create(&c, &["--restore-on-failure", "--snapshot-every", "5", "--", "sh", "-c", "echo up; sleep 600"]);
    let started_ms = chrono_ms();
    c.eventually(Duration::from_secs(30), "a periodic snapshot", || {
        show(&c, &id)["last_snapshot"].as_str().is_some_and(|snap| {
            let info = c.json(1, &["snapshot", "show", snap]);
            info["state"] == "ready" && info["created_at_ms"].as_i64().unwrap() > started_ms
        })
    });
    let old = show(&c, &id)["node"].as_u64().unwrap();
    // The node dies; its container lives on with the engine (the machine did not die).
    c.node(old).kill();
    let live: Vec<String> = c.nodes.values().filter(|n| n.id != old).map(|n| n.endpoint()).collect();
    let ep = live.join(",");
    c.eventually(Duration::from_secs(40), "generation 2 running on another node", || {
        let o = cli(&ep, &["-o", "json", "sandbox", "show", &id]);
        let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        s["state"] == "running" && s["generation"] == 2
    });
    let o = cli(&ep, &["-o", "json", "sandbox", "show", &id]);
    let new = serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["node"].as_u64().unwrap();
    // (generation, node, text) of each line `logs sandbox` prints.
    let lines = |ep: &str| -> Vec<(u64, u64, String)> {
        let o = cli(ep, &["-o", "json", "logs", "sandbox", &id]);
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .map(|l| {
                (l["generation"].as_u64().unwrap(), l["node"].as_u64().unwrap(), l["text"].as_str().unwrap().into())
            })
            .collect()
    };
    c.eventually(Duration::from_secs(20), "generation 2's line", || lines(&ep) == [(2, new, "up".to_string())]);
    // Back, the old node removes its stale copy and keeps its log: both generations show.
    c.node(old).start();
    c.eventually(Duration::from_secs(30), "both generations' lines", || {
        lines(&ep) == [(1, old, "up".to_string()), (2, new, "up".to_string())]
    });
    // (Its log is kept just before the container is removed.)
    c.eventually(Duration::from_secs(10), "the stale copy removed", || running_copies(&id) == 1);
    let o = cli(&ep, &["logs", "sandbox", &id, "--tail", "1"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 1, "--tail counts the current container's lines");
}

#[test]
fn a_node_without_quorum_fences_itself() {
    let mut c = three();
    let id = create(&c, &["--snapshot-every", "5"]);
    sh(&c, &id, "echo kept > /work/file");
    let written_ms = chrono_ms();
    c.eventually(Duration::from_secs(30), "a periodic snapshot after the write", || {
        show(&c, &id)["last_snapshot"].as_str().is_some_and(|snap| {
            let info = c.json(1, &["snapshot", "show", snap]);
            info["state"] == "ready" && info["created_at_ms"].as_i64().unwrap() > written_ms
        })
    });
    // Written after the snapshot: only the container itself has it.
    sh(&c, &id, "echo late > /work/late");
    let host = show(&c, &id)["node"].as_u64().unwrap();
    let container = docker(&["ps", "-q", "--filter", &format!("label=flotilla.sandbox={id}")]);
    assert_eq!(running_copies(&id), 1);
    for n in [1, 2, 3].into_iter().filter(|&n| n != host) {
        c.node(n).kill();
    }
    tracing_line(&format!("--- node {host} alone: no quorum"));
    c.eventually(Duration::from_secs(15), "the lonely node's sandbox frozen", || frozen_copies(&id) == 1);
    assert_eq!(running_copies(&id), 1, "frozen, not removed");
    let o = cli(&c.nodes[&host].endpoint(), &["sandbox", "exec", &id, "--", "true"]);
    assert_ne!(o.status.code(), Some(0), "a fenced node serves no exec");
    let o = cli(&c.nodes[&host].endpoint(), &["sandbox", "snapshot", &id]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    // Refused for want of a leader (the message depends on how far the node got in noticing
    // it lost its leadership); a fenced node that still knows a leader refuses too.
    assert!(!o.status.success(), "a fenced node takes no snapshot: {stderr}");
    // Quorum back: the sandbox, still assigned there, runs again.
    for n in [1, 2, 3].into_iter().filter(|&n| n != host) {
        c.node(n).start();
    }
    c.eventually(Duration::from_secs(30), "the sandbox serving again", || {
        c.cli(&c.endpoints(), &["sandbox", "exec", &id, "--", "true"]).status.success()
    });
    assert_eq!((running_copies(&id), frozen_copies(&id)), (1, 0), "thawed");
    // The same container, thawed: nothing was restored, and what was written after the last
    // snapshot is still there (R8 in docs/reliability.md: the fence used to remove it).
    assert_eq!(docker(&["ps", "-q", "--filter", &format!("label=flotilla.sandbox={id}")]), container);
    assert_eq!(sh(&c, &id, "cat /work/file /work/late"), "kept\nlate\n");
}

fn chrono_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn tracing_line(s: &str) {
    eprintln!("{s}");
}
