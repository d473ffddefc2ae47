//! Events and logs as an operator reads them: `flotilla events` after a placement failure and
//! a skipped schedule tick (filtered by `--kind` and `--since`, listed and followed), and
//! `flotilla logs sandbox` of an entrypoint that prints lines (all, `--tail`, `-f`, through a
//! node that does not run it, an unknown id, and after the sandbox ended); `flotilla logs fn` of a worker process's and
//! an exec-mode call's stderr, gathered from every node, and of one call (`--call`).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

fn out(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn err(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `events -o json` with `args` against `ep`.
fn events(ep: &str, args: &[&str]) -> Vec<Value> {
    let o = cli(ep, &[&["-o", "json", "events"], args].concat());
    assert!(o.status.success(), "events {args:?}: {}", err(&o));
    serde_json::from_slice::<Value>(&o.stdout).unwrap().as_array().unwrap().clone()
}

/// A `flotilla` child process whose stdout lines are read on a thread; killed on drop.
struct Follow {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Follow {
    fn start(ep: &str, args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args([&["--endpoint", ep], args].concat())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run flotilla");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self { child, lines }
    }

    /// Lines read until one satisfies `want` (inclusive), or panics after `within`.
    fn until(&self, within: Duration, want: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let done = want(&l);
                    seen.push(l);
                    if done {
                        return seen;
                    }
                }
                Err(_) => panic!("no wanted line within {within:?}; got {seen:#?}"),
            }
        }
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn placement_failures_and_skipped_ticks_are_events_filtered_by_kind_and_since() {
    let (c, ep) = single();
    // Followed from the start, as an operator watching would.
    let follow = Follow::start(&ep, &["-o", "json", "events", "-f", "--kind", "placement"]);

    let o = cli(&ep, &["sandbox", "create", "--name", "huge", "--cpu", "64"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    // A retry with the same reason is coalesced into the same event.
    assert_eq!(cli(&ep, &["sandbox", "create", "--name", "huge", "--cpu", "64"]).status.code(), Some(1));
    let placement = |e: &Value| e["kind"] == "placement" && e["subject"] == "huge";
    let mut found = Vec::new();
    c.eventually(Duration::from_secs(10), "the placement event", || {
        found = events(&ep, &["--kind", "placement"]);
        found.iter().any(|e| placement(e) && e["repeats"] == 1)
    });
    let e = found.iter().find(|e| placement(e)).unwrap();
    let message = e["message"].as_str().unwrap();
    assert!(message.starts_with("a sandbox cannot be placed: ") && message.contains("CPU"), "{e}");
    assert!(e["time"].as_str().unwrap().ends_with("+00:00"), "{e}");
    assert_eq!(found.iter().filter(|e| placement(e)).count(), 1, "coalesced: {found:#?}");
    // The follow saw it too, as one JSON object per line.
    let seen = follow.until(Duration::from_secs(10), |l| l.contains("\"huge\""));
    let last: Value = serde_json::from_str(seen.last().unwrap()).unwrap();
    assert_eq!((last["kind"].as_str(), last["message"].as_str()), (Some("placement"), Some(message)));
    drop(follow);

    // --kind keeps other kinds out; the leader's own election is a `leader` event.
    assert!(events(&ep, &["--kind", "placement"]).iter().all(|e| e["kind"] == "placement"));
    let leaders = events(&ep, &["--kind", "leader"]);
    assert!(
        leaders.iter().any(|e| e["message"].as_str().unwrap().starts_with("node 1 became the leader")),
        "{leaders:#?}"
    );
    let o = cli(&ep, &["events", "--kind", "nonsense"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));

    // A schedule whose run is still live skips its next ticks (overlap = skip).
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("tick.toml");
    std::fs::write(
        &app,
        "name = \"tick\"\n[functions.slow]\nimage = \"flotilla/busybox\"\ncommand = [\"sleep\", \"300\"]\n\
         cpu = 0.1\nmax_containers = 1\ntimeout_s = 600\nschedule = { period = \"1s\" }\noverlap = \"skip\"\n",
    )
    .unwrap();
    let o = cli(&ep, &["app", "deploy", app.to_str().unwrap()]);
    assert!(o.status.success(), "deploy: {}", err(&o));
    let skipped = |e: &Value| {
        e["kind"] == "schedule"
            && e["subject"] == "tick/slow"
            && e["message"].as_str().unwrap().contains("overlap=skip")
    };
    c.eventually(Duration::from_secs(30), "a skipped tick event", || {
        events(&ep, &["--kind", "schedule"]).iter().any(skipped)
    });
    // Ticks skipped for the same live run are one event with a growing count.
    std::thread::sleep(Duration::from_secs(3));
    let repeats = || {
        let ticks = events(&ep, &["--kind", "schedule"]);
        assert_eq!(ticks.iter().filter(|e| skipped(e)).count(), 1, "{ticks:#?}");
        ticks.iter().find(|e| skipped(e)).unwrap()["repeats"].as_u64().unwrap()
    };
    let before = repeats();
    assert!(before >= 1, "{before}");
    c.eventually(Duration::from_secs(10), "the skipped tick's count to grow", || repeats() > before);
    // `app show` lists it with the app.
    let shown = c.json(1, &["app", "show", "tick"]);
    assert!(shown["events"].as_array().unwrap().iter().any(skipped), "{shown}");

    // --since: the placement failure is older than 2 s by now, not older than 10 min.
    assert!(events(&ep, &["--since", "10m"]).iter().any(placement));
    assert!(!events(&ep, &["--since", "2s"]).iter().any(placement));
    let o = cli(&ep, &["events", "--since", "ten minutes"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    cli(&ep, &["app", "rm", "tick"]);
}

#[test]
fn sandbox_logs_with_timestamps_tail_follow_from_any_node_and_not_found() {
    busybox_image();
    let mut c = TestCluster::start(3, &[]);
    c.wait_leader(Duration::from_secs(20));
    let script = "echo one; sleep 1; echo two >&2; sleep 1; echo three; sleep 300";
    let o = c.cli(&c.endpoints(), &["sandbox", "create", "--wait", "--", "sh", "-c", script]);
    assert!(o.status.success(), "create: {}", err(&o));
    let id = out(&o).trim().to_string();
    let node = c.json(1, &["sandbox", "show", &id])["node"].as_u64().unwrap();
    let here = c.nodes[&node].endpoint();
    let other = c.nodes.values().find(|n| n.id != node).unwrap().endpoint();

    // Followed through a node that does not run it: the lines as they come, stdout and stderr.
    let follow = Follow::start(&other, &["logs", "sandbox", &id, "-f"]);
    let seen = follow.until(Duration::from_secs(20), |l| l.ends_with(" stdout three"));
    let texts: Vec<(&str, &str)> =
        seen.iter().map(|l| l.split_once(' ').unwrap().1).map(|r| r.split_once(' ').unwrap()).collect();
    assert_eq!(texts, vec![("stdout", "one"), ("stderr", "two"), ("stdout", "three")], "{seen:#?}");
    let time = seen[0].split_once(' ').unwrap().0;
    assert!(time.starts_with("20") && time.ends_with('Z'), "RFC 3339 timestamp: {time}");
    drop(follow);

    // Listed, from the hosting node and from another one, the same; --tail keeps the last.
    for ep in [&here, &other] {
        let o = cli(ep, &["logs", "sandbox", &id]);
        assert_eq!(o.status.code(), Some(0), "{}", err(&o));
        let text = out(&o);
        let lines: Vec<&str> = text.lines().map(|l| l.split_once(' ').unwrap().1).collect();
        assert_eq!(lines, ["stdout one", "stderr two", "stdout three"], "via {ep}");
    }
    let o = cli(&other, &["-o", "json", "logs", "sandbox", &id, "--tail", "1"]);
    let tail: Vec<Value> = out(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(tail.len(), 1, "{}", out(&o));
    assert_eq!((tail[0]["text"].as_str(), tail[0]["node"].as_u64()), (Some("three"), Some(node)));

    // An unknown id is "not found", exit 1, on any node.
    let o = cli(&other, &["logs", "sandbox", "sb-nosuchsandbox0"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("not found"), "{}", err(&o));

    // Ended and its container removed, the sandbox's lines are still there (kept by its node).
    let o = c.cli(&here, &["sandbox", "terminate", &id]);
    assert!(o.status.success(), "{}", err(&o));
    c.eventually(Duration::from_secs(20), "the container removed", || {
        docker(&["ps", "-aq", "--filter", &format!("label=flotilla.sandbox={id}")]).trim().is_empty()
    });
    let o = cli(&other, &["logs", "sandbox", &id]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let text = out(&o);
    let lines: Vec<&str> = text.lines().map(|l| l.split_once(' ').unwrap().1).collect();
    assert_eq!(lines, ["stdout one", "stderr two", "stdout three"]);
}

#[test]
fn function_logs_hold_worker_and_call_stderr_from_every_node_and_one_calls_alone() {
    busybox_image();
    let mut c = TestCluster::start(3, &[]);
    c.wait_leader(Duration::from_secs(20));
    let app = c.dir.path().join("chatty.toml");
    std::fs::write(
        &app,
        r#"name = "chatty"
[functions.worker]
image = "flotilla/busybox"
command = ["sh", "-c", "echo hello from the worker >&2; sleep 300"]
mode = "worker"
min_containers = 1
cpu = 0.1
[functions.exec]
image = "flotilla/busybox"
command = ["sh", "-c", "echo working on $(cat) >&2; echo done"]
cpu = 0.1
"#,
    )
    .unwrap();
    let o = c.cli(&c.endpoints(), &["app", "deploy", app.to_str().unwrap()]);
    assert!(o.status.success(), "deploy: {}", err(&o));
    // Asked through every node in turn: each gathers the lines from the node with the replica.
    let eps: Vec<String> = c.nodes.values().map(|n| n.endpoint()).collect();
    for ep in &eps {
        c.eventually(Duration::from_secs(60), "the worker's stderr line", || {
            let o = cli(ep, &["logs", "fn", "chatty/worker"]);
            o.status.success() && out(&o).lines().any(|l| l.ends_with(" stderr hello from the worker"))
        });
    }
    let o = cli(&eps[0], &["fn", "call", "chatty/exec", "--input", "row 7"]);
    assert_eq!((o.status.code(), out(&o).as_str()), (Some(0), "done\n"), "{}", err(&o));
    let o = cli(&eps[1], &["-o", "json", "logs", "fn", "chatty/exec"]);
    let lines: Vec<Value> = out(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.iter().any(|l| l["text"] == "working on row 7" && l["stream"] == "stderr"), "{lines:#?}");
    assert!(lines.iter().all(|l| l["source"].as_str().unwrap().starts_with("rp-")), "{lines:#?}");

    // Followed: a new call's line arrives while the follow runs.
    let follow = Follow::start(&eps[2], &["logs", "fn", "chatty/exec", "-f", "--tail", "0"]);
    std::thread::sleep(Duration::from_secs(1));
    assert!(cli(&eps[0], &["fn", "call", "chatty/exec", "--input", "row 8"]).status.success());
    follow.until(Duration::from_secs(20), |l| l.ends_with(" stderr working on row 8"));
    drop(follow);

    // One call's lines: two spawned calls, each asked for by its id through another node.
    let spawn = |input: &str| {
        let o = cli(&eps[0], &["fn", "spawn", "chatty/exec", "--input", input]);
        assert!(o.status.success(), "spawn: {}", err(&o));
        let id = out(&o).trim().to_string();
        let o = cli(&eps[0], &["call", "get", &id, "--timeout", "60"]);
        assert_eq!(o.status.code(), Some(0), "call {id}: {}", err(&o));
        id
    };
    let (nine, ten) = (spawn("row 9"), spawn("row 10"));
    for (id, text) in [(&nine, "working on row 9"), (&ten, "working on row 10")] {
        let o = cli(&eps[2], &["-o", "json", "logs", "fn", "chatty/exec", "--call", id]);
        assert_eq!(o.status.code(), Some(0), "{}", err(&o));
        let lines: Vec<Value> = out(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let texts: Vec<&str> = lines.iter().map(|l| l["text"].as_str().unwrap()).collect();
        assert_eq!(texts, [text], "only the lines of call {id}");
        assert_eq!(lines[0]["call_ids"], serde_json::json!([id]));
    }
    // A call of another function is bad input; a call that never existed is not found.
    let o = cli(&eps[0], &["logs", "fn", "chatty/worker", "--call", &nine]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("call_id: call") && err(&o).contains("chatty/exec"), "{}", err(&o));
    let o = cli(&eps[0], &["logs", "fn", "chatty/exec", "--call", "fc-nosuchcall"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("not found"), "{}", err(&o));

    // Unknown functions are not found; a malformed name is bad input.
    let o = cli(&eps[0], &["logs", "fn", "chatty/nope"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("not found"), "{}", err(&o));
    assert_eq!(cli(&eps[0], &["logs", "fn", "chatty"]).status.code(), Some(2));
    c.cli(&eps[0], &["app", "rm", "chatty"]);
}
