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

/// Escape attempts run inside a sandbox of `runtime`; every one must fail.
fn escape_suite(runtime: &str) {
    busybox_image();
    let mut c = TestCluster::start(1, &[]);
    c.wait_leader(Duration::from_secs(20));
    let ep = c.nodes[&1].endpoint();
    let mut flags = vec!["sandbox", "create", "--wait", "--memory", "64", "--runtime", runtime];
    if runtime == "runsc" {
        flags.push("--block-network");
    }
    let o = cli(&ep, &flags);
    assert!(o.status.success(), "{}", err(&o));
    let id = out(&o).trim().to_string();
    let sh = |cmd: &str| cli(&ep, &["sandbox", "exec", &id, "--timeout", "20", "--", "sh", "-c", cmd]);
    let attempts = [
        ("mount a filesystem (CAP_SYS_ADMIN)", "mount -t tmpfs none /mnt"),
        ("add a network interface (CAP_NET_ADMIN)", "ip link add evil type dummy"),
        ("reach the engine socket", "ls /var/run/docker.sock || ls /run/docker.sock"),
        ("write the image layer", "echo x > /bin/evil"),
        ("create a device node (CAP_MKNOD)", "mknod /work/sda b 8 0"),
        ("change the hostname (CAP_SYS_ADMIN)", "hostname evil"),
    ];
    for (what, cmd) in attempts {
        let o = sh(cmd);
        assert_ne!(o.status.code(), Some(0), "{runtime}: {what} succeeded: {}", out(&o));
    }
    // Raw sockets: arping needs a packet socket, which needs CAP_NET_RAW.
    let iface = if runtime == "runsc" { "lo" } else { "eth0" };
    let o = sh(&format!("arping -c 1 -w 1 -I {iface} 127.0.0.1"));
    assert_ne!(o.status.code(), Some(0), "{runtime}: a raw socket was opened");
    if runtime == "runc" {
        assert!(err(&o).contains("not permitted"), "{runtime}: {}", err(&o));
    }
    // The host's processes (the node among them) are out of sight, so out of ptrace's reach.
    let ps = out(&sh("ps -o comm"));
    assert!(!ps.contains("flotilla") && !ps.contains("dockerd"), "{runtime}: host processes visible: {ps}");
    // Raw sockets and ptrace are not in the capability set.
    let caps = out(&sh("grep CapEff /proc/self/status"));
    let eff = u64::from_str_radix(caps.split_whitespace().nth(1).unwrap_or("ffffffff"), 16).unwrap();
    for (bit, name) in [(13, "NET_RAW"), (19, "SYS_PTRACE"), (21, "SYS_ADMIN"), (12, "NET_ADMIN"), (16, "SYS_MODULE")] {
        assert_eq!(eff & (1 << bit), 0, "{runtime}: CAP_{name} is effective: {caps}");
    }
    // Limits hold and the node stays up.
    let hog = sh("x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done");
    assert_ne!(hog.status.code(), Some(0));
    let _ = sh("f() { f | f & }; f; sleep 5");
    let o = c.cli(&ep, &["-o", "json", "cluster", "status"]);
    assert!(o.status.success(), "{runtime}: the node went down: {}", err(&o));
    // A tar with `..` entries cannot write outside the sandbox.
    let marker = format!("/tmp/flotilla-escape-{}-{runtime}", std::process::id());
    let tar = evil_tar(&format!("../../../../..{marker}"));
    rt().block_on(async {
        let client = flotilla::Client::connect([ep.as_str()]).await.unwrap();
        let sb = client.sandbox_from_id(&id).await.unwrap();
        let _ = sb.put_archive("/work", tar).await;
    });
    assert!(!std::path::Path::new(&marker).exists(), "{runtime}: a tar wrote {marker} on the host");
    // Nor can a tar that plants a symlink to a host folder and then writes through it.
    let host_dir = c.dir.path().join(format!("symlink-target-{runtime}"));
    std::fs::create_dir_all(&host_dir).unwrap();
    let tar = symlink_tar(host_dir.to_str().unwrap());
    rt().block_on(async {
        let client = flotilla::Client::connect([ep.as_str()]).await.unwrap();
        let sb = client.sandbox_from_id(&id).await.unwrap();
        let _ = sb.put_archive("/work", tar).await;
    });
    assert!(!host_dir.join("owned").exists(), "{runtime}: a tar wrote through a symlink onto the host");
    // `cp` to a path that climbs out of /work lands in the read-only image, and is refused.
    let local = c.dir.path().join("payload");
    std::fs::write(&local, "x").unwrap();
    let o = cli(&ep, &["sandbox", "cp", local.to_str().unwrap(), &format!("{id}:/work/../../etc")]);
    assert_ne!(o.status.code(), Some(0), "{runtime}: cp into /etc succeeded");
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

#[test]
fn blocked_sandboxes_cannot_reach_other_sandboxes_or_the_node() {
    busybox_image();
    let mut c = TestCluster::start(1, &[]);
    c.wait_leader(Duration::from_secs(20));
    let ep = c.nodes[&1].endpoint();
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
    let o = cli(
        &ep,
        &[
            "sandbox",
            "exec",
            &server,
            "--",
            "sh",
            "-c",
            "mkdir -p /tmp/www && echo hello > /tmp/www/index.html && httpd -p 8080 -h /tmp/www",
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    let ip = out(&cli(
        &ep,
        &["sandbox", "exec", &server, "--", "sh", "-c", "ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1"],
    ));
    let ip = ip.trim();
    assert!(!ip.is_empty());
    let probe = |from: &str, target: &str| {
        let get = format!("printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {target} 8080");
        cli(&ep, &["sandbox", "exec", from, "--timeout", "10", "--", "sh", "-c", &get])
    };
    // A networked sandbox can reach it (so the probe itself works)...
    let reached = probe(&open, ip);
    assert!(out(&reached).contains("hello"), "control probe failed: {}", err(&reached));
    // ...a blocked one cannot, nor the node's gRPC port on the host.
    assert!(!out(&probe(&blocked, ip)).contains("hello"));
    let port = c.nodes[&1].addr.rsplit_once(':').unwrap().1.to_string();
    let o = cli(
        &ep,
        &["sandbox", "exec", &blocked, "--timeout", "10", "--", "sh", "-c", &format!("nc -z -w 2 172.17.0.1 {port}")],
    );
    assert_ne!(o.status.code(), Some(0));
    // Sandboxes do not see each other's processes or files.
    cli(&ep, &["sandbox", "exec", &server, "--", "sh", "-c", "echo secret > /work/secret"]);
    let o = cli(&ep, &["sandbox", "exec", &open, "--", "ps"]);
    assert!(!out(&o).contains("httpd"), "another sandbox's process is visible: {}", out(&o));
    let o = cli(&ep, &["sandbox", "exec", &open, "--", "cat", "/work/secret"]);
    assert_ne!(o.status.code(), Some(0), "another sandbox's file is readable: {}", out(&o));
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
