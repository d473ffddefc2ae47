//! `flotilla bench` leaves no container behind, even when interrupted mid-run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

/// The instance ids of the bench clusters' nodes whose data dirs are under `tmp`.
fn instances(tmp: &Path) -> Vec<String> {
    let dirs = std::fs::read_dir(tmp).into_iter().flatten().flatten().map(|e| e.path());
    let nodes = dirs.flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten().map(|e| e.path()));
    nodes
        .filter_map(|n: PathBuf| std::fs::read_to_string(n.join("instance_id")).ok())
        .map(|s| s.trim().to_string())
        .collect()
}

#[test]
fn an_interrupted_benchmark_removes_its_containers() {
    busybox_image();
    let tmp = tempfile::tempdir().unwrap();
    // The bench keeps its clusters' data dirs in a temp dir: here, where the test can read
    // their instance ids.
    let mut bench = Command::new(BIN)
        .args(["bench", "functions", "--seconds", "60", "--replicas", "1", "--cold", "1"])
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = bench.id();
    let labels = || {
        let mut l: Vec<String> = instances(tmp.path()).iter().map(|i| format!("flotilla.instance={i}")).collect();
        l.push(format!("flotilla.bench={pid}"));
        l
    };
    let running = |label: &str| docker(&["ps", "-aq", "--filter", &format!("label={label}")]).lines().count();
    // Wait until the benchmark has its replica and its raw container up, then interrupt it.
    let deadline = Instant::now() + Duration::from_secs(120);
    while labels().iter().filter(|l| running(l) > 0).count() < 2 {
        if Instant::now() > deadline || bench.try_wait().unwrap().is_some() {
            let _ = bench.kill();
            let o = bench.wait_with_output().unwrap();
            panic!("the benchmark did not start its containers: {}", String::from_utf8_lossy(&o.stderr));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let seen = labels();
    Command::new("kill").args(["-INT", &pid.to_string()]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while bench.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = bench.kill();
            panic!("the benchmark did not end within 60 s of Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = bench.wait_with_output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("interrupted"), "{}", String::from_utf8_lossy(&o.stderr));
    let left: Vec<(String, usize)> = seen.iter().map(|l| (l.clone(), running(l))).filter(|(_, n)| *n > 0).collect();
    assert!(left.is_empty(), "containers left behind: {left:?}");
}
