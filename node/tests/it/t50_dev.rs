//! `flotilla dev`: a single node with embedded storage that keeps its state across restarts.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::*;

#[test]
fn dev_keeps_state_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join(".flotilla");
    let listen = format!("127.0.0.1:{}", free_port());
    let http = format!("127.0.0.1:{}", free_port());
    let ep = format!("http://{listen}");
    let start = || {
        Command::new(BIN)
            .args(["dev", "--data-dir", data.to_str().unwrap(), "--listen", &listen, "--http", &http])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let wait_up = || {
        for _ in 0..100 {
            if cli(&ep, &["cluster", "status"]).status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("dev node did not come up");
    };
    let dev = start();
    wait_up();
    assert_eq!(deploy(dir.path(), &ep, "kept"), 1);
    let _ = Command::new("kill").arg("-TERM").arg(dev.id().to_string()).status();
    let out = dev.wait_with_output().unwrap();
    assert!(out.status.success(), "dev did not exit cleanly on SIGTERM");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("endpoint {ep}")));
    assert!(data.join("raft").is_dir());

    let mut dev = start();
    wait_up();
    let health = http_get(&http, "/healthz");
    let status = http_get(&http, "/status");
    let out = cli(&ep, &["-o", "json", "app", "show", "kept"]);
    let _ = dev.kill();
    let _ = dev.wait();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let app: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(app["version"].as_u64(), Some(1));
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let body: serde_json::Value = serde_json::from_str(status.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!((body["node"].as_u64(), body["leader"].as_u64()), (Some(1), Some(1)), "{body}");
}

/// A plain HTTP/1.1 GET; returns the whole response.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn dev_with_auth_keeps_its_own_secret_and_needs_tokens() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join(".flotilla");
    let listen = format!("127.0.0.1:{}", free_port());
    let http = format!("127.0.0.1:{}", free_port());
    let ep = format!("http://{listen}");
    let mut dev = Command::new(BIN)
        .args(["dev", "--auth", "--data-dir", data.to_str().unwrap(), "--listen", &listen, "--http", &http])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let token = (0..100)
        .find_map(|_| {
            let o = cli(&ep, &["token", "bootstrap"]);
            if o.status.success() {
                return Some(String::from_utf8_lossy(&o.stdout).trim().to_string());
            }
            std::thread::sleep(Duration::from_millis(100));
            None
        })
        .expect("token bootstrap on the dev node");
    let without = cli(&ep, &["cluster", "status"]);
    let with = cli(&ep, &["--token", &token, "cluster", "status"]);
    let _ = dev.kill();
    let _ = dev.wait();
    assert_eq!(without.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&without.stderr).contains("unauthenticated"));
    assert!(with.status.success(), "{}", String::from_utf8_lossy(&with.stderr));
    let secret = data.join("cluster_secret");
    let mode = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the dev cluster secret must be private");
}
