//! Functions on the real Docker engine: exec and worker mode, sync calls through every node,
//! durable calls that survive their node, autoscaling, concurrency, timeouts and retries,
//! redeploys under load, and bad input.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

pub(crate) fn out(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
pub(crate) fn err(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes `toml` as an app spec in the cluster's dir and deploys it through node 1.
pub(crate) fn deploy_toml(c: &TestCluster, name: &str, toml: &str) {
    let path = c.dir.path().join(format!("{name}.toml"));
    std::fs::write(&path, toml).unwrap();
    let o = c.cli(&c.nodes[&1].endpoint(), &["app", "deploy", path.to_str().unwrap()]);
    assert!(o.status.success(), "deploy {name}: {}", err(&o));
}

fn call(ep: &str, target: &str, input: &str) -> std::process::Output {
    cli(ep, &["fn", "call", target, "--input", input])
}

/// Replicas of `app`'s function `f`, as node 1 reports them.
fn replicas(c: &TestCluster, app: &str, f: &str) -> Vec<Value> {
    replicas_via(c, 1, app, f)
}

/// Replicas of `app`'s function `f`, as node `id` reports them.
fn replicas_via(c: &TestCluster, id: u64, app: &str, f: &str) -> Vec<Value> {
    c.json(id, &["app", "show", app])["functions"]
        .as_array()
        .unwrap()
        .clone()
        .into_iter()
        .find(|x| x["function"] == f)
        .map(|x| x["replicas"].as_array().unwrap().clone())
        .unwrap_or_default()
}

/// Three nodes, each up and registered (so placement sees all of them from the first replica).
fn three_nodes(extra: &[&str]) -> TestCluster {
    busybox_image();
    let mut c = TestCluster::start(3, extra);
    c.wait_leader(Duration::from_secs(20));
    c.eventually(Duration::from_secs(20), "every node registered and up", || {
        let s = c.json(1, &["cluster", "status"]);
        let nodes = s["nodes"].as_array().unwrap();
        nodes.len() == 3 && nodes.iter().all(|n| n["status"] == "up" && n["cpus"].as_u64().unwrap_or(0) > 0)
    });
    c
}

#[test]
fn exec_mode_calls_through_every_node_and_bad_input() {
    let c = three_nodes(&[]);
    deploy_toml(
        &c,
        "text",
        r#"name = "text"
[functions.upper]
image = "flotilla/busybox"
command = ["sh", "-c", "tr a-z A-Z"]
[functions.broken]
image = "flotilla/busybox"
command = ["sh", "-c", "echo 'no such table' >&2; exit 3"]
[functions.ghost]
image = "flotilla/nope"
command = ["true"]
"#,
    );
    for id in [1, 2, 3] {
        let ep = c.nodes[&id].endpoint();
        let o = call(&ep, "text/upper", &format!("hello from {id}"));
        assert!(o.status.success(), "call via node {id}: {}", err(&o));
        assert_eq!(out(&o), format!("HELLO FROM {id}"));
    }
    let ep = c.nodes[&2].endpoint();
    // A failing function: exit 1, with its exit code and stderr in the message.
    let o = call(&ep, "text/broken", "x");
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("exit 3: no such table"), "{}", err(&o));
    // Unknown function and app are named.
    let o = call(&ep, "text/nope", "x");
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("text/nope") && err(&o).contains("not found"), "{}", err(&o));
    let o = call(&ep, "ghost/upper", "x");
    assert!(err(&o).contains("ghost") && err(&o).contains("not found"), "{}", err(&o));
    // An image no node has: the call fails with the reason instead of waiting out its deadline.
    let t = Instant::now();
    let o = call(&ep, "text/ghost", "x");
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("image flotilla/nope not found on node"), "{}", err(&o));
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    let o = cli(&ep, &["fn", "call", "no-slash", "--input", "x"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    // Oversized input: rejected with the limit, before anything runs.
    let big = c.dir.path().join("big");
    std::fs::write(&big, vec![b'a'; (4 << 20) + 1]).unwrap();
    let o = cli(&ep, &["fn", "call", "text/upper", "--input-file", big.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("input") && err(&o).contains("4194304"), "{}", err(&o));
    // Exactly 4 MiB in and out works.
    std::fs::write(&big, vec![b'a'; 4 << 20]).unwrap();
    let o = cli(&ep, &["fn", "call", "text/upper", "--input-file", big.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(o.stdout.len(), 4 << 20);
    assert!(o.stdout.iter().all(|b| *b == b'A'));
}

/// `target/debug/examples/upper_worker`, built with the workspace's test targets.
fn rust_worker() -> PathBuf {
    let bin = Path::new(BIN).parent().unwrap().join("examples/upper_worker");
    assert!(bin.is_file(), "{} missing: build with `cargo build --workspace --all-targets`", bin.display());
    bin
}

/// An image from flotilla/busybox with `files` copied in at their paths (host glibc
/// libraries included for a dynamically linked binary).
fn build_image(dir: &Path, name: &str, files: &[(&Path, &str)]) {
    let ctx = dir.join(format!("ctx-{}", name.replace('/', "-")));
    let mut dockerfile = String::from("FROM flotilla/busybox\n");
    for (i, (src, dst)) in files.iter().enumerate() {
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::copy(src, ctx.join(format!("f{i}"))).unwrap();
        dockerfile.push_str(&format!("COPY f{i} {dst}\n"));
    }
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    let o = Command::new("docker")
        .args(["build", "-q", "-t", name, ctx.to_str().unwrap()])
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    assert!(o.status.success(), "docker build {name}: {}", err(&o));
}

#[test]
fn worker_mode_with_the_rust_helper() {
    let c = three_nodes(&[]);
    let bin = rust_worker();
    let libs = [
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/lib/x86_64-linux-gnu/libgcc_s.so.1",
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/lib64/ld-linux-x86-64.so.2",
    ];
    let mut files: Vec<(&Path, &str)> = vec![(bin.as_path(), "/app/upper_worker")];
    files.extend(libs.iter().map(|l| (Path::new(l), *l)));
    build_image(c.dir.path(), "flotilla-test/rust-worker", &files);
    deploy_toml(
        &c,
        "rw",
        r#"name = "rw"
[functions.upper]
image = "flotilla-test/rust-worker"
command = ["/app/upper_worker"]
mode = "worker"
concurrency = 4
[functions.garbage]
image = "flotilla/busybox"
command = ["sh", "-c", "echo this is not a frame; sleep 60"]
mode = "worker"
"#,
    );
    let ep = c.nodes[&3].endpoint();
    let first = out(&call(&ep, "rw/upper", "abc"));
    assert!(first.starts_with("ABC (pid "), "{first}");
    // The process is started once per replica: every input sees the same pid.
    for i in 0..5 {
        assert_eq!(out(&call(&ep, "rw/upper", "abc")), first, "input {i}");
    }
    let o = call(&ep, "rw/upper", "fail:bad row 7");
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("bad row 7"), "{}", err(&o));
    assert_eq!(out(&call(&ep, "rw/upper", "still up")), first.replace("ABC", "STILL UP"));
    // A worker that prints something other than frames fails its input, saying why.
    let o = call(&ep, "rw/garbage", "x");
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("malformed worker output"), "{}", err(&o));
    let _ = Command::new("docker").args(["rmi", "-f", "flotilla-test/rust-worker"]).output();
}

#[test]
fn worker_mode_with_the_python_helper() {
    let c = three_nodes(&[]);
    let o = Command::new(BIN).args(["image", "build-base", "python"]).output().unwrap();
    assert!(o.status.success(), "build-base python: {}", err(&o));
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk/python");
    let ctx = c.dir.path().join("pyctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::copy(sdk.join("flotilla_worker.py"), ctx.join("flotilla_worker.py")).unwrap();
    std::fs::copy(sdk.join("examples/wordcount.py"), ctx.join("wordcount.py")).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM flotilla/python\nCOPY flotilla_worker.py wordcount.py /app/\n")
        .unwrap();
    let o = Command::new("docker")
        .args(["build", "-q", "-t", "flotilla-test/pyworker", ctx.to_str().unwrap()])
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    assert!(o.status.success(), "docker build: {}", err(&o));
    deploy_toml(
        &c,
        "py",
        r#"name = "py"
[functions.count]
image = "flotilla-test/pyworker"
command = ["python3", "/app/wordcount.py"]
mode = "worker"
"#,
    );
    let ep = c.nodes[&1].endpoint();
    let first = out(&call(&ep, "py/count", "one two three"));
    assert!(first.starts_with("3 words (worker pid "), "{first}");
    assert_eq!(out(&call(&ep, "py/count", "a b c")), first, "the same process serves every input");
    let o = call(&ep, "py/count", "fail:no model");
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("ValueError: no model"), "{}", err(&o));
    let _ = Command::new("docker").args(["rmi", "-f", "flotilla-test/pyworker"]).output();
}

/// The call's record as JSON.
fn call_record(c: &TestCluster, id: &str) -> Value {
    c.json(1, &["call", "get", id])
}

#[test]
fn spawned_calls_complete_elsewhere_when_their_node_dies() {
    let mut c = three_nodes(&[]);
    deploy_toml(
        &c,
        "jobs",
        r#"name = "jobs"
[functions.slow]
image = "flotilla/busybox"
command = ["sh", "-c", "sleep 4; cat"]
min_containers = 3
max_containers = 3
"#,
    );
    c.eventually(Duration::from_secs(30), "a ready replica on every node", || {
        let r = replicas(&c, "jobs", "slow");
        let mut nodes: Vec<u64> =
            r.iter().filter(|r| r["state"] == "ready").map(|r| r["node"].as_u64().unwrap()).collect();
        nodes.sort_unstable();
        nodes == [1, 2, 3]
    });
    let ep = c.nodes[&1].endpoint();
    let ids: Vec<String> = (0..3)
        .map(|i| {
            let o = cli(&ep, &["fn", "spawn", "jobs/slow", "--input", &format!("job {i}")]);
            assert!(o.status.success(), "{}", err(&o));
            out(&o).trim().to_string()
        })
        .collect();
    let leader = c.wait_leader(Duration::from_secs(10));
    let mut victim = None;
    c.eventually(Duration::from_secs(20), "a spawned call running on a follower", || {
        victim = ids.iter().find_map(|id| {
            let r = call_record(&c, id);
            let node = r["node"].as_u64()?;
            (r["state"] == "running" && node != leader).then(|| (id.clone(), node))
        });
        victim.is_some()
    });
    let (lost, node) = victim.unwrap();
    c.node(node).kill();
    // Its containers die with it, as when a machine goes down.
    let instance = std::fs::read_to_string(c.dir.path().join(format!("n{node}/instance_id"))).unwrap();
    for id in containers(&format!("flotilla.instance={}", instance.trim())) {
        docker(&["rm", "-f", &id]);
    }
    let ep = c.nodes[&leader].endpoint();
    for id in &ids {
        let o = cli(&ep, &["-o", "json", "call", "get", id, "--timeout", "60"]);
        assert!(o.status.success(), "{}", err(&o));
        let r: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(r["state"], "succeeded", "{r}");
        assert!(r["output"].as_str().unwrap().starts_with("job "), "{r}");
        if *id == lost {
            assert_eq!(r["attempt"], 2, "the lost attempt is counted: {r}");
            assert_ne!(r["node"].as_u64(), Some(node), "{r}");
        }
    }
}

#[test]
fn autoscaling_up_under_load_and_back_down() {
    let c = three_nodes(&[]);
    deploy_toml(
        &c,
        "burst",
        r#"name = "burst"
[functions.work]
image = "flotilla/busybox"
command = ["sh", "-c", "sleep 2; cat"]
min_containers = 0
max_containers = 3
concurrency = 1
scaledown_window_s = 3
"#,
    );
    assert!(replicas(&c, "burst", "work").is_empty(), "scaled to zero before any call");
    let ep = c.nodes[&2].endpoint();
    let peak = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (peak, done, ep1) = (peak.clone(), done.clone(), c.nodes[&1].endpoint());
        std::thread::spawn(move || {
            let mut saw_waiting = false;
            while !done.load(Ordering::SeqCst) {
                let o = cli(&ep1, &["-o", "json", "app", "show", "burst"]);
                if let Ok(v) = serde_json::from_slice::<Value>(&o.stdout) {
                    let f = &v["functions"][0];
                    peak.fetch_max(f["replicas"].as_array().map_or(0, Vec::len), Ordering::SeqCst);
                    saw_waiting |= f["waiting"].as_u64().unwrap_or(0) > 0;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            saw_waiting
        })
    };
    let calls: Vec<_> = (0..6)
        .map(|i| {
            let ep = ep.clone();
            std::thread::spawn(move || call(&ep, "burst/work", &format!("in{i}")))
        })
        .collect();
    for (i, h) in calls.into_iter().enumerate() {
        let o = h.join().unwrap();
        assert!(o.status.success(), "call {i}: {}", err(&o));
        assert_eq!(out(&o), format!("in{i}"));
    }
    done.store(true, Ordering::SeqCst);
    let saw_waiting = watcher.join().unwrap();
    assert_eq!(peak.load(Ordering::SeqCst), 3, "scaled up to max_containers and no further");
    assert!(saw_waiting, "inputs beyond the replicas were shown waiting");
    c.eventually(Duration::from_secs(20), "scale down to zero after the window", || {
        replicas(&c, "burst", "work").is_empty()
    });
    c.eventually(Duration::from_secs(20), "replica containers removed", || replica_containers(&c).is_empty());
}

/// Replica containers of this cluster's nodes.
pub(crate) fn replica_containers(c: &TestCluster) -> Vec<String> {
    let mine: Vec<String> = c
        .nodes
        .keys()
        .filter_map(|id| std::fs::read_to_string(c.dir.path().join(format!("n{id}/instance_id"))).ok())
        .map(|s| s.trim().to_string())
        .collect();
    mine.iter()
        .flat_map(|instance| {
            let filter = format!("label=flotilla.instance={instance}");
            let ids = docker(&["ps", "-aq", "--filter", "label=flotilla.replica", "--filter", &filter]);
            ids.lines().map(str::to_string).collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn concurrency_per_replica_timeout_and_retries() {
    let c = three_nodes(&[]);
    deploy_toml(
        &c,
        "limits",
        r#"name = "limits"
[functions.pair]
image = "flotilla/busybox"
command = ["sh", "-c", "touch /tmp/$$; n=$(ls /tmp | wc -l); sleep 1; rm /tmp/$$; echo $n"]
min_containers = 1
max_containers = 1
concurrency = 2
[functions.slow]
image = "flotilla/busybox"
command = ["sleep", "30"]
timeout_s = 1
[functions.flaky]
image = "flotilla/busybox"
command = ["sh", "-c", "if [ -f /tmp/seen ]; then echo recovered; else touch /tmp/seen; echo first try fails >&2; exit 1; fi"]
max_containers = 1
retries = { max = 2, initial_delay_ms = 200, backoff = 2.0 }
"#,
    );
    let ep = c.nodes[&1].endpoint();
    let t = Instant::now();
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let ep = ep.clone();
            std::thread::spawn(move || call(&ep, "limits/pair", ""))
        })
        .collect();
    let seen: Vec<u64> = calls
        .into_iter()
        .map(|h| {
            let o = h.join().unwrap();
            assert!(o.status.success(), "{}", err(&o));
            out(&o).trim().parse().unwrap()
        })
        .collect();
    assert!(seen.iter().all(|n| *n <= 2), "never more than 2 inputs at once in the replica: {seen:?}");
    assert!(seen.contains(&2), "2 inputs did run together: {seen:?}");
    assert!(t.elapsed() >= Duration::from_secs(2), "4 inputs at 2 at a time take two rounds");
    assert_eq!(replicas(&c, "limits", "pair").len(), 1);

    let t = Instant::now();
    let o = call(&ep, "limits/slow", "");
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("timed out after 1s"), "{}", err(&o));
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());

    let o = cli(&ep, &["fn", "spawn", "limits/flaky"]);
    let id = out(&o).trim().to_string();
    let o = cli(&ep, &["-o", "json", "call", "get", &id, "--timeout", "60"]);
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (r["state"].as_str(), r["attempt"].as_u64(), r["output"].as_str()),
        (Some("succeeded"), Some(2), Some("recovered\n")),
        "{r}"
    );
    // Cancel a queued call of a function with no capacity to run it.
    let o = cli(&ep, &["fn", "spawn", "limits/slow"]);
    let id = out(&o).trim().to_string();
    let r = c.json(1, &["call", "cancel", &id]);
    assert_eq!(r["state"], "cancelled", "{r}");
    // `call ls` shows both durable calls, newest first.
    let ls = c.json(2, &["call", "ls", "--app", "limits"]);
    let states: Vec<&str> = ls.as_array().unwrap().iter().map(|r| r["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["cancelled", "succeeded"], "{ls}");
    let o = cli(&ep, &["call", "get", "fc-doesnotexist"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("fc-doesnotexist"), "{}", err(&o));
}

#[test]
fn redeploy_under_load_drops_no_call() {
    let c = three_nodes(&[]);
    let spec = |v: &str| {
        format!(
            "name = \"roll\"\n[functions.f]\nimage = \"flotilla/busybox\"\ncommand = [\"sh\", \"-c\", \"sleep 0.3; echo {v}\"]\nmin_containers = 2\nmax_containers = 3\n"
        )
    };
    deploy_toml(&c, "roll", &spec("v1"));
    c.eventually(Duration::from_secs(30), "v1 ready", || {
        replicas(&c, "roll", "f").iter().filter(|r| r["state"] == "ready").count() == 2
    });
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (1..=3)
        .map(|id| {
            let (ep, stop) = (c.nodes[&id].endpoint(), stop.clone());
            std::thread::spawn(move || {
                let mut outputs = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let o = call(&ep, "roll/f", "");
                    assert!(o.status.success(), "a call failed during the redeploy: {}", err(&o));
                    outputs.push(out(&o).trim().to_string());
                }
                outputs
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    deploy_toml(&c, "roll", &spec("v2"));
    c.eventually(Duration::from_secs(40), "only v2 replicas", || {
        let r = replicas(&c, "roll", "f");
        !r.is_empty() && r.iter().all(|r| r["version"] == 2 && r["state"] == "ready")
    });
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    let outputs: Vec<String> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    assert!(outputs.iter().any(|o| o == "v1") && outputs.last().is_some_and(|o| o == "v2"), "{outputs:?}");
    assert!(outputs.iter().all(|o| o == "v1" || o == "v2"), "{outputs:?}");
    // Stopping the app drains and removes its replicas.
    c.json(1, &["app", "stop", "roll"]);
    c.eventually(Duration::from_secs(20), "no replicas after stop", || replicas(&c, "roll", "f").is_empty());
    c.eventually(Duration::from_secs(20), "replica containers removed", || replica_containers(&c).is_empty());
}

/// GPU index lists a function's replicas print, one per call, from every replica.
fn visible_devices(ep: &str, target: &str, calls: usize) -> Vec<String> {
    let hs: Vec<_> = (0..calls)
        .map(|_| {
            let ep = ep.to_string();
            let target = target.to_string();
            std::thread::spawn(move || call(&ep, &target, ""))
        })
        .collect();
    hs.into_iter()
        .map(|h| {
            let o = h.join().unwrap();
            assert!(o.status.success(), "{}", err(&o));
            out(&o).trim().to_string()
        })
        .collect()
}

fn gpu_holders(c: &TestCluster, id: u64) -> Vec<(u64, u64, Option<String>)> {
    let s = c.json(id, &["cluster", "status"]);
    let mut all = Vec::new();
    for n in s["nodes"].as_array().unwrap() {
        for g in n["gpus"].as_array().unwrap() {
            all.push((
                n["id"].as_u64().unwrap(),
                g["index"].as_u64().unwrap(),
                g["leased_to"].as_str().map(String::from),
            ));
        }
    }
    all
}

#[test]
fn gpu_slots_pack_and_stay_exclusive() {
    let mut c = three_nodes(&["--gpus", "fake:H100:4"]);
    deploy_toml(
        &c,
        "ml",
        r#"name = "ml"
[functions.infer]
image = "flotilla/busybox"
command = ["sh", "-c", "sleep 0.5; echo $NVIDIA_VISIBLE_DEVICES"]
gpu = "H100:2"
min_containers = 2
max_containers = 2
concurrency = 1
"#,
    );
    c.eventually(Duration::from_secs(30), "two GPU replicas ready", || {
        replicas(&c, "ml", "infer").iter().filter(|r| r["state"] == "ready").count() == 2
    });
    let r = replicas(&c, "ml", "infer");
    let (a, b) = (&r[0], &r[1]);
    // Best fit: both 2-GPU replicas share one 4-GPU node, leaving two nodes whole.
    assert_eq!(a["node"], b["node"], "{r:?}");
    let node = a["node"].as_u64().unwrap();
    let mut gpus: Vec<u64> =
        r.iter().flat_map(|x| x["gpus"].as_array().unwrap().iter().map(|g| g.as_u64().unwrap())).collect();
    gpus.sort_unstable();
    assert_eq!(gpus, [0, 1, 2, 3], "no GPU booked twice");
    let holders = gpu_holders(&c, 1);
    assert_eq!(holders.iter().filter(|(n, _, h)| *n == node && h.is_some()).count(), 4, "{holders:?}");
    // Each container sees exactly its own two devices.
    let seen = visible_devices(&c.nodes[&1].endpoint(), "ml/infer", 6);
    let sets: std::collections::BTreeSet<&str> = seen.iter().map(String::as_str).collect();
    for s in &sets {
        assert_eq!(s.split(',').count(), 2, "{seen:?}");
    }
    assert!(sets.is_subset(&["0,1", "2,3"].into_iter().collect()), "{seen:?}");

    // Sandboxes' GPUs are leased like replicas' and released when they end.
    let ep2 = c.nodes[&2].endpoint();
    let sandboxes: Vec<String> = (0..2)
        .map(|_| {
            let o = cli(&ep2, &["sandbox", "create", "--gpu", "H100:4", "--wait"]);
            assert!(o.status.success(), "{}", err(&o));
            out(&o).trim().to_string()
        })
        .collect();
    let o = cli(&ep2, &["sandbox", "exec", &sandboxes[0], "--", "sh", "-c", "echo $NVIDIA_VISIBLE_DEVICES"]);
    assert_eq!(out(&o).trim(), "0,1,2,3");
    let o = cli(&ep2, &["sandbox", "create", "--gpu", "H100:1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("no node has 1 free H100 GPUs: node "), "{}", err(&o));
    let o = cli(&ep2, &["sandbox", "create", "--gpu", "A100:1"]);
    assert!(err(&o).contains("no node can ever take it") && err(&o).contains("1 free A100 GPUs"), "{}", err(&o));
    for sb in &sandboxes {
        c.json(2, &["sandbox", "terminate", sb]);
    }
    let holders = gpu_holders(&c, 2);
    assert_eq!(holders.iter().filter(|(_, _, h)| h.is_some()).count(), 4, "only the replicas hold GPUs: {holders:?}");

    // The node holding the replicas dies: their leases are released and the replicas come
    // back on another node's GPUs.
    c.node(node).kill();
    let alive = if node == 1 { 2 } else { 1 };
    c.eventually(Duration::from_secs(40), "replicas replaced on a live node", || {
        let r = replicas_via(&c, alive, "ml", "infer");
        r.len() == 2 && r.iter().all(|x| x["node"].as_u64() != Some(node) && x["state"] == "ready")
    });
    let holders = gpu_holders(&c, alive);
    assert!(holders.iter().filter(|(n, _, _)| *n == node).all(|(_, _, h)| h.is_none()), "{holders:?}");
    assert_eq!(holders.iter().filter(|(_, _, h)| h.is_some()).count(), 4, "{holders:?}");
}

#[test]
fn a_node_without_an_engine_serves_the_cluster_and_takes_no_work() {
    busybox_image();
    let mut c = TestCluster::empty();
    let seed = c.add_node(1, How::Bootstrap, &[]);
    c.wait_leader(Duration::from_secs(20));
    c.add_node_with_env(
        2,
        How::Join(&seed),
        &["--gpus", "fake:H100:2"],
        &[("DOCKER_HOST", "unix:///nonexistent.sock")],
    );
    c.eventually(Duration::from_secs(30), "node 2 registered with its GPUs", || {
        let s = c.json(1, &["cluster", "status"]);
        s["nodes"].as_array().unwrap().iter().any(|n| n["id"] == 2 && n["gpus"].as_array().unwrap().len() == 2)
    });
    let s = c.json(2, &["cluster", "status"]);
    let n2 = s["nodes"].as_array().unwrap().iter().find(|n| n["id"] == 2).unwrap().clone();
    assert_eq!((n2["cpus"].as_u64(), n2["gpus"][0]["model"].as_str()), (Some(0), Some("H100")), "{n2}");
    assert!(c.nodes[&2].log_text().contains("no container engine"), "the node says why it takes no work");
    // Nothing is placed on it: a GPU sandbox has nowhere to go, a plain one lands on node 1.
    let ep = c.nodes[&2].endpoint();
    let o = cli(&ep, &["sandbox", "create", "--gpu", "H100:1"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let o = cli(&ep, &["-o", "json", "sandbox", "create", "--wait"]);
    assert!(o.status.success(), "{}", err(&o));
    let id = serde_json::from_slice::<Value>(&o.stdout).unwrap()["id"].as_str().unwrap().to_string();
    assert_eq!(c.json(2, &["sandbox", "show", &id])["node"], 1);
}
