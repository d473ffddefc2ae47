//! Security: API tokens, and escape attempts from inside sandboxes that must fail.

use std::time::{Duration, Instant};

use crate::harness::*;

fn out(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn err(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn tokens_guard_every_node_and_revocation_takes_effect_everywhere() {
    busybox_image();
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "peer-secret\n").unwrap();
    let mut c = TestCluster::start(3, &["--auth", "--cluster-secret-file", secret.path().to_str().unwrap()]);
    let (ep1, ep2, ep3) = (c.nodes[&1].endpoint(), c.nodes[&2].endpoint(), c.nodes[&3].endpoint());
    // The first token: no token needed, once.
    let o = cli(&ep2, &["token", "bootstrap", "admin"]);
    assert!(o.status.success(), "{}", err(&o));
    let admin = out(&o).trim().to_string();
    assert!(admin.starts_with("flt_"), "{admin}");
    c.token = Some(admin.clone());
    c.wait_leader(Duration::from_secs(20));
    let o = cli(&ep1, &["token", "bootstrap", "again"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("already has tokens"), "{}", err(&o));

    // No token, a made-up token, a malformed one: refused on Control and Worker alike.
    for token in [None, Some("flt_0123456789abcdef_00"), Some("garbage")] {
        let args: Vec<&str> = match token {
            Some(t) => vec!["--token", t, "cluster", "status"],
            None => vec!["cluster", "status"],
        };
        let o = cli(&ep3, &args);
        assert_eq!(o.status.code(), Some(1), "{token:?}");
        assert!(err(&o).contains("unauthenticated"), "{token:?}: {}", err(&o));
    }
    let o = cli(&ep1, &["sandbox", "exec", "sb-any", "--", "true"]);
    assert!(err(&o).contains("unauthenticated"), "{}", err(&o));
    // Tokens on without a cluster secret would leave the node-to-node service open: refused.
    let o = std::process::Command::new(BIN)
        .args([
            "node",
            "--data-dir",
            c.dir.path().join("nosecret").to_str().unwrap(),
            "--listen",
            "127.0.0.1:1",
            "--bootstrap",
        ])
        .env_remove("FLOTILLA_CLUSTER_SECRET")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("cluster-secret-file"), "{}", err(&o));

    // With the token: writes through one node, exec proxied through another.
    let dir = c.dir.path().to_path_buf();
    let spec = write_app(&dir, "secured");
    let o = c.cli(&ep2, &["app", "deploy", spec.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    let o = c.cli(&ep1, &["sandbox", "create", "--wait"]);
    assert!(o.status.success(), "{}", err(&o));
    let sb = out(&o).trim().to_string();
    for ep in [&ep1, &ep2, &ep3] {
        let o = c.cli(ep, &["sandbox", "exec", &sb, "--", "echo", "ok"]);
        assert_eq!(out(&o), "ok\n", "via {ep}: {}", err(&o));
    }

    // A second token works until it is revoked, then fails on every node.
    let o = c.cli(&ep1, &["-o", "json", "token", "create", "ci"]);
    let created: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let (ci, ci_id) =
        (created["secret"].as_str().unwrap().to_string(), created["token"]["id"].as_str().unwrap().to_string());
    assert!(cli(&ep3, &["--token", &ci, "app", "list"]).status.success());
    let listed = c.json(2, &["token", "ls"]);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(!listed.to_string().contains(&ci), "token ls must not show secrets");
    let o = c.cli(&ep1, &["token", "revoke", &ci_id]);
    assert!(o.status.success(), "{}", err(&o));
    let revoked = Instant::now();
    for ep in [&ep1, &ep2, &ep3] {
        while cli(ep, &["--token", &ci, "app", "list"]).status.success() {
            assert!(revoked.elapsed() < Duration::from_secs(1), "revoked token still works on {ep}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    eprintln!("revocation effective on all nodes after {:?}", revoked.elapsed());
    assert!(c.cli(&ep3, &["app", "list"]).status.success(), "the admin token still works");
}

/// What a command run inside a sandbox did: its exit status and its output (stdout and
/// stderr together), as reported from inside. [`run_inside`] wraps the command as
/// `{ CMD; } 2>&1; echo "exit=$?"`, so the CLI itself exits 0 whenever the exec ran: a CLI or RPC failure can
/// never pass for a refusal.
struct Inside {
    exit: i32,
    text: String,
}

fn inside(o: &std::process::Output, cmd: &str) -> Inside {
    assert_eq!(o.status.code(), Some(0), "the exec of {cmd:?} itself failed: {}{}", out(o), err(o));
    let text = out(o);
    let (text, exit) =
        text.trim_end().rsplit_once("exit=").unwrap_or_else(|| panic!("{cmd:?}: no exit status in {text:?}"));
    Inside {
        exit: exit.trim().parse().unwrap_or_else(|_| panic!("{cmd:?}: exit status {exit:?}")),
        text: text.to_string(),
    }
}

/// Runs `cmd` in sandbox `id` through `ep` (exec timeout 20 s) and reports it from inside.
fn run_inside(ep: &str, id: &str, cmd: &str) -> Inside {
    let wrapped = format!("{{ {cmd}; }} 2>&1; echo \"exit=$?\"");
    inside(&cli(ep, &["sandbox", "exec", id, "--timeout", "20", "--", "sh", "-c", &wrapped]), cmd)
}

/// Escape attempts run inside a sandbox of `runtime`; every one must be refused by the
/// kernel (or gVisor) with the error that names why, seen from inside the sandbox.
fn escape_suite(runtime: &str) {
    let (c, ep) = single();
    let mut flags = vec!["sandbox", "create", "--wait", "--memory", "64", "--runtime", runtime];
    if runtime == "runsc" {
        flags.push("--block-network");
    }
    let o = cli(&ep, &flags);
    assert!(o.status.success(), "{}", err(&o));
    let id = out(&o).trim().to_string();
    let sh = |cmd: &str| run_inside(&ep, &id, cmd);
    // Positive control: the same wrapper reports a command that works.
    let ok = sh("echo fine > /work/ok && cat /work/ok");
    assert_eq!((ok.exit, ok.text.trim()), (0, "fine"), "{runtime}: the control command failed");
    const EPERM: &[&str] = &["Operation not permitted", "permission denied"];
    let attempts: [(&str, &str, &[&str]); 7] = [
        ("mount a filesystem (CAP_SYS_ADMIN)", "mount -t tmpfs none /mnt", EPERM),
        ("add a network interface (CAP_NET_ADMIN)", "ip link add evil type dummy", EPERM),
        ("reach the engine socket", "ls /var/run/docker.sock || ls /run/docker.sock", &["No such file or directory"]),
        ("write the image layer", "echo x > /bin/evil", &["Read-only file system"]),
        ("create a device node (CAP_MKNOD)", "mknod /work/sda b 8 0", EPERM),
        ("change the hostname (CAP_SYS_ADMIN)", "hostname evil", EPERM),
        // Raw sockets: arping needs a packet socket, which needs CAP_NET_RAW.
        (
            "open a raw socket (CAP_NET_RAW)",
            if runtime == "runsc" { "arping -c 1 -w 1 -I lo 127.0.0.1" } else { "arping -c 1 -w 1 -I eth0 127.0.0.1" },
            &["Operation not permitted", "Address family not supported"],
        ),
    ];
    for (what, cmd, refusals) in attempts {
        let r = sh(cmd);
        assert_ne!(r.exit, 0, "{runtime}: {what} succeeded: {}", r.text);
        assert!(
            refusals.iter().any(|e| r.text.to_lowercase().contains(&e.to_lowercase())),
            "{runtime}: {what} failed (exit {}), but not with {refusals:?}: {}",
            r.exit,
            r.text
        );
    }
    // The host's processes (the node among them) are out of sight, so out of ptrace's reach.
    let ps = sh("ps -o comm");
    assert_eq!(ps.exit, 0, "{runtime}: {}", ps.text);
    assert!(ps.text.contains("ps"), "{runtime}: ps saw nothing: {}", ps.text);
    assert!(
        !ps.text.contains("flotilla") && !ps.text.contains("dockerd"),
        "{runtime}: host processes visible: {}",
        ps.text
    );
    // Raw sockets and ptrace are not in the capability set.
    let caps = sh("grep CapEff /proc/self/status");
    let eff = u64::from_str_radix(caps.text.split_whitespace().nth(1).expect("a CapEff line"), 16).unwrap();
    for (bit, name) in [(13, "NET_RAW"), (19, "SYS_PTRACE"), (21, "SYS_ADMIN"), (12, "NET_ADMIN"), (16, "SYS_MODULE")] {
        assert_eq!(eff & (1 << bit), 0, "{runtime}: CAP_{name} is effective: {}", caps.text);
    }
    let rt = rt();
    let client = rt.block_on(flotilla::Client::connect([ep.as_str()])).unwrap();
    let put = |tar: Vec<u8>| {
        rt.block_on(async { client.sandbox_from_id(&id).await.unwrap().put_archive("/work", tar).await })
    };
    // Positive control: a plain tar lands in /work.
    let mut plain = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(5);
    header.set_mode(0o644);
    plain.append_data(&mut header, "plain.txt", &b"plain"[..]).unwrap();
    put(plain.into_inner().unwrap()).unwrap_or_else(|e| panic!("{runtime}: a plain tar was refused: {e}"));
    assert_eq!(sh("cat /work/plain.txt").text, "plain", "{runtime}: the plain tar's file");
    // A tar with `..` entries is refused before anything is extracted, and writes nothing outside.
    let marker = format!("/tmp/flotilla-escape-{}-{runtime}", std::process::id());
    let refused = put(evil_tar(&format!("../../../../..{marker}")));
    let e = refused.expect_err("a tar climbing out of /work was accepted");
    assert!(e.to_string().contains("outside of"), "{runtime}: refused for another reason: {e}");
    assert!(!std::path::Path::new(&marker).exists(), "{runtime}: a tar wrote {marker} on the host");
    // Nor can a tar that plants a symlink to a host folder and then writes through it.
    let host_dir = c.dir.path().join(format!("symlink-target-{runtime}"));
    std::fs::create_dir_all(&host_dir).unwrap();
    // It is refused before anything is extracted (and the sandbox's own tar would resolve
    // the link inside the sandbox, where the folder does not exist).
    let through = put(symlink_tar(host_dir.to_str().unwrap()));
    let e = through.expect_err("a tar writing through a symlink was accepted");
    assert!(
        e.to_string().contains("esc/owned is below esc, a symbolic link"),
        "{runtime}: refused for another reason: {e}"
    );
    assert!(!host_dir.join("owned").exists(), "{runtime}: a tar wrote through a symlink onto the host");
    // `cp` to a path that climbs out of /work lands in the read-only image, and is refused.
    let local = c.dir.path().join("payload");
    std::fs::write(&local, "x").unwrap();
    let o = cli(&ep, &["sandbox", "cp", local.to_str().unwrap(), &format!("{id}:/work/../../etc")]);
    assert_eq!(o.status.code(), Some(1), "{runtime}: cp into /etc: {}", err(&o));
    let ls = sh("ls /etc/payload");
    assert!(ls.exit != 0 && ls.text.contains("No such file"), "{runtime}: cp wrote /etc/payload: {}", ls.text);
    // The fork bomb gets a sandbox of its own with memory for all its processes, so the
    // pids limit (512) is what stops it: in 64 MiB, 512 shells can exhaust the memory first,
    // and the OOM killer may then pick the sandbox's init.
    let roomy: Vec<&str> = flags.iter().map(|f| if *f == "64" { "1024" } else { f }).collect();
    let o = cli(&ep, &roomy);
    assert!(o.status.success(), "{}", err(&o));
    fork_bomb(&c, &ep, out(&o).trim(), runtime);
    memory_hog(&c, &ep, &id, runtime);
}

/// An exec whose gVisor sandbox died under it ends by its timeout (124), or by the engine
/// losing the sandbox first (128, with gVisor's "WaitPID failed" message), whichever comes
/// first.
fn lost_with_its_sandbox(o: &std::process::Output, runtime: &str, what: &str) {
    let lost = o.status.code() == Some(128) && err(o).contains("WaitPID");
    assert!(o.status.code() == Some(124) || lost, "{runtime}: the {what}'s exec: {:?} {}", o.status, err(o));
}

/// Waits (20 s at most) until sandbox `id` no longer runs, and checks its exit code.
fn ended_with(c: &TestCluster, id: &str, code: i64, runtime: &str, why: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let shown = c.json(1, &["sandbox", "show", id]);
        if shown["state"] != "running" {
            assert_eq!(shown["exit_code"], code, "{runtime}: after {why}, the sandbox ended otherwise: {shown}");
            return;
        }
        assert!(Instant::now() < deadline, "{runtime}: after {why}, the sandbox still shows running: {shown}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A fork bomb in sandbox `id` (with memory to spare) meets the pids limit; the exec's shell spins (a builtin loop,
/// no fork) until its timeout (124). Under runc the sandbox answers again afterwards. Under
/// gVisor the bomb ends the whole sandbox (its kernel cannot make host threads past the
/// limit and exits with 2; plain `docker run --runtime runsc --pids-limit` does the same):
/// the node reports it ended. Either way the node stays up.
fn fork_bomb(c: &TestCluster, ep: &str, id: &str, runtime: &str) {
    let bomb = cli(
        ep,
        &["sandbox", "exec", id, "--timeout", "5", "--", "sh", "-c", "f() { f | f & }; f; while :; do :; done"],
    );
    if runtime == "runc" {
        assert_eq!(bomb.status.code(), Some(124), "{runtime}: the fork bomb's exec did not time out: {}", err(&bomb));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let o = cli(ep, &["sandbox", "exec", id, "--timeout", "5", "--", "echo", "alive"]);
            if o.status.success() && out(&o) == "alive\n" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{runtime}: the sandbox did not answer after the fork bomb: {}",
                err(&o)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    } else {
        lost_with_its_sandbox(&bomb, runtime, "fork bomb");
        ended_with(c, id, 2, runtime, "a fork bomb");
    }
    let o = c.cli(ep, &["-o", "json", "cluster", "status"]);
    assert!(o.status.success(), "{runtime}: the node went down: {}", err(&o));
}

/// The memory limit (64 MiB) stops a hog in sandbox `id`. Under runc the kernel's OOM killer
/// kills the hog alone (exit 137) and the sandbox answers on. Under gVisor the sandbox's
/// whole kernel lives in the limited cgroup, so the OOM killer ends the sandbox: the exec
/// ends with it (see [`lost_with_its_sandbox`]) and the sandbox ends with 137. Either way the node stays.
fn memory_hog(c: &TestCluster, ep: &str, id: &str, runtime: &str) {
    let hog = "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done";
    let o = cli(ep, &["sandbox", "exec", id, "--timeout", "5", "--", "sh", "-c", hog]);
    if runtime == "runc" {
        assert_eq!(o.status.code(), Some(137), "{runtime}: the memory hog was not OOM-killed: {}", err(&o));
        let alive = run_inside(ep, id, "echo alive");
        assert_eq!(alive.text.trim(), "alive", "{runtime}: the sandbox did not survive its memory hog");
    } else {
        lost_with_its_sandbox(&o, runtime, "memory hog");
        ended_with(c, id, 137, runtime, "a memory hog");
    }
    let o = c.cli(ep, &["-o", "json", "cluster", "status"]);
    assert!(o.status.success(), "{runtime}: the node went down: {}", err(&o));
}

/// A tar whose one entry is named `name` verbatim (the tar crate refuses `..` in paths it
/// builds, so the name is written into the header by hand).
fn evil_tar(name: &str) -> Vec<u8> {
    let mut header = tar::Header::new_old();
    let bytes = name.as_bytes();
    header.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
    header.set_size(5);
    header.set_mode(0o644);
    header.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&header, &b"owned"[..]).unwrap();
    b.into_inner().unwrap()
}

/// A tar that makes `esc` a symlink to `target`, then writes `esc/owned`.
fn symlink_tar(target: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    link.set_mode(0o777);
    b.append_link(&mut link, "esc", target).unwrap();
    let mut file = tar::Header::new_gnu();
    file.set_size(5);
    file.set_mode(0o644);
    b.append_data(&mut file, "esc/owned", &b"owned"[..]).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn escape_attempts_fail_under_runc() {
    escape_suite("runc");
}

#[test]
fn escape_attempts_fail_under_gvisor() {
    escape_suite("runsc");
}

/// A TCP service on the host: it answers every connection with its greeting and counts
/// them. Stands in for any host port (a node listening on all addresses, say).
struct HostService {
    port: u16,
    greeting: String,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl HostService {
    /// Listens on `ip` (an address of this host), on a free port.
    fn start(ip: &str) -> Self {
        use std::io::Write;
        let listener = std::net::TcpListener::bind((ip, 0)).unwrap_or_else(|e| panic!("listen on {ip}: {e}"));
        let port = listener.local_addr().unwrap().port();
        let greeting = format!("flotilla-host-service-{}-{port}", std::process::id());
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (count, line) = (accepted.clone(), format!("{greeting}\n"));
        // The thread ends with the test process; it holds nothing else.
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = conn.write_all(line.as_bytes());
            }
        });
        HostService { port, greeting, accepted }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[test]
fn blocked_sandboxes_cannot_reach_other_sandboxes_or_the_host() {
    let (_c, ep) = single();
    let create = |flags: &[&str]| {
        let o = cli(&ep, &[&["sandbox", "create", "--wait"], flags].concat());
        assert!(o.status.success(), "{}", err(&o));
        out(&o).trim().to_string()
    };
    let server = create(&[]);
    let blocked = create(&["--block-network"]);
    let open = create(&[]);
    // A server in one sandbox on its network address.
    // busybox httpd daemonizes, so it outlives the exec that started it.
    let started =
        run_inside(&ep, &server, "mkdir -p /tmp/www && echo hello > /tmp/www/index.html && httpd -p 8080 -h /tmp/www");
    assert_eq!(started.exit, 0, "{}", started.text);
    let ip = run_inside(&ep, &server, "ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1").text;
    let ip = ip.trim();
    assert!(!ip.is_empty());
    let get = |target: &str| format!("printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {target} 8080");
    // A networked sandbox can reach it (so the probe itself works)...
    let reached = run_inside(&ep, &open, &get(ip));
    assert!(reached.text.contains("hello"), "control probe failed: {}", reached.text);
    // ...a blocked one cannot: it has no route there at all.
    let cut = run_inside(&ep, &blocked, &get(ip));
    assert!(
        cut.exit != 0 && cut.text.contains("Network is unreachable") && !cut.text.contains("hello"),
        "a blocked sandbox reached another sandbox: {}",
        cut.text
    );
    // A service on the host, on the address sandboxes reach it by (their default gateway).
    let gateway = run_inside(&ep, &open, "ip route | awk '/^default/ {print $3}'").text;
    let gateway = gateway.trim();
    assert!(gateway.parse::<std::net::Ipv4Addr>().is_ok(), "no default gateway in a networked sandbox: {gateway:?}");
    let host = HostService::start(gateway);
    let probe = format!("nc -w 2 {gateway} {} </dev/null", host.port);
    // A networked sandbox reaches it (the probe works)...
    let reached = run_inside(&ep, &open, &probe);
    assert!(reached.text.contains(&host.greeting), "control probe of the host failed: {}", reached.text);
    let before = host.accepted();
    assert!(before >= 1);
    // ...a blocked one cannot, and the service never sees it.
    let cut = run_inside(&ep, &blocked, &probe);
    assert!(
        cut.exit != 0 && cut.text.contains("Network is unreachable") && !cut.text.contains(&host.greeting),
        "a blocked sandbox reached the host: {}",
        cut.text
    );
    assert_eq!(host.accepted(), before, "the host service accepted a connection from the blocked sandbox");
    // Sandboxes do not see each other's processes or files.
    assert_eq!(run_inside(&ep, &server, "echo secret > /work/secret").exit, 0);
    let ps = run_inside(&ep, &open, "ps");
    assert!(ps.text.contains("ps") && !ps.text.contains("httpd"), "another sandbox's process is visible: {}", ps.text);
    let cat = run_inside(&ep, &open, "cat /work/secret");
    assert!(cat.exit != 0 && cat.text.contains("No such file"), "another sandbox's file is readable: {}", cat.text);
}

/// A CA and a certificate for 127.0.0.1 signed by it, made with the openssl CLI.
fn make_certs(dir: &std::path::Path, tag: &str) -> (String, String, String) {
    let p = |f: &str| dir.join(format!("{tag}-{f}")).to_str().unwrap().to_string();
    let run = |args: &[&str]| {
        let o = std::process::Command::new("openssl").args(args).output().expect("openssl CLI");
        assert!(o.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        &format!("/CN=flotilla-test-ca-{tag}"),
        "-keyout",
        &p("ca.key"),
        "-out",
        &p("ca.crt"),
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &p("node.key"),
        "-out",
        &p("node.csr"),
    ]);
    std::fs::write(p("ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        &p("node.csr"),
        "-CA",
        &p("ca.crt"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &p("ext"),
        "-out",
        &p("node.crt"),
    ]);
    (p("node.crt"), p("node.key"), p("ca.crt"))
}

#[test]
fn tls_protects_clients_and_peers() {
    busybox_image();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, ca) = make_certs(dir.path(), "good");
    let (_, _, other_ca) = make_certs(dir.path(), "other");
    let c = TestCluster::start(3, &["--tls-cert", &cert, "--tls-key", &key, "--tls-ca", &ca]);
    let https: Vec<String> = c.nodes.values().map(|n| format!("https://{}", n.addr)).collect();
    let tls = |ep: &str, args: &[&str]| cli(ep, &[&["--tls-ca", ca.as_str()], args].concat());
    // The nodes elect a leader over TLS (Raft and probes run on the Peer service).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = tls(&https[0], &["-o", "json", "cluster", "status"]);
        let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        if s["leader"].as_u64().is_some()
            && s["nodes"].as_array().is_some_and(|n| n.iter().all(|n| n["status"] == "up"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "no TLS cluster: {}\n{}", err(&o), c.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    // Writes are forwarded between nodes and reads served everywhere, all over TLS.
    let spec = write_app(c.dir.path(), "tls-app");
    let o = tls(&https[1], &["app", "deploy", spec.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    let o = tls(&https[2], &["-o", "json", "app", "show", "tls-app"]);
    assert!(o.status.success(), "{}", err(&o));
    // Exec proxied from one node to the host of the sandbox, over TLS.
    let o = tls(&https[0], &["sandbox", "create", "--wait"]);
    let sb = out(&o).trim().to_string();
    for ep in &https {
        let o = tls(ep, &["sandbox", "exec", &sb, "--", "echo", "sealed"]);
        assert_eq!(out(&o), "sealed\n", "via {ep}: {}", err(&o));
    }
    // Plaintext clients and clients trusting another CA get nowhere.
    let plain = cli(&format!("http://{}", c.nodes[&1].addr), &["cluster", "status"]);
    assert_ne!(plain.status.code(), Some(0));
    let wrong = cli(&https[0], &["--tls-ca", &other_ca, "cluster", "status"]);
    assert_ne!(wrong.status.code(), Some(0));
    // Half a TLS configuration is a precise config error.
    let o = std::process::Command::new(BIN)
        .args([
            "node",
            "--data-dir",
            dir.path().join("x").to_str().unwrap(),
            "--listen",
            "127.0.0.1:1",
            "--bootstrap",
            "--tls-cert",
            &cert,
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("tls"), "{}", err(&o));
}
