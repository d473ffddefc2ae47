//! `GET /metrics` for real: a three-node cluster with tokens on is scraped by Debian's
//! Prometheus server (started here with a bearer token, killed at the end, pass or fail), and
//! Prometheus' own query API must show what the test did: every target up, one leader, the
//! schedule ticks that fired, the running sandbox, the exec and the call. The body also passes
//! `promtool check metrics`, and the endpoint refuses a scrape without a valid token.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

/// A child process killed and reaped when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of a PromQL query whose answer is one sample (e.g. a `sum`), if it has one.
fn query(prometheus: &str, promql: &str) -> Option<f64> {
    let (status, body) = http_get(prometheus, &format!("/api/v1/query?query={}", percent_encode(promql)), None).ok()?;
    assert_eq!(status, 200, "query {promql}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["data"]["result"].get(0)?["value"][1].as_str()?.parse().ok()
}

/// Waits until `promql` answers `want`.
fn wait_value(c: &TestCluster, prometheus: &str, promql: &str, want: f64) {
    let mut last = None;
    c.eventually(Duration::from_secs(30), &format!("{promql} == {want}"), || {
        last = query(prometheus, promql);
        last == Some(want)
    });
}

/// Starts `prometheus` scraping `targets` every second with `token`, in `dir`.
fn start_prometheus(dir: &std::path::Path, targets: &[String], token: &str) -> (Killed, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let list = targets.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: flotilla\n    \
             authorization:\n      type: Bearer\n      credentials: '{token}'\n    static_configs:\n      - targets: [{list}]\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("prometheus-data").display()))
        .arg(format!("--web.listen-address={addr}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start prometheus (scripts/test installs Debian's prometheus package)");
    (Killed(child), addr)
}

#[test]
fn prometheus_scrapes_every_node_and_sees_known_activity() {
    busybox_image();
    let (c, http, token) = with_tokens_and_http(3);

    // /metrics and /status need the token; /healthz stays open for load balancers.
    let (code, body) = http_get(&http[0], "/metrics", None).unwrap();
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("missing token"), "{body}");
    assert_eq!(http_get(&http[0], "/metrics", Some("flt_0123456789abcdef_00")).unwrap().0, 401);
    assert_eq!(http_get(&http[1], "/status", None).unwrap().0, 401);
    assert_eq!(http_get(&http[2], "/healthz", None).unwrap().0, 200);

    let (code, body) = http_get(&http[1], "/metrics", Some(&token)).unwrap();
    assert_eq!(code, 200, "{body}");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool (scripts/test installs Debian's prometheus package)");
    promtool.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}\n{body}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let (_prometheus, prom) = start_prometheus(c.dir.path(), &http, &token);
    c.eventually(Duration::from_secs(60), "Prometheus to report its three targets up", || {
        let Ok((200, body)) = http_get(&prom, "/api/v1/targets", None) else { return false };
        let v: Value = serde_json::from_str(&body).unwrap();
        let targets = v["data"]["activeTargets"].as_array().cloned().unwrap_or_default();
        targets.len() == 3 && targets.iter().all(|t| t["health"] == "up")
    });
    wait_value(&c, &prom, "sum(flotilla_raft_leader)", 1.0);
    wait_value(&c, &prom, "count(flotilla_raft_term)", 3.0);
    wait_value(&c, &prom, "sum(flotilla_schedule_fires_total)", 0.0);

    // A one-second schedule fires a few ticks, then is paused; the fires counters, summed
    // over the nodes, grow by exactly the ticks in the catalog.
    deploy_every_second(&c, "metrics", "tick");
    let ticks = || {
        let runs = c.json(1, &["runs", "ls", "--app", "metrics", "--scheduled", "--limit", "1000"]);
        runs.as_array().unwrap().iter().filter(|r| r["state"] != "skipped").count()
    };
    c.eventually(Duration::from_secs(30), "three ticks", || ticks() >= 3);
    assert!(c.cli(&c.endpoints(), &["schedule", "pause", "metrics/tick"]).status.success());
    let mut fired = ticks();
    c.eventually(Duration::from_secs(30), "the paused schedule to stop firing", || {
        std::thread::sleep(Duration::from_millis(1500));
        let now = ticks();
        std::mem::replace(&mut fired, now) == now
    });
    wait_value(&c, &prom, "sum(flotilla_schedule_fires_total)", fired as f64);
    wait_value(&c, &prom, "sum(flotilla_schedule_lateness_seconds_count)", fired as f64);

    // A sandbox and one exec in it.
    let sb = c.json(1, &["sandbox", "create", "--image", "flotilla/busybox", "--wait"]);
    let id = sb["id"].as_str().unwrap().to_string();
    let out = c.cli(&c.endpoints(), &["sandbox", "exec", &id, "--", "true"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_value(&c, &prom, "sum(flotilla_sandboxes{state=\"running\"})", 1.0);
    wait_value(&c, &prom, "sum(flotilla_exec_duration_seconds_count)", 1.0);
    // Its 256 MiB default (or whatever it asked) is reserved on its node.
    let used = query(&prom, "sum(flotilla_node_used{resource=\"memory_bytes\"})").unwrap();
    assert!(used > 0.0, "memory reserved: {used}");

    // A function call runs on a replica and is timed there.
    let out = c.cli(&c.endpoints(), &["fn", "call", "metrics/tick", "--input", "x"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    c.eventually(Duration::from_secs(30), "the call's duration in Prometheus", || {
        let q = "sum(flotilla_call_duration_seconds_count{app=\"metrics\",function=\"tick\",state=\"succeeded\"})";
        query(&prom, q).is_some_and(|n| n >= 1.0)
    });
    assert!(c.cli(&c.endpoints(), &["sandbox", "terminate", &id]).status.success());
    wait_value(&c, &prom, "sum(flotilla_sandboxes{state=\"running\"})", 0.0);
}
