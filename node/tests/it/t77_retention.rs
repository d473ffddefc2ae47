//! Retention: with a short window (`--retention-s 2`), a finished call, finished runs and a
//! terminated sandbox leave the catalog, `call get` of the compacted call says it expired
//! (and an id that never existed still says not found), a schedule keeps at most its
//! `runs_kept` final runs, while a running sandbox and a live schedule are untouched.

use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

const APP: &str = r#"name = "ret"
[functions.job]
image = "flotilla/busybox"
command = ["sh", "-c", "echo done"]
min_containers = 1
[functions.tick]
image = "flotilla/busybox"
command = ["sh", "-c", "echo tick"]
schedule = { period = "1s" }
runs_kept = 1
min_containers = 1
"#;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The number of final (not queued or running) scheduled runs of `ret/tick`, and the newest
/// tick of any of its runs (Unix ms).
fn tick_runs(c: &TestCluster) -> (usize, i64) {
    let list = c.json(1, &["runs", "ls", "--app", "ret", "--function", "tick", "--scheduled", "--limit", "100000"]);
    let all = list.as_array().unwrap();
    let live = all.iter().filter(|r| r["state"] == "queued" || r["state"] == "running").count();
    let tick = |r: &Value| chrono::DateTime::parse_from_rfc3339(r["scheduled_at"].as_str().unwrap()).unwrap();
    let newest = all.iter().map(|r| tick(r).timestamp_millis()).max().unwrap_or(0);
    (all.len() - live, newest)
}

#[test]
fn final_records_expire_after_the_window_and_live_ones_stay() {
    busybox_image();
    let mut c = TestCluster::start(1, &["--retention-s", "2"]);
    c.wait_leader(Duration::from_secs(20));
    let ep = c.nodes[&1].endpoint();
    let spec = c.dir.path().join("ret.toml");
    std::fs::write(&spec, APP).unwrap();
    let o = cli(&ep, &["app", "deploy", spec.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));

    // A finished call, a terminated sandbox and a running one.
    let o = cli(&ep, &["fn", "spawn", "ret/job"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let call = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let done = c.json(1, &["call", "get", &call, "--timeout", "60"]);
    assert_eq!(done["state"], "succeeded", "{done}");
    let sandbox = |args: &[&str]| {
        let o = cli(&ep, &[&["sandbox", "create", "--wait"], args].concat());
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let ended = sandbox(&[]);
    let running = sandbox(&["--timeout", "0"]);
    assert!(cli(&ep, &["sandbox", "terminate", &ended]).status.success());
    let (ended_info, code) = wait_sandbox(&ep, &ended);
    assert_eq!(ended_info["state"], "terminated", "{ended_info}");
    assert_eq!(code, Some(137), "{ended_info}");

    // The call expires: `call get` exits 1 saying so.
    c.eventually(Duration::from_secs(30), "the finished call to expire", || {
        let o = cli(&ep, &["call", "get", &call]);
        o.status.code() == Some(1) && stderr(&o).contains("expired")
    });
    let o = cli(&ep, &["-o", "json", "call", "get", &call]);
    let e: Value = serde_json::from_slice(&o.stderr).unwrap();
    assert_eq!(e["code"], "not_found", "{e}");
    // An id that never existed is not found, not expired: one made an hour from now, and
    // one without a time.
    let future = format!("fc-{:012x}{:012x}", chrono::Utc::now().timestamp_millis() + 3_600_000, 7);
    for id in [future.as_str(), "fc-doesnotexist"] {
        let o = cli(&ep, &["call", "get", id]);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("not found") && !stderr(&o).contains("expired"), "{}", stderr(&o));
    }

    // The terminated sandbox is gone; the running one is untouched.
    c.eventually(Duration::from_secs(30), "the terminated sandbox to be compacted", || {
        cli(&ep, &["sandbox", "show", &ended]).status.code() == Some(1)
    });
    assert_eq!(c.json(1, &["sandbox", "show", &running])["state"], "running");

    // The schedule is live and keeps firing, with at most runs_kept = 1 final run kept (two
    // while a compaction is due: the newest may have ended since the last one).
    let (_, newest_before) = tick_runs(&c);
    std::thread::sleep(Duration::from_secs(3));
    for _ in 0..5 {
        let (final_runs, _) = tick_runs(&c);
        assert!(final_runs <= 2, "{final_runs} final runs kept");
        std::thread::sleep(Duration::from_millis(700));
    }
    let (_, newest_after) = tick_runs(&c);
    assert!(newest_after > newest_before, "the schedule stopped firing");
    assert!(c.nodes[&1].log_text().contains("compacted final records"));
    assert!(cli(&ep, &["sandbox", "terminate", &running]).status.success());
}
