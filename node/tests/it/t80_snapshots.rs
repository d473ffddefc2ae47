//! Snapshots on the real Docker engine: each kind round-trips with its content checked,
//! restored on another node than the one that took it; a corrupted and a missing replica are
//! detected and repaired; `rm` frees the blobs on every node; bad input gets clear errors.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

fn out(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn err(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A config file that makes the blob keeper run every second and collect at once.
pub fn fast_keeper(dir: &Path) -> PathBuf {
    let path = dir.join("snapshots.toml");
    std::fs::write(&path, "[snapshots]\nscrub_every_s = 1\ngc_grace_s = 1\n").unwrap();
    path
}

/// A three-node cluster (replication factor 2) with the busybox image.
pub fn three() -> TestCluster {
    busybox_image();
    let dir = tempfile::tempdir().unwrap();
    let config = fast_keeper(dir.path());
    let mut c = TestCluster::start(3, &["--config", config.to_str().unwrap()]);
    c.wait_leader(Duration::from_secs(20));
    std::mem::forget(dir); // the nodes read the config once, at start
    c
}

pub fn create(c: &TestCluster, flags: &[&str]) -> String {
    let o = c.cli(&c.endpoints(), &[&["sandbox", "create", "--wait"], flags].concat());
    assert!(o.status.success(), "create {flags:?}: {}", err(&o));
    out(&o).trim().to_string()
}

pub fn sh(c: &TestCluster, id: &str, script: &str) -> String {
    let o = c.cli(&c.endpoints(), &["sandbox", "exec", id, "--", "sh", "-c", script]);
    assert_eq!(o.status.code(), Some(0), "exec {script:?}: {}", err(&o));
    out(&o)
}

pub fn show(c: &TestCluster, id: &str) -> Value {
    let o = c.cli(&c.endpoints(), &["-o", "json", "sandbox", "show", id]);
    assert!(o.status.success(), "show {id}: {}", err(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// `sandbox snapshot` with JSON output.
pub fn snapshot(c: &TestCluster, id: &str, flags: &[&str]) -> Value {
    let o = c.cli(&c.endpoints(), &[&["-o", "json", "sandbox", "snapshot", id], flags].concat());
    assert!(o.status.success(), "snapshot {id} {flags:?}: {}", err(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn replicas(s: &Value) -> Vec<u64> {
    s["replicas"].as_array().unwrap().iter().map(|n| n.as_u64().unwrap()).collect()
}

/// The chunk files of blob `sha` in node `id`'s store (from its manifest).
fn chunk_files(c: &TestCluster, id: u64, sha: &str) -> Vec<PathBuf> {
    let blobs = c.data_dir(id).join("blobs");
    let Ok(m) = std::fs::read(blobs.join("manifests").join(sha)) else { return vec![] };
    let m: Value = serde_json::from_slice(&m).unwrap();
    m["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ch| {
            let d = ch["hash"].as_str().unwrap();
            blobs.join("chunks").join(&d[..2]).join(d)
        })
        .collect()
}

/// Whether node `id` holds blob `sha`: its chunks, in order, hash to the blob's sha256.
fn holds_good_copy(c: &TestCluster, id: u64, sha: &str) -> bool {
    use sha2::Digest;
    let files = chunk_files(c, id, sha);
    let mut whole = sha2::Sha256::new();
    !files.is_empty()
        && files.iter().all(|f| std::fs::read(f).map(|data| whole.update(&data)).is_ok())
        && hex::encode(whole.finalize()) == sha
}

#[test]
fn fs_and_dir_snapshots_restore_on_another_node() {
    let c = three();
    let src = create(&c, &[]);
    sh(
        &c,
        &src,
        "mkdir -p /work/a/b && echo hello > /work/a/b/f && chmod 751 /work/a/b/f && ln -s f /work/a/b/link \
         && echo top > /work/top.txt && head -c 3000000 /dev/urandom > /work/big",
    );
    let src_node = show(&c, &src)["node"].as_u64().unwrap();

    let snap = snapshot(&c, &src, &["--kind", "fs"]);
    let id = snap["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("sn-"), "{snap}");
    assert_eq!(
        (snap["kind"].as_str(), snap["state"].as_str(), snap["node"].as_u64()),
        (Some("fs"), Some("ready"), Some(src_node))
    );
    assert_eq!(snap["sha256"].as_str().unwrap().len(), 64);
    assert!(snap["size_bytes"].as_u64().unwrap() > 3_000_000, "{snap}");
    let reps = replicas(&snap);
    assert_eq!(reps.len(), 2, "replication factor 2: {snap}");
    assert!(reps.contains(&src_node));
    for n in &reps {
        assert!(holds_good_copy(&c, *n, snap["sha256"].as_str().unwrap()), "node {n} holds a verified copy");
    }
    // The source keeps running, and remembers its snapshot.
    let s = show(&c, &src);
    assert_eq!((s["state"].as_str(), s["last_snapshot"].as_str()), (Some("running"), Some(id.as_str())));
    let listed: Value =
        serde_json::from_slice(&c.cli(&c.endpoints(), &["-o", "json", "snapshot", "ls"]).stdout).unwrap();
    let row = listed.as_array().unwrap().iter().find(|r| r["id"] == id.as_str()).expect("listed");
    assert_eq!((row["sandbox"].as_str(), row["kind"].as_str()), (Some(src.as_str()), Some("fs")));
    assert_eq!(row["sha256"], snap["sha256"]);

    // Restored on another node (placement spreads: the source's node is the busiest).
    let copy = create(&c, &["--from-snapshot", &id]);
    let s = show(&c, &copy);
    assert_ne!(s["node"].as_u64(), Some(src_node), "restored on another node: {s}");
    assert_eq!(s["state"].as_str(), Some("running"));
    assert_eq!(
        sh(&c, &copy, "cat /work/a/b/f; stat -c %a /work/a/b/f; readlink /work/a/b/link; cat /work/top.txt"),
        "hello\n751\nf\ntop\n"
    );
    assert_eq!(sh(&c, &copy, "md5sum < /work/big"), sh(&c, &src, "md5sum < /work/big"));

    // A directory snapshot holds that tree only, and lands at the same path.
    let dir = snapshot(&c, &src, &["--kind", "dir", "--path", "/work/a/b"]);
    assert_eq!((dir["kind"].as_str(), dir["path"].as_str()), (Some("dir"), Some("/work/a/b")));
    let only = create(&c, &["--from-snapshot", dir["id"].as_str().unwrap()]);
    assert_eq!(sh(&c, &only, "cat /work/a/b/f; stat -c %a /work/a/b/f; ls /work"), "hello\n751\na\n");

    // The same through the SDK.
    rt().block_on(async {
        let client = flotilla::Client::connect(c.endpoints().split(',')).await.unwrap();
        let sb = client.sandbox_from_id(&src).await.unwrap();
        let snap = sb.snapshot_filesystem().await.unwrap();
        assert_eq!((snap.kind.as_str(), snap.state.as_str(), snap.replicas.len()), ("fs", "ready", 2));
        let copy = client.sandbox().from_snapshot(&snap).create().await.unwrap();
        let out = copy.exec(["cat", "/work/top.txt"]).output().await.unwrap();
        assert_eq!(out.stdout, b"top\n");
        let listed = client.list_snapshots(Some(&src)).await.unwrap();
        assert_eq!(listed.len(), 3, "fs, dir and this one");
    });
}

#[test]
fn memory_snapshot_continues_a_counter_elsewhere() {
    let c = three();
    // The count lives in the shell's memory; the file only shows it. /tmp is a tmpfs, so a
    // marker there survives only through the checkpoint.
    let src = create(
        &c,
        &[
            "--",
            "sh",
            "-c",
            "echo secret > /tmp/mem; i=0; while true; do i=$((i+1)); echo $i > /work/count; sleep 0.05; done",
        ],
    );
    c.eventually(Duration::from_secs(30), "the counter passing 60", || {
        sh(&c, &src, "cat /work/count").trim().parse::<u64>().unwrap_or(0) > 60
    });
    let before: u64 = sh(&c, &src, "cat /work/count").trim().parse().unwrap();
    let snap = snapshot(&c, &src, &["--kind", "memory"]);
    assert_eq!((snap["kind"].as_str(), snap["state"].as_str()), (Some("memory"), Some("ready")));
    assert_eq!(show(&c, &src)["state"].as_str(), Some("running"), "the source keeps running");

    let copy = create(&c, &["--from-snapshot", snap["id"].as_str().unwrap()]);
    assert_ne!(show(&c, &copy)["node"], show(&c, &src)["node"], "restored on another node");
    std::thread::sleep(Duration::from_millis(500));
    let n: u64 = sh(&c, &copy, "cat /work/count").trim().parse().unwrap();
    // A fresh start would count from 1 (about 10 by now); the restored process goes on from
    // where the checkpoint left it.
    assert!(n >= before, "restored counter {n}, the source was at {before} before the snapshot");
    assert_eq!(sh(&c, &copy, "cat /tmp/mem"), "secret\n");
}

#[test]
fn bad_replicas_are_repaired_and_rm_collects_blobs() {
    let c = three();
    let src = create(&c, &[]);
    sh(&c, &src, "head -c 3500000 /dev/urandom > /work/data");
    let snap = snapshot(&c, &src, &[]);
    let (id, sha) = (snap["id"].as_str().unwrap(), snap["sha256"].as_str().unwrap());
    let reps = replicas(&snap);

    // One replica's chunk is corrupted: a restore still gets good data, and the copy is
    // repaired (by the restore that read it, or by its node's check).
    let victim = &chunk_files(&c, reps[0], sha)[0];
    std::fs::write(victim, b"not what was stored").unwrap();
    let copy = create(&c, &["--from-snapshot", id]);
    assert_eq!(sh(&c, &copy, "md5sum < /work/data"), sh(&c, &src, "md5sum < /work/data"));
    c.eventually(Duration::from_secs(20), "the corrupted copy repaired", || holds_good_copy(&c, reps[0], sha));

    // The other replica loses a chunk altogether: found missing and fetched again.
    let gone = chunk_files(&c, reps[1], sha)[1].clone();
    std::fs::remove_file(&gone).unwrap();
    c.eventually(Duration::from_secs(20), "the missing chunk restored", || gone.is_file());
    assert!(holds_good_copy(&c, reps[1], sha));
    let s: Value = c.json(1, &["snapshot", "show", id]);
    assert_eq!((s["state"].as_str(), replicas(&s)), (Some("ready"), reps.clone()));

    // rm: the record goes, then every node's blob and chunks.
    let o = c.cli(&c.endpoints(), &["snapshot", "rm", id]);
    assert!(o.status.success(), "{}", err(&o));
    let o = c.cli(&c.endpoints(), &["snapshot", "show", id]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("not found"), "{}", err(&o));
    c.eventually(Duration::from_secs(20), "blobs collected on every node", || {
        (1..=3).all(|n| {
            let blobs = c.data_dir(n).join("blobs");
            !blobs.join("manifests").join(sha).exists()
                && std::fs::read_dir(blobs.join("chunks"))
                    .map(|d| {
                        d.flatten().all(|sub| std::fs::read_dir(sub.path()).map(|f| f.count() == 0).unwrap_or(true))
                    })
                    .unwrap_or(true)
        })
    });
}

#[test]
fn bad_input_gets_clear_errors() {
    busybox_image();
    let mut c = TestCluster::start(1, &[]);
    // This node's PATH has no criu (it lives in /usr/sbin).
    c.node(1).kill();
    c.node(1).envs.push(("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()));
    c.node(1).start();
    c.wait_leader(Duration::from_secs(20));
    let ep = c.nodes[&1].endpoint();
    let id = create(&c, &[]);

    let o = cli(&ep, &["sandbox", "snapshot", &id, "--kind", "memory"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("CRIU") && err(&o).contains("criu"), "names what is missing: {}", err(&o));
    assert!(c.json(1, &["snapshot", "ls"]).as_array().unwrap().is_empty(), "no record left behind");
    // Filesystem snapshots still work there.
    let fs = snapshot(&c, &id, &[]);
    assert_eq!((fs["state"].as_str(), replicas(&fs)), (Some("ready"), vec![1]));

    for (flags, field) in [
        (&["--kind", "dir", "--path", "/etc"][..], "path"),
        (&["--kind", "dir"][..], "path"),
        (&["--kind", "dir", "--path", "/work/../etc"][..], "path"),
        (&["--kind", "fs", "--path", "/work"][..], "path"),
    ] {
        let o = cli(&ep, &[&["sandbox", "snapshot", &id], flags].concat());
        assert_eq!(o.status.code(), Some(2), "{flags:?}: {}", err(&o));
        assert!(err(&o).contains(field), "{flags:?}: {}", err(&o));
    }
    let o = cli(&ep, &["sandbox", "snapshot", &id, "--kind", "dir", "--path", "/work/nothing-here"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("not found"), "{}", err(&o));

    for args in [
        &["snapshot", "show", "sn-nope"][..],
        &["snapshot", "rm", "sn-nope"],
        &["sandbox", "create", "--from-snapshot", "sn-nope"],
    ] {
        let o = cli(&ep, args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", err(&o));
        assert!(err(&o).contains("snapshot \"sn-nope\" not found"), "{args:?}: {}", err(&o));
    }
    let o = cli(&ep, &["sandbox", "create", "--from-snapshot", "nope"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));

    assert!(cli(&ep, &["sandbox", "terminate", &id]).status.success());
    let o = cli(&ep, &["sandbox", "snapshot", &id]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("terminated"), "{}", err(&o));
}

/// The snapshots of sandbox `id` as `snapshot ls` shows them.
fn snapshots_of(c: &TestCluster, id: &str) -> Vec<Value> {
    c.json(1, &["snapshot", "ls", "--sandbox", id]).as_array().unwrap().clone()
}

#[test]
fn a_node_killed_mid_snapshot_fails_it_and_snapshots_work_again_after_restart() {
    let (mut c, ep) = single();
    // /work sized for the file below (the default is 1024 MiB).
    let id = create(&c, &["--disk", "2048"]);
    // Big enough that the snapshot is still being stored when the node is killed.
    sh(&c, &id, "dd if=/dev/zero of=/work/big bs=1M count=1500 2>/dev/null");
    let mut taking = std::process::Command::new(BIN)
        .args(["--endpoint", &ep, "sandbox", "snapshot", &id])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    c.eventually(Duration::from_secs(20), "the sandbox to be snapshotting", || {
        show(&c, &id)["state"] == "snapshotting"
    });
    let pending = snapshots_of(&c, &id);
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0]["state"], "pending");
    c.node(1).kill();
    let _ = taking.wait();

    c.node(1).start();
    c.wait_leader(Duration::from_secs(20));
    let restarted = std::time::Instant::now();
    c.eventually(Duration::from_secs(30), "the abandoned snapshot to fail and the sandbox to run", || {
        let snaps = snapshots_of(&c, &id);
        snaps.len() == 1 && snaps[0]["state"] == "failed" && show(&c, &id)["state"] == "running"
    });
    assert!(restarted.elapsed() < Duration::from_secs(30));
    let failed = &snapshots_of(&c, &id)[0];
    assert_eq!(failed["id"], pending[0]["id"]);
    assert!(failed["reason"].as_str().is_some_and(|r| r.contains("node 1 restarted")), "{failed}");
    let o = cli(&ep, &["snapshot", "show", failed["id"].as_str().unwrap()]);
    assert!(out(&o).contains("failed: node 1 restarted"), "{}", out(&o));
    // A failed snapshot cannot be restored.
    let o = cli(&ep, &["sandbox", "create", "--from-snapshot", failed["id"].as_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("is failed"), "{}", err(&o));

    // The next snapshot works, and holds what the sandbox has now.
    sh(&c, &id, "rm /work/big; echo after > /work/f");
    let next = snapshot(&c, &id, &[]);
    assert_eq!(next["state"], "ready");
    assert_eq!(show(&c, &id)["last_snapshot"], next["id"]);
    let copy = create(&c, &["--from-snapshot", next["id"].as_str().unwrap()]);
    assert_eq!(sh(&c, &copy, "cat /work/f; ls /work"), "after\nf\n");
}
