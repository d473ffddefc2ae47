//! Bad input gets a precise error and the right exit code, never a crash.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::*;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_app_specs_name_the_problem() {
    let mut c = TestCluster::start(1, &[]);
    c.wait_leader(Duration::from_secs(20));
    let ep = c.nodes[&1].endpoint();
    let dir = c.dir.path().to_path_buf();
    let cases = [
        ("syntax.toml", "name = \"x\"\n[functions.a\n", "invalid TOML"),
        (
            "unknown.toml",
            "name = \"x\"\n[functions.a]\nimage = \"i\"\ncommand = [\"a\"]\nbogus = 1\n",
            "functions.a.bogus",
        ),
        (
            "minmax.toml",
            "name = \"x\"\n[functions.a]\nimage = \"i\"\ncommand = [\"a\"]\nmin_containers = 5\nmax_containers = 2\n",
            "functions.a.max_containers",
        ),
        (
            "cron.toml",
            "name = \"x\"\n[functions.a]\nimage = \"i\"\ncommand = [\"a\"]\nschedule = { cron = \"61 * * * *\" }\n",
            "functions.a.schedule",
        ),
        ("noname.toml", "[functions.a]\nimage = \"i\"\ncommand = [\"a\"]\n", "name"),
    ];
    for (file, text, needle) in cases {
        let path = dir.join(file);
        std::fs::write(&path, text).unwrap();
        let out = cli(&ep, &["app", "deploy", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{file}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{file}: {:?} lacks {needle:?}", stderr(&out));
    }
    let out = cli(&ep, &["app", "deploy", dir.join("missing.toml").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("missing.toml"), "{}", stderr(&out));
    // Nothing was deployed by any of them.
    assert!(app_names(&c, 1).is_empty());

    let out = cli(&ep, &["app", "show", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
}

#[test]
fn the_server_validates_specs_too() {
    let mut c = TestCluster::start(1, &[]);
    c.wait_leader(Duration::from_secs(20));
    let ep = c.nodes[&1].endpoint();
    rt().block_on(async {
        use flotilla_proto::control::{control_client::ControlClient, DeployAppRequest};
        let mut client = ControlClient::connect(ep).await.unwrap();
        let spec = r#"{"name":"x","functions":{"a":{"image":"i","command":["a"],"mode":"exec","cpu":-1.0,"memory_mib":256,"gpu":null,"min_containers":0,"max_containers":4,"buffer_containers":0,"scaledown_window_s":60,"concurrency":1,"timeout_s":60,"retries":{"max":0,"initial_delay_ms":1000,"backoff":2.0},"env":{},"schedule":null,"overlap":"allow","catch_up":"none","catch_up_window_s":3600}}}"#;
        let err = client
            .deploy_app(DeployAppRequest { spec_json: spec.into(), request_id: "r1".into() })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("functions.a.cpu"), "{}", err.message());
        let err = client
            .deploy_app(DeployAppRequest { spec_json: "{not json".into(), request_id: "r2".into() })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().starts_with("spec_json:"), "{}", err.message());
    });
}

#[test]
fn unreachable_endpoint_fails_with_unavailable() {
    let start = Instant::now();
    let out = cli(&format!("http://127.0.0.1:{}", free_port()), &["cluster", "status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("unavailable"), "{}", stderr(&out));
    assert!(start.elapsed() < Duration::from_secs(30));
    let out = cli("not a url", &["cluster", "status"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("endpoint"), "{}", stderr(&out));
}

#[test]
fn wrong_cluster_secret_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    let bad = dir.path().join("bad");
    std::fs::write(&good, "s3cret-one\n").unwrap();
    std::fs::write(&bad, "s3cret-two\n").unwrap();
    let good_arg = ["--cluster-secret-file", good.to_str().unwrap()];
    let mut c = TestCluster::start(3, &good_arg);
    c.wait_leader(Duration::from_secs(20));
    // Authenticated peers work: every node sees the others up.
    c.eventually(Duration::from_secs(10), "peers up with the right secret", || {
        c.status(1).is_some_and(|s| s["nodes"].as_array().unwrap().iter().all(|n| n["status"] == "up"))
    });
    let seed = c.nodes[&1].addr.clone();
    c.add_node(4, How::Join(&seed), &["--cluster-secret-file", bad.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.node(4).is_running() {
        assert!(Instant::now() < deadline, "the node with the wrong secret did not exit\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = c.nodes[&4].log_text();
    assert!(log.contains("cluster secret"), "{log}");
    let s = c.status(1).unwrap();
    assert_eq!(s["nodes"].as_array().unwrap().len(), 3, "{s}");
    // An empty secret file is a config error.
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let out = Command::new(BIN)
        .args(["node", "--data-dir", dir.path().join("e").to_str().unwrap(), "--listen", "127.0.0.1:1", "--bootstrap"])
        .args(["--cluster-secret-file", empty.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cluster-secret-file"), "{}", stderr(&out));
}

#[test]
fn bad_node_flags_and_a_busy_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let node = |extra: &[&str]| {
        Command::new(BIN)
            .args(["node", "--no-auth", "--data-dir", data.to_str().unwrap()])
            .args(extra)
            .env("RUST_LOG", "off")
            .output()
            .unwrap()
    };
    let cases: [(&[&str], &str); 5] = [
        (&["--listen", "127.0.0.1:7100", "--initial-cluster", "1=a"], "initial-cluster"),
        (&["--listen", "nonsense", "--bootstrap"], "listen"),
        (&["--listen", "127.0.0.1:7100", "--join", "127.0.0.1:7101"], "node-id"),
        (&["--listen", "0.0.0.0:7100", "--bootstrap"], "advertise"),
        (&["--listen", "127.0.0.1:7100", "--config", "/nonexistent/node.toml"], "config"),
    ];
    for (args, field) in cases {
        let out = node(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(field), "{args:?}: {}", stderr(&out));
    }
    // A second process on a data dir in use fails at once, naming the holder.
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut first = Command::new(BIN)
        .args(["node", "--no-auth", "--data-dir", data.to_str().unwrap(), "--listen", &listen, "--bootstrap"])
        .env("RUST_LOG", "off")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let start = Instant::now();
    let out = node(&["--listen", &format!("127.0.0.1:{}", free_port()), "--bootstrap"]);
    let _ = first.kill();
    let _ = first.wait();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("in use by another flotilla process"), "{}", stderr(&out));
    assert!(start.elapsed() < Duration::from_secs(2));
}
