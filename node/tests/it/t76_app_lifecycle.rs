//! An app's life as an operator sees it: `app rm` leaves nothing behind, a stopped app's
//! name deploys again, and a function whose replica no node can take says why, at once and
//! wherever one looks (`fn call`, `fn spawn`, `app show`).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;
use crate::t75_functions::{deploy_toml, err, out, replica_containers};

/// One node, up and registered, started with `extra` arguments.
fn one_node(extra: &[&str]) -> TestCluster {
    busybox_image();
    let mut c = TestCluster::start(1, extra);
    c.wait_leader(Duration::from_secs(20));
    c.eventually(Duration::from_secs(20), "the node registered", || {
        let s = c.json(1, &["cluster", "status"]);
        s["nodes"][0]["cpus"].as_u64().unwrap_or(0) > 0
    });
    c
}

/// The entry of function `f` in `app show -o json`.
fn function_status(c: &TestCluster, app: &str, f: &str) -> Value {
    let shown = c.json(1, &["app", "show", app]);
    shown["functions"].as_array().unwrap().iter().find(|x| x["function"] == f).cloned().unwrap()
}

#[test]
fn app_rm_leaves_nothing_behind_and_a_stopped_app_deploys_again() {
    let c = one_node(&[]);
    let ep = c.nodes[&1].endpoint();
    let spec = r#"name = "gone"
[functions.echo]
image = "flotilla/busybox"
command = ["cat"]
min_containers = 1
[functions.tick]
image = "flotilla/busybox"
command = ["true"]
schedule = { period = "1h" }
"#;
    deploy_toml(&c, "gone", spec);
    let o = cli(&ep, &["fn", "call", "gone/echo", "--input", "hi"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o), "hi");
    assert!(!replica_containers(&c).is_empty(), "a replica container runs before the rm");
    let schedules = c.json(1, &["schedule", "ls"]);
    assert!(schedules.as_array().unwrap().iter().any(|s| s["app"] == "gone"), "{schedules}");

    let o = cli(&ep, &["app", "rm", "gone"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(!app_names(&c, 1).contains(&"gone".to_string()));
    let schedules = c.json(1, &["schedule", "ls"]);
    assert!(!schedules.as_array().unwrap().iter().any(|s| s["app"] == "gone"), "{schedules}");
    c.eventually(Duration::from_secs(30), "the app's replica containers are removed", || {
        replica_containers(&c).is_empty()
    });
    // Removing it again, or calling it, names it as not found.
    let o = cli(&ep, &["app", "rm", "gone"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("\"gone\" not found"), "{}", err(&o));

    // Stop, then deploy the same name again: a new version that runs.
    deploy_toml(&c, "gone", spec);
    let o = cli(&ep, &["app", "stop", "gone"]);
    assert!(o.status.success(), "{}", err(&o));
    let o = cli(&ep, &["fn", "call", "gone/echo", "--input", "x"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("is stopped (deploy it again to run it)"), "{}", err(&o));
    deploy_toml(&c, "gone", spec);
    let app = c.json(1, &["app", "show", "gone"]);
    assert_eq!((app["version"].as_u64(), app["state"].as_str()), (Some(2), Some("deployed")), "{app}");
    let o = cli(&ep, &["fn", "call", "gone/echo", "--input", "again"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o), "again");
}

#[test]
fn a_function_no_node_can_take_says_why() {
    let c = one_node(&["--gpus", "fake:A100:1"]);
    let ep = c.nodes[&1].endpoint();
    let status = c.json(1, &["cluster", "status"]);
    let offered = status["nodes"][0]["cpus"].as_u64().unwrap() as f64 * 4.0;
    deploy_toml(
        &c,
        "starved",
        r#"name = "starved"
[functions.gpu]
image = "flotilla/busybox"
command = ["cat"]
gpu = "H100:1"
[functions.busy]
image = "flotilla/busybox"
command = ["cat"]
cpu = 2.0
"#,
    );
    // No node has an H100: the call and the spawn fail at once, with the reason.
    let t = Instant::now();
    let o = cli(&ep, &["fn", "call", "starved/gpu", "--input", "x"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains("no node can ever take it") && err(&o).contains("no node has 1 free H100 GPUs: node 1 has 0"),
        "{}",
        err(&o)
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    let o = cli(&ep, &["fn", "spawn", "starved/gpu", "--input", "x"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("H100"), "{}", err(&o));

    // Sandboxes hold every offered CPU: a replica cannot be placed now.
    let sandboxes: Vec<String> = (0..(offered / 2.0) as usize)
        .map(|_| {
            let o =
                c.cli(&ep, &["sandbox", "create", "--image", "flotilla/busybox", "--cpu", "2", "--", "sleep", "600"]);
            assert!(o.status.success(), "{}", err(&o));
            out(&o).trim().to_string()
        })
        .collect();
    let reason = format!("no node has 2 free CPU: node 1 has 0.0 of {offered:.1} left");
    let o = cli(&ep, &["fn", "spawn", "starved/busy", "--input", "queued"]);
    assert!(o.status.success(), "{}", err(&o));
    let call_id = out(&o).trim().to_string();
    c.eventually(Duration::from_secs(20), "app show gives the pending reason", || {
        function_status(&c, "starved", "busy")["pending"]["reason"] == reason.as_str()
    });
    let text = cli(&ep, &["app", "show", "starved"]);
    assert!(out(&text).contains("pending since") && out(&text).contains(&reason), "{}", out(&text));
    let o = cli(&ep, &["fn", "call", "starved/busy", "--input", "x", "--timeout", "3"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains(&reason), "{}", err(&o));
    assert!(c.nodes[&1].log_text().contains("replica cannot be placed"), "the leader logs the reason");
    let events = c.json(1, &["events", "--kind", "placement"]);
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["subject"] == "starved/busy" && e["message"].as_str().is_some_and(|m| m.contains(&reason))),
        "a placement event gives the reason: {events}"
    );

    // Once the sandboxes end, the replica is placed, the queued call runs and the reason goes.
    for id in &sandboxes {
        let o = c.cli(&ep, &["sandbox", "terminate", id]);
        assert!(o.status.success(), "{}", err(&o));
    }
    let o = cli(&ep, &["call", "get", &call_id, "--timeout", "60"]);
    assert!(o.status.success(), "{}", err(&o));
    c.eventually(Duration::from_secs(20), "the pending reason is cleared", || {
        function_status(&c, "starved", "busy")["pending"].is_null()
    });
}
