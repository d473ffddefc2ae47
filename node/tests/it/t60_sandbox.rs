//! Sandboxes on the real Docker engine, driven through the CLI and the SDK.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

fn out(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn err(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `sandbox create --wait` with extra flags; returns the id.
fn create(ep: &str, flags: &[&str]) -> String {
    let o = cli(ep, &[&["sandbox", "create", "--wait"], flags].concat());
    assert!(o.status.success(), "create {flags:?}: {}", err(&o));
    out(&o).trim().to_string()
}

fn exec(ep: &str, id: &str, cmd: &[&str]) -> std::process::Output {
    cli(ep, &[&["sandbox", "exec", id, "--"], cmd].concat())
}

fn show(c: &TestCluster, id: &str) -> serde_json::Value {
    c.json(1, &["sandbox", "show", id])
}

#[test]
fn exec_output_and_exit_codes() {
    let (c, ep) = single();
    let id = create(&ep, &["--name", "codes"]);
    assert!(id.starts_with("sb-"), "{id}");
    let s = show(&c, &id);
    assert_eq!(
        (s["state"].as_str(), s["image"].as_str(), s["node"].as_u64()),
        (Some("running"), Some("flotilla/busybox"), Some(1))
    );

    let o = exec(&ep, &id, &["sh", "-c", "echo hi; echo oops >&2"]);
    assert_eq!((o.status.code(), out(&o).as_str(), err(&o).as_str()), (Some(0), "hi\n", "oops\n"));
    for (cmd, code) in [("exit 3", 3), ("kill -9 $$", 137), ("kill -15 $$", 143)] {
        assert_eq!(exec(&ep, &id, &["sh", "-c", cmd]).status.code(), Some(code), "{cmd}");
    }
    let t = Instant::now();
    let o = cli(&ep, &["sandbox", "exec", &id, "--timeout", "1", "--", "sleep", "30"]);
    assert_eq!(o.status.code(), Some(124));
    assert!(t.elapsed() < Duration::from_secs(10));
    // The name finds the sandbox too; env and workdir apply.
    let o =
        cli(&ep, &["sandbox", "exec", "codes", "--env", "A=b", "--workdir", "/tmp", "--", "sh", "-c", "echo $A; pwd"]);
    assert_eq!(out(&o), "b\n/tmp\n");
}

#[test]
fn a_missing_command_exits_127_with_command_not_found() {
    let (_c, ep) = single();
    let id = create(&ep, &[]);
    let o = exec(&ep, &id, &["no-such-command", "arg"]);
    assert_eq!(o.status.code(), Some(127), "{}", err(&o));
    assert_eq!(out(&o), "", "the engine's message is not passed on as output");
    assert!(err(&o).contains("no-such-command: command not found"), "{}", err(&o));
    // A path that does not exist is not found too; a file that is not executable is 126.
    assert_eq!(exec(&ep, &id, &["/work/nothing"]).status.code(), Some(127));
    assert!(exec(&ep, &id, &["sh", "-c", "echo hi > /work/x"]).status.success());
    let o = exec(&ep, &id, &["/work/x"]);
    assert_eq!(o.status.code(), Some(126), "{}", err(&o));
    assert!(err(&o).contains("/work/x: cannot run") && err(&o).contains("permission denied"), "{}", err(&o));
    // A command that prints the engine's words itself is left alone.
    let o = exec(&ep, &id, &["echo", "OCI runtime exec failed"]);
    assert_eq!((o.status.code(), out(&o).as_str()), (Some(0), "OCI runtime exec failed\n"));
}

#[test]
fn a_full_tmp_leaves_the_sandbox_usable_and_oom_is_reported() {
    let (_c, ep) = single();
    let id = create(&ep, &["--memory", "64"]);
    // `/tmp` is half the memory limit.
    let df = out(&exec(&ep, &id, &["df", "-k", "/tmp"]));
    assert_eq!(df.lines().nth(1).and_then(|l| l.split_whitespace().nth(1)), Some("32768"), "{df}");
    // Filling it fails with ENOSPC, not an OOM kill, and the sandbox stays usable.
    let o = exec(&ep, &id, &["dd", "if=/dev/zero", "of=/tmp/fill", "bs=1M"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("No space left on device"), "{}", err(&o));
    let o = exec(&ep, &id, &["rm", "/tmp/fill"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(out(&exec(&ep, &id, &["echo", "ok"])), "ok\n");
    // An exec that allocates past the limit is killed, and says why.
    let o = exec(&ep, &id, &["sh", "-c", "head -c 300m /dev/zero | tail > /dev/null"]);
    assert_eq!(o.status.code(), Some(137), "{}", err(&o));
    assert!(err(&o).contains("killed: out of memory (sandbox memory limit 64 MiB)"), "{}", err(&o));
    // A plain SIGKILL is not called an OOM.
    let o = exec(&ep, &id, &["sh", "-c", "kill -9 $$"]);
    assert_eq!((o.status.code(), err(&o).as_str()), (Some(137), ""));
    assert_eq!(out(&exec(&ep, &id, &["echo", "ok"])), "ok\n");
}

#[test]
fn output_streams_live_in_order_and_complete() {
    let (_c, ep) = single();
    let id = create(&ep, &[]);
    rt().block_on(async {
        let client = flotilla::Client::connect([ep.as_str()]).await.unwrap();
        let sb = client.sandbox_from_id(&id).await.unwrap();
        // Live: five lines 300 ms apart arrive spread out, in order.
        let mut p = sb.exec(["sh", "-c", "for i in 1 2 3 4 5; do echo line$i; sleep 0.3; done"]).spawn().await.unwrap();
        p.close_stdin().await.unwrap();
        let start = Instant::now();
        let mut arrivals = Vec::new();
        let mut text = String::new();
        while let Some(ev) = p.next_event().await.unwrap() {
            if let flotilla::ExecEvent::Stdout(b) = ev {
                arrivals.push(start.elapsed());
                text.push_str(&String::from_utf8_lossy(&b));
            }
        }
        assert_eq!(text, "line1\nline2\nline3\nline4\nline5\n");
        assert!(arrivals.len() >= 3, "output arrived in {} chunks", arrivals.len());
        assert!(arrivals.last().unwrap().saturating_sub(arrivals[0]) > Duration::from_millis(800), "{arrivals:?}");
        // Large: 20 MB arrives complete.
        let r = sb.exec(["sh", "-c", "yes abcdefghi | head -c 20000000"]).output().await.unwrap();
        assert_eq!((r.exit_code, r.stdout.len()), (0, 20_000_000));
        assert!(r.stdout.chunks(10).all(|l| l == b"abcdefghi\n"));
        // Stdin: cat echoes what it is sent and ends at EOF.
        let mut p = sb.exec(["cat"]).spawn().await.unwrap();
        p.write_stdin(b"hello ").await.unwrap();
        p.write_stdin(b"world\n").await.unwrap();
        p.close_stdin().await.unwrap();
        let mut got = Vec::new();
        while let Some(ev) = p.next_event().await.unwrap() {
            if let flotilla::ExecEvent::Stdout(b) = ev {
                got.extend(b);
            }
        }
        assert_eq!((got.as_slice(), p.exit_code()), (&b"hello world\n"[..], Some(0)));
        // Concurrent execs in one sandbox run side by side.
        let t = Instant::now();
        let runs = (0..8).map(|i| sb.exec(["sh", "-c", &format!("sleep 1; echo {i}")]).output());
        let results = futures::future::join_all(runs).await;
        for (i, r) in results.into_iter().enumerate() {
            assert_eq!(String::from_utf8(r.unwrap().stdout).unwrap(), format!("{i}\n"));
        }
        assert!(t.elapsed() < Duration::from_secs(6), "8 x 1 s execs took {:?}", t.elapsed());
    });
    // The CLI passes stdin with -i.
    let mut child = Command::new(BIN)
        .args(["--endpoint", &ep, "sandbox", "exec", &id, "-i", "--", "wc", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&[b'x'; 100_000]).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(out(&o).trim(), "100000");
}

#[test]
fn lifetime_timeout_and_idle_timeout() {
    let (c, ep) = single();
    let timed = create(&ep, &["--timeout", "2"]);
    let idle = create(&ep, &["--idle-timeout", "2"]);
    assert_eq!(show(&c, &timed)["timeout_s"].as_u64(), Some(2));
    // Activity keeps the idle one alive past its idle timeout.
    for _ in 0..3 {
        assert!(exec(&ep, &idle, &["true"]).status.success());
        std::thread::sleep(Duration::from_millis(900));
    }
    let (w, code) = wait_sandbox(&ep, &timed);
    assert_eq!(code, Some(124), "sandbox wait exits with the sandbox's code");
    assert_eq!(
        (w["state"].as_str(), w["exit_code"].as_i64(), w["reason"].as_str()),
        (Some("terminated"), Some(124), Some("timeout"))
    );
    let (w, code) = wait_sandbox(&ep, &idle);
    assert_eq!(code, Some(124));
    assert_eq!((w["exit_code"].as_i64(), w["reason"].as_str()), (Some(124), Some("idle timeout")));
    // An entrypoint that exits ends the sandbox with its code.
    let short = create(&ep, &["--", "sh", "-c", "exit 7"]);
    let (w, code) = wait_sandbox(&ep, &short);
    assert_eq!(code, Some(7));
    assert_eq!((w["exit_code"].as_i64(), w["reason"].as_str()), (Some(7), Some("exited")));
    // Terminate: exit 137, and no container is left behind.
    let t = create(&ep, &[]);
    let s = c.json(1, &["sandbox", "terminate", &t]);
    assert_eq!((s["state"].as_str(), s["exit_code"].as_i64()), (Some("terminated"), Some(137)));
    c.eventually(Duration::from_secs(10), "container removed", || {
        containers(&format!("flotilla.sandbox={t}")).is_empty()
    });
    let o = exec(&ep, &t, &["true"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("terminated"), "{}", err(&o));
    // Ended sandboxes leave `ls` but stay in `ls --all`.
    let live = c.json(1, &["sandbox", "ls"]);
    assert!(live.as_array().unwrap().iter().all(|s| s["id"] != t.as_str()));
    let all = c.json(1, &["sandbox", "ls", "--all"]);
    assert!(all.as_array().unwrap().iter().any(|s| s["id"] == t.as_str()));
}

#[test]
fn isolation_defaults_hold() {
    let (c, ep) = single();
    let id = create(&ep, &["--memory", "64", "--cpu", "0.5", "--tag", "team=ml"]);
    let sh = |cmd: &str| exec(&ep, &id, &["sh", "-c", cmd]);
    // Capabilities: far from the full set; no new privileges.
    let caps = out(&sh("grep CapEff /proc/self/status"));
    let eff = u64::from_str_radix(caps.split_whitespace().nth(1).unwrap(), 16).unwrap();
    assert!(eff.count_ones() <= 8, "{caps}");
    assert_eq!(eff & (1 << 21), 0, "CAP_SYS_ADMIN must be dropped: {caps}");
    assert!(out(&sh("grep NoNewPrivs /proc/self/status")).contains('1'));
    // Read-only image layer, writable work area, no engine socket.
    assert_ne!(sh("touch /bin/x").status.code(), Some(0));
    assert!(sh("echo ok > /work/x && cat /work/x").status.success());
    assert_ne!(sh("ls /var/run/docker.sock").status.code(), Some(0));
    // CPU limit in the cgroup.
    let cpu = out(&sh("cat /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us"));
    assert!(cpu.starts_with("50000"), "cpu limit: {cpu}");
    // A memory hog is killed; the sandbox lives on.
    let hog = sh("head -c 300m /dev/zero | tail > /dev/null");
    assert_eq!(hog.status.code(), Some(137), "{}", err(&hog));
    // A fork bomb hits the pids limit and the sandbox lives on.
    let t = Instant::now();
    let bomb = cli(&ep, &["sandbox", "exec", &id, "--timeout", "5", "--", "sh", "-c", "f() { f | f & }; f; sleep 30"]);
    // 124: the timeout ended it; 2: the shell could not even fork `sleep` once the bomb hit
    // the pids limit; 137: the bomb's shells hit the memory limit and were killed (a busy
    // machine changes which limit it meets first). Each way it was held inside the sandbox,
    // which the recovery check below then proves.
    assert!(matches!(bomb.status.code(), Some(124 | 2 | 137)), "{:?}: {}", bomb.status.code(), err(&bomb));
    assert!(t.elapsed() < Duration::from_secs(30));
    c.eventually(Duration::from_secs(20), "the sandbox to recover from the fork bomb", || {
        out(&sh("echo alive")) == "alive\n"
    });
    // Labels tie the container to its sandbox.
    assert_eq!(containers(&format!("flotilla.sandbox={id}")).len(), 1);
    // Blocked network: loopback only.
    let blocked = create(&ep, &["--block-network"]);
    assert_eq!(out(&exec(&ep, &blocked, &["ls", "/sys/class/net"])).split_whitespace().collect::<Vec<_>>(), ["lo"]);
    let open = out(&exec(&ep, &id, &["ls", "/sys/class/net"]));
    assert!(open.split_whitespace().count() >= 2, "{open}");
}

#[test]
fn files_copy_in_and_out() {
    let (c, ep) = single();
    let id = create(&ep, &[]);
    let dir = c.dir.path().join("src");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("a.txt"), "alpha").unwrap();
    std::fs::write(dir.join("sub/b.txt"), vec![b'b'; 3_000_000]).unwrap();
    let o = cli(&ep, &["sandbox", "cp", dir.to_str().unwrap(), &format!("{id}:/work")]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&exec(&ep, &id, &["cat", "/work/src/a.txt"])), "alpha");
    assert_eq!(out(&exec(&ep, &id, &["wc", "-c", "/work/src/sub/b.txt"])).split_whitespace().next(), Some("3000000"));
    exec(&ep, &id, &["sh", "-c", "mkdir -p /work/out/deep && echo made > /work/out/deep/m.txt"]);
    // Like cp(1): a folder copied to a new name becomes that folder; to an existing folder,
    // it goes inside under its own name.
    let back = c.dir.path().join("back");
    let o = cli(&ep, &["sandbox", "cp", &format!("{id}:/work/out"), back.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(std::fs::read_to_string(back.join("deep/m.txt")).unwrap(), "made\n");
    let o = cli(&ep, &["sandbox", "cp", &format!("{id}:/work/out"), back.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(std::fs::read_to_string(back.join("out/deep/m.txt")).unwrap(), "made\n");
    // A file copied to a new name is a file of that name; into a folder, it keeps its name;
    // onto an existing file, it replaces it.
    let file = c.dir.path().join("m-copy.txt");
    let o = cli(&ep, &["sandbox", "cp", &format!("{id}:/work/out/deep/m.txt"), file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "made\n");
    let o = cli(&ep, &["sandbox", "cp", &format!("{id}:/work/src/a.txt"), file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "alpha");
    let o = cli(&ep, &["sandbox", "cp", &format!("{id}:/work/src/a.txt"), back.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(std::fs::read_to_string(back.join("a.txt")).unwrap(), "alpha");
    // The destination's folder must exist.
    let nowhere = c.dir.path().join("no/such/dir/x.txt");
    let o = cli(&ep, &["sandbox", "cp", &format!("{id}:/work/src/a.txt"), nowhere.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("does not exist"), "{}", err(&o));
    let o = cli(&ep, &["sandbox", "cp", &format!("{id}:/work/missing"), back.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let o = cli(&ep, &["sandbox", "cp", "here", "there"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn bad_sandbox_input_gets_precise_errors() {
    let (_c, ep) = single();
    let o = cli(&ep, &["sandbox", "create", "--wait", "--image", "flotilla/nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("image flotilla/nope not found on node 1"), "{}", err(&o));
    let o = cli(&ep, &["sandbox", "create", "--timeout", "-5"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    let o = cli(&ep, &["sandbox", "create", "--cpu", "100"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("--cpu"), "{}", err(&o));
    let o = cli(&ep, &["sandbox", "show", "sb-doesnotexist"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("not found"), "{}", err(&o));
    let o = exec(&ep, "sb-doesnotexist", &["true"]);
    assert_eq!(o.status.code(), Some(1));
    let id = create(&ep, &["--name", "taken"]);
    let o = cli(&ep, &["sandbox", "create", "--name", "taken"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("in use"), "{}", err(&o));
    // 300 KB of arguments in 100 pieces (each under the OS's per-argument limit).
    let piece = "x".repeat(3000);
    let mut args = vec!["echo"];
    args.extend(std::iter::repeat_n(piece.as_str(), 100));
    let o = exec(&ep, &id, &args);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("command"), "{}", err(&o));
}

#[test]
fn node_restart_adopts_running_sandboxes_and_removes_orphans() {
    let (mut c, ep) = single();
    let id = create(&ep, &[]);
    assert!(exec(&ep, &id, &["sh", "-c", "echo kept > /work/f"]).status.success());
    let before = containers(&format!("flotilla.sandbox={id}"));
    assert!(c.node(1).stop(), "clean shutdown");
    // The container outlives the daemon.
    assert_eq!(containers(&format!("flotilla.sandbox={id}")), before);
    // A container of this node with no record: an orphan to remove.
    let instance = std::fs::read_to_string(c.dir.path().join("n1/instance_id")).unwrap();
    let orphan = docker(&[
        "run",
        "-d",
        "--label",
        &format!("flotilla.instance={}", instance.trim()),
        "--label",
        "flotilla.sandbox=sb-orphan",
        "flotilla/busybox",
        "sleep",
        "300",
    ]);
    c.node(1).start();
    c.wait_leader(Duration::from_secs(20));
    assert_eq!(out(&exec(&ep, &id, &["cat", "/work/f"])), "kept\n");
    assert_eq!(containers(&format!("flotilla.sandbox={id}")), before, "the same container was adopted");
    c.eventually(Duration::from_secs(15), "orphan removed", || containers("flotilla.sandbox=sb-orphan").is_empty());
    let _ = orphan;
}

#[test]
fn twenty_concurrent_creates_across_three_nodes() {
    busybox_image();
    let mut c = TestCluster::start(3, &[]);
    c.wait_leader(Duration::from_secs(20));
    c.eventually(Duration::from_secs(15), "all nodes registered", || {
        c.status(1).is_some_and(|s| {
            s["nodes"].as_array().unwrap().iter().all(|n| n["cpus"].as_u64() > Some(0) && n["status"] == "up")
        })
    });
    let endpoints = c.endpoints();
    let results = rt().block_on(async {
        let client = flotilla::Client::connect(endpoints.split(',')).await.unwrap();
        let creates = (0..20).map(|i| {
            let client = client.clone();
            async move {
                let sb = client.sandbox().cpu(0.1).memory_mib(32).tag("batch", "b20").create().await?;
                let r = sb.exec(["sh", "-c", &format!("echo {i}")]).output().await?;
                Ok::<_, flotilla::Error>((sb.info.node, String::from_utf8_lossy(&r.stdout).trim().to_string(), i))
            }
        });
        futures::future::join_all(creates).await
    });
    let mut nodes = std::collections::BTreeSet::new();
    for r in results {
        let (node, echoed, i) = r.unwrap();
        assert_eq!(echoed, i.to_string());
        nodes.insert(node);
    }
    assert!(nodes.len() >= 2, "20 sandboxes all landed on {nodes:?}");
    let listed = c.json(2, &["sandbox", "ls", "--tag", "batch=b20"]);
    assert_eq!(listed.as_array().unwrap().len(), 20);
}

#[test]
fn warm_pool_hands_out_started_containers_with_the_sandbox_limits() {
    busybox_image();
    let mut c = TestCluster::start(1, &["--warm-pool", "flotilla/busybox=2"]);
    c.wait_leader(Duration::from_secs(20));
    let ep = c.nodes[&1].endpoint();
    let instance = std::fs::read_to_string(c.dir.path().join("n1/instance_id")).unwrap();
    let pooled = |c: &TestCluster| {
        let _ = c;
        docker(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=flotilla.instance={}", instance.trim()),
            "--filter",
            "name=flotilla-pool-",
        ])
        .lines()
        .count()
    };
    c.eventually(Duration::from_secs(20), "the pool to fill", || pooled(&c) == 2);
    // At least the pool's 256 MiB: a pooled container's `/tmp` was sized from that.
    let id = create(&ep, &["--cpu", "0.5", "--memory", "320", "--env", "GREETING=hello", "--workdir", "/tmp"]);
    // The sandbox got a pooled container: it carries the pool label, under the sandbox's name.
    let name = format!("flotilla-{id}-g1");
    let labels = docker(&["inspect", "-f", "{{json .Config.Labels}}", &name]);
    assert!(labels.contains("flotilla.pool"), "{labels}");
    // With the sandbox's limits, environment and working directory.
    let sh = |cmd: &str| out(&exec(&ep, &id, &["sh", "-c", cmd]));
    // cgroup v2 names first, then v1's.
    let cpu = sh("cat /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us");
    assert!(cpu.starts_with("50000"), "{cpu}");
    let mem = sh("cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes");
    assert_eq!(mem.trim(), (320u64 << 20).to_string());
    assert_eq!(sh("echo $GREETING; pwd"), "hello\n/tmp\n");
    // The pool refills.
    c.eventually(Duration::from_secs(20), "the pool to refill", || pooled(&c) == 2);
    // A sandbox with an entrypoint cannot use the pool.
    let own = create(&ep, &["--", "sleep", "300"]);
    let labels = docker(&["inspect", "-f", "{{json .Config.Labels}}", &format!("flotilla-{own}-g1")]);
    assert!(!labels.contains("flotilla.pool"), "{labels}");
    // A restart adopts the pooled sandbox by its name and rebuilds the pool.
    assert!(c.node(1).stop());
    c.node(1).start();
    c.wait_leader(Duration::from_secs(20));
    assert_eq!(sh("echo $GREETING"), "hello\n");
    c.eventually(Duration::from_secs(20), "the pool to fill again", || pooled(&c) == 2);
    assert_eq!(containers(&format!("flotilla.instance={}", instance.trim())).len(), 4, "2 sandboxes + 2 pooled");
}

#[test]
fn gvisor_runtime_and_idempotent_exec_ids_and_imported_images() {
    let (c, ep) = single();
    // gVisor: the sandbox's kernel is gVisor's, not the host's.
    let g = create(&ep, &["--runtime", "runsc", "--block-network"]);
    let dmesg = out(&exec(&ep, &g, &["dmesg"]));
    assert!(dmesg.contains("gVisor"), "{dmesg}");
    assert_eq!(out(&exec(&ep, &g, &["sh", "-c", "echo ok > /work/x && cat /work/x"])), "ok\n");
    // A retried exec id does not run the command again.
    let id = create(&ep, &[]);
    rt().block_on(async {
        let client = flotilla::Client::connect([ep.as_str()]).await.unwrap();
        let sb = client.sandbox_from_id(&id).await.unwrap();
        let append = || sb.exec(["sh", "-c", "echo x >> /work/log; exit 5"]).exec_id("retry-1");
        assert_eq!(append().output().await.unwrap().exit_code, 5);
        assert_eq!(append().output().await.unwrap().exit_code, 5);
        let lines = sb.exec(["wc", "-l", "/work/log"]).output().await.unwrap();
        assert_eq!(String::from_utf8_lossy(&lines.stdout).split_whitespace().next(), Some("1"));
    });
    // An imported rootfs becomes an image sandboxes can use.
    let tar = c.dir.path().join("rootfs.tar");
    let tmp = docker(&["create", "flotilla/busybox", "true"]);
    docker(&["export", "-o", tar.to_str().unwrap(), &tmp]);
    docker(&["rm", &tmp]);
    let tags = Tags::default();
    let name = tags.add(&format!("flotilla/imported-{}", std::process::id()));
    let o = cli(&ep, &["image", "import", &name, tar.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    let images = c.json(1, &["image", "ls"]);
    assert!(images.as_array().unwrap().iter().any(|i| i["name"] == format!("{name}:latest")), "{images}");
    let imported = create(&ep, &["--image", &name]);
    assert_eq!(out(&exec(&ep, &imported, &["echo", "from import"])), "from import\n");
    cli(&ep, &["sandbox", "terminate", &imported]);
}

#[test]
fn python_base_image_builds_without_a_registry() {
    let (_c, ep) = single();
    // debootstrap from Debian's mirror, imported as flotilla/python; --rebuild so the build
    // itself is exercised on every run (about 40 s), not skipped because the image exists.
    let o = Command::new(BIN).args(["image", "build-base", "python", "--rebuild"]).output().unwrap();
    assert!(o.status.success(), "build-base python: {}", err(&o));
    let id = create(&ep, &["--image", "flotilla/python"]);
    let o = exec(&ep, &id, &["python3", "-c", "import sys; print(sum(range(10)), sys.version_info[0])"]);
    assert_eq!((o.status.code(), out(&o).as_str()), (Some(0), "45 3\n"), "{}", err(&o));
}

#[test]
fn an_exec_whose_client_leaves_is_killed() {
    let (_c, ep) = single();
    let id = create(&ep, &[]);
    rt().block_on(async {
        let client = flotilla::Client::connect([ep.as_str()]).await.unwrap();
        let sb = client.sandbox_from_id(&id).await.unwrap();
        let mut p = sb.exec(["sh", "-c", "while true; do echo tick; sleep 0.1; done"]).spawn().await.unwrap();
        assert!(p.next_event().await.unwrap().is_some(), "the loop started");
        drop(p);
        // The node notices at the next output and kills the loop.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ps = sb.exec(["ps", "-o", "args"]).output().await.unwrap();
            if !String::from_utf8_lossy(&ps.stdout).contains("while true") {
                break;
            }
            assert!(Instant::now() < deadline, "the abandoned exec is still running");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}
