//! The CLI as an operator meets it: retries through a node that dies mid-request, exit
//! codes, errors as JSON, a closed stdout, values it refuses, completions and man pages.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

fn err(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().expect("kill").success();
    assert!(ok, "kill -{sig} {pid}");
}

/// Whether process `pid` has an established TCP connection to `addr` (`host:port`).
fn connected(pid: u32, addr: &str) -> bool {
    let port = addr.rsplit(':').next().unwrap();
    let o = Command::new("ss").args(["-Htnp", "state", "established", "dport", &format!(":{port}")]).output();
    o.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&format!("pid={pid},")))
}

#[test]
fn a_node_killed_mid_request_still_gives_one_result() {
    busybox_image();
    let mut c = TestCluster::start(3, &[]);
    let leader = c.wait_leader(Duration::from_secs(20));
    let others: Vec<u64> = c.nodes.keys().copied().filter(|id| *id != leader).collect();
    let (proxy, third) = (others[0], others[1]);
    // The CLI tries the proxying follower first, then the others.
    let endpoints = [proxy, third, leader].map(|id| c.nodes[&id].endpoint()).join(",");
    tracing::info!("--- freeze the leader, so the follower holds the forwarded create");
    let leader_pid = c.nodes[&leader].pid().unwrap();
    signal(leader_pid, "STOP");
    let child = Command::new(BIN)
        .args(["--endpoint", &endpoints, "-o", "json", "sandbox", "create"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !connected(child.id(), &c.nodes[&proxy].addr) {
        assert!(Instant::now() < deadline, "the CLI never connected to node {proxy}");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Let the request reach the follower and its forward reach the frozen leader.
    std::thread::sleep(Duration::from_millis(200));
    tracing::info!("--- kill the follower mid-request, thaw the leader");
    c.node(proxy).kill();
    signal(leader_pid, "CONT");
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let created: Value = serde_json::from_slice(&o.stdout).unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    // The catalog holds exactly that one sandbox, however often the create was tried.
    let ids = || -> Vec<String> {
        let ls = c.json(third, &["sandbox", "ls", "--all"]);
        ls.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(ids(), std::slice::from_ref(&id));
    // A create the frozen leader still had queued is deduplicated too, once it has run.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(ids(), [id]);
}

#[test]
fn unreachable_nodes_are_named_never_raw_transport_errors() {
    let ep = format!("http://127.0.0.1:{}", free_port());
    let o = cli(&ep, &["cluster", "status"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains(&format!("unavailable: node {ep} unreachable")), "{}", err(&o));
    assert!(!err(&o).contains("transport error"), "{}", err(&o));
    let o = cli(&ep, &["-o", "json", "cluster", "status"]);
    let e: Value = serde_json::from_slice(&o.stderr).unwrap();
    assert_eq!(e["code"], "unavailable", "{e}");
}

#[test]
fn errors_exit_codes_and_names() {
    let mut c = TestCluster::start(1, &[]);
    c.wait_leader(Duration::from_secs(20));
    let ep = c.nodes[&1].endpoint();
    // -o json: one JSON object on stderr with a code scripts can branch on.
    let o = cli(&ep, &["-o", "json", "sandbox", "show", "sb-nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
    let e: Value = serde_json::from_slice(&o.stderr).unwrap_or_else(|e| panic!("{e}: {}", err(&o)));
    assert_eq!(e["code"], "not_found", "{e}");
    assert!(e["error"].as_str().unwrap().contains("sb-nope"), "{e}");
    let spec = c.dir.path().join("bad.toml");
    std::fs::write(&spec, "name = \"x\"\n[functions.a]\nimage = \"i\"\ncommand = [\"a\"]\nbogus = 1\n").unwrap();
    let o = cli(&ep, &["-o", "json", "app", "deploy", spec.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let e: Value = serde_json::from_slice(&o.stderr).unwrap();
    assert_eq!(e["code"], "invalid_argument", "{e}");
    // Nonsense values are refused before anything is sent, naming the flag.
    for (args, flag) in [
        (&["sandbox", "create", "--cpu", "0"][..], "--cpu"),
        (&["sandbox", "create", "--cpu", "NaN"][..], "--cpu"),
        (&["sandbox", "create", "--memory", "0"][..], "--memory"),
        (&["sandbox", "create", "--timeout=-1"][..], "--timeout"),
        (&["sandbox", "create", "--runtime", "kata"][..], "--runtime"),
        (&["runs", "ls", "--limit", "0"][..], "--limit"),
    ] {
        let o = cli(&ep, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", err(&o));
        assert!(err(&o).contains(flag), "{args:?}: {}", err(&o));
    }
    assert!(c.json(1, &["sandbox", "ls", "--all"]).as_array().unwrap().is_empty());
    // `app ls` like every other list; `app list` stays.
    assert!(c.json(1, &["app", "ls"]).as_array().unwrap().is_empty());
    assert!(c.json(1, &["app", "list"]).as_array().unwrap().is_empty());
}

#[test]
fn a_closed_stdout_ends_the_cli_quietly() {
    let mut c = TestCluster::start(1, &[]);
    c.wait_leader(Duration::from_secs(20));
    let ep = c.nodes[&1].endpoint();
    for args in [&["-o", "json", "runs", "ls", "--limit", "1000"][..], &["cluster", "status"][..]] {
        let mut child = Command::new(BIN)
            .args(["--endpoint", &ep])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before the CLI prints, as `| head -0` would.
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(141), "{args:?}: {}", err(&o));
        assert!(!err(&o).contains("panicked"), "{args:?}: {}", err(&o));
    }
}

#[test]
fn sandbox_wait_exit_codes_and_timeout_zero() {
    let (c, ep) = single();
    // --timeout 0 means no timeout (it used to end the sandbox after 1 s).
    let o = cli(&ep, &["sandbox", "create", "--wait", "--timeout", "0"]);
    assert!(o.status.success(), "{}", err(&o));
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    std::thread::sleep(Duration::from_secs(3));
    let s = c.json(1, &["sandbox", "show", &id]);
    assert_eq!((s["state"].as_str(), s["timeout_s"].as_u64()), (Some("running"), Some(0)), "{s}");
    // Still running at --timeout: printed, exit 124 like timeout(1).
    let o = cli(&ep, &["-o", "json", "sandbox", "wait", &id, "--timeout", "1"]);
    assert_eq!(o.status.code(), Some(124), "{}", err(&o));
    assert!(c.cli(&ep, &["sandbox", "terminate", &id]).status.success());
    let (w, code) = wait_sandbox(&ep, &id);
    assert_eq!((w["exit_code"].as_i64(), code), (Some(137), Some(137)), "{w}");
}

#[test]
fn call_get_exits_1_when_the_call_failed() {
    let (c, ep) = single();
    let spec = c.dir.path().join("fails.toml");
    std::fs::write(
        &spec,
        "name = \"fails\"\n[functions.f]\nimage = \"flotilla/busybox\"\ncommand = [\"sh\", \"-c\", \"exit 3\"]\nretries = 0\n",
    )
    .unwrap();
    assert!(cli(&ep, &["app", "deploy", spec.to_str().unwrap()]).status.success());
    let o = cli(&ep, &["fn", "spawn", "fails/f"]);
    assert!(o.status.success(), "{}", err(&o));
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let o = cli(&ep, &["-o", "json", "call", "get", &id, "--timeout", "60"]);
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((r["state"].as_str(), o.status.code()), (Some("failed"), Some(1)), "{r}");
}

#[test]
fn completions_and_man_pages() {
    for shell in ["bash", "zsh", "fish"] {
        let o = Command::new(BIN).args(["completions", shell]).output().unwrap();
        assert!(o.status.success(), "{shell}: {}", err(&o));
        let script = String::from_utf8_lossy(&o.stdout);
        assert!(script.contains("flotilla") && script.contains("snapshot") && script.contains("endpoint"), "{shell}");
    }
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(BIN).arg("man").arg(dir.path().join("man1")).output().unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let page = std::fs::read_to_string(dir.path().join("man1/flotilla-sandbox-create.1")).unwrap();
    assert!(page.starts_with(".ie") || page.contains(".TH"), "{page}");
    assert!(page.contains("memory"), "{page}");
    assert!(dir.path().join("man1/flotilla.1").exists());
    let o = Command::new(BIN).args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
}
