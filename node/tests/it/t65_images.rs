//! Images from a real registry and from builds: `image pull` on every node (or one), the
//! on-demand pull of a sandbox's missing image, stored registry logins against a registry
//! with basic auth and TLS, `image build` from a local context, app specs whose image is
//! built at deploy and cached by content, and the cluster-wide `image ls` / `image rm`.
//!
//! The registry is Debian's `docker-registry` (the CNCF distribution registry) started here as
//! a plain process on a free loopback port, its storage in a temp dir. Test images are made
//! with the engine (`docker build` from `flotilla/busybox`, adding a file with unique content),
//! pushed, and then removed locally, so a pull must really fetch a layer. Registries and tags
//! made here are removed when a test ends, pass or fail ([`Registry`]'s and [`Tags`]' `Drop`).

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;
use crate::t75_functions::{err, out};

/// A registry process on a free loopback port; killed (and its storage removed) on drop.
struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

/// Basic auth (htpasswd, bcrypt) and TLS (a self-signed certificate for 127.0.0.1).
struct Secured {
    user: &'static str,
    password: &'static str,
}

impl Registry {
    fn start(secured: Option<&Secured>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("storage").display()
        );
        if let Some(s) = secured {
            let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
            let o = Command::new("openssl")
                .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
                .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key.to_str().unwrap()])
                .args(["-out", cert.to_str().unwrap()])
                .output()
                .expect("openssl (scripts/test installs it)");
            assert!(o.status.success(), "openssl: {}", err(&o));
            let htpasswd = dir.path().join("htpasswd");
            let o = Command::new("htpasswd")
                .args(["-Bbc", htpasswd.to_str().unwrap(), s.user, s.password])
                .output()
                .expect("htpasswd from apache2-utils (scripts/test installs it)");
            assert!(o.status.success(), "htpasswd: {}", err(&o));
            config += &format!(
                "  tls:\n    certificate: {}\n    key: {}\nauth:\n  htpasswd:\n    realm: flotilla-test\n    path: {}\n",
                cert.display(),
                key.display(),
                htpasswd.display()
            );
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry from Debian's docker-registry package (scripts/test installs it)");
        let registry = Registry { child, port, _dir: dir };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "the registry did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A unique string for image contents and names.
fn unique() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    )
}

/// Builds an image with the engine (`FROM flotilla/busybox`, a file `/marker` holding
/// `marker`), pushes it as `reference` with the docker CLI (`docker_config` holds its login,
/// if the registry needs one) and removes the local copy.
fn push_test_image(reference: &str, marker: &str, docker_config: Option<&Path>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), format!("FROM flotilla/busybox\nRUN echo {marker} > /marker\n"))
        .unwrap();
    let run = |args: &[&str]| {
        let mut cmd = Command::new("docker");
        if let Some(config) = docker_config {
            cmd.arg("--config").arg(config);
        }
        let o = cmd.args(args).env("DOCKER_BUILDKIT", "0").output().unwrap();
        assert!(o.status.success(), "docker {args:?}: {}", err(&o));
    };
    run(&["build", "-q", "-t", reference, dir.path().to_str().unwrap()]);
    run(&["push", reference]);
    run(&["rmi", reference]);
}

fn json_of(o: &std::process::Output) -> Value {
    assert!(o.status.success(), "{}", err(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", out(o)))
}

/// `sandbox create --image IMAGE --wait`, then the sandbox's `/marker`.
fn marker_in_sandbox(ep: &str, image: &str) -> String {
    let o = cli(ep, &["sandbox", "create", "--image", image, "--wait"]);
    assert!(o.status.success(), "sandbox from {image}: {}", err(&o));
    let id = out(&o).trim().to_string();
    let o = cli(ep, &["sandbox", "exec", &id, "--", "cat", "/marker"]);
    assert!(o.status.success(), "{}", err(&o));
    cli(ep, &["sandbox", "terminate", &id]);
    out(&o).trim().to_string()
}

/// The nodes `image ls` says have `name`, empty if none.
fn nodes_with(c: &TestCluster, name: &str) -> Vec<u64> {
    let images = c.json(1, &["image", "ls"]);
    images
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .map(|i| i["nodes"].as_array().unwrap().iter().map(|n| n.as_u64().unwrap()).collect())
        .unwrap_or_default()
}

/// `image rm`, retried while a just-terminated sandbox's container still holds the image.
fn remove_everywhere(c: &TestCluster, name: &str) -> Value {
    let ep = c.nodes[&1].endpoint();
    let mut last = String::new();
    for _ in 0..100 {
        let o = cli(&ep, &["-o", "json", "image", "rm", name]);
        if o.status.success() {
            return serde_json::from_slice(&o.stdout).unwrap();
        }
        last = err(&o);
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("image rm {name}: {last}");
}

#[test]
fn registry_images_are_pulled_on_every_node_on_one_and_on_demand() {
    busybox_image();
    let tags = Tags::default();
    let registry = Registry::start(None);
    let mut c = TestCluster::start(3, &[]);
    c.wait_leader(Duration::from_secs(20));
    let ep = c.nodes[&1].endpoint();
    let marker = unique();
    let reference = tags.add(&format!("{}/team/bb:1", registry.host()));
    push_test_image(&reference, &marker, None);

    eprintln!("--- image pull: every node, one outcome each");
    let pulled = json_of(&cli(&ep, &["-o", "json", "image", "pull", &reference]));
    let mut nodes: Vec<u64> = pulled.as_array().unwrap().iter().map(|o| o["node"].as_u64().unwrap()).collect();
    nodes.sort();
    assert_eq!(nodes, [1, 2, 3], "{pulled}");
    assert!(pulled.as_array().unwrap().iter().all(|o| o["id"].as_str().unwrap().starts_with("sha256:")), "{pulled}");
    assert_eq!(nodes_with(&c, &reference), [1, 2, 3]);
    assert_eq!(marker_in_sandbox(&ep, &reference), marker);

    eprintln!("--- image rm: gone from every node");
    let removed = remove_everywhere(&c, &reference);
    assert!(!removed["removed"].as_array().unwrap().is_empty(), "{removed}");
    assert!(nodes_with(&c, &reference).is_empty());
    let o = cli(&ep, &["image", "rm", &reference]);
    assert_eq!(o.status.code(), Some(1), "removing it again: {}", err(&o));
    assert!(err(&o).contains("not found"), "{}", err(&o));

    eprintln!("--- a sandbox whose registry image is missing pulls it before it starts");
    assert_eq!(marker_in_sandbox(&ep, &reference), marker);
    remove_everywhere(&c, &reference);

    eprintln!("--- image pull --node 2: that node only");
    let pulled = json_of(&cli(&ep, &["-o", "json", "image", "pull", &reference, "--node", "2"]));
    assert_eq!(pulled.as_array().unwrap().len(), 1, "{pulled}");
    assert_eq!(pulled[0]["node"], 2);
    remove_everywhere(&c, &reference);

    eprintln!("--- bad input: unknown image, unreachable registry, unknown node");
    let unknown = format!("{}/team/none:1", registry.host());
    let o = cli(&ep, &["image", "pull", &unknown]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains(&unknown) && err(&o).contains("manifest unknown"), "{}", err(&o));
    let o = cli(&ep, &["sandbox", "create", "--image", &unknown, "--wait"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains(&format!("pulling {unknown} failed")), "{}", err(&o));
    let nowhere = format!("127.0.0.1:{}/team/bb:1", free_port());
    let o = cli(&ep, &["image", "pull", &nowhere, "--node", "1"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("connection refused"), "{}", err(&o));
    let o = cli(&ep, &["image", "pull", &reference, "--node", "9"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("node: 9 is not a member"), "{}", err(&o));
    assert!(nodes_with(&c, &unknown).is_empty() && nodes_with(&c, &nowhere).is_empty());
}

/// `image login NAME --username U --password-stdin` with `password` on stdin.
fn login(ep: &str, registry: &str, user: &str, password: &str) {
    let mut child = Command::new(BIN)
        .args(["--endpoint", ep, "image", "login", registry, "--username", user, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "image login: {}", err(&o));
    assert!(!out(&o).contains(password), "the login echoes no password: {}", out(&o));
}

/// The registry serves HTTPS with a self-signed certificate and asks for a login. The engine
/// treats registries on 127.0.0.0/8 as "insecure" by default: it speaks TLS to them without
/// checking the certificate, so this shows the node's side (credentials sent with the pull,
/// over TLS) but not certificate trust, which is the engine's own configuration
/// (`/etc/docker/certs.d`) on each machine.
#[test]
fn a_registry_with_basic_auth_and_tls_needs_the_stored_login() {
    busybox_image();
    let secured = Secured { user: "alice", password: "s3cret-h4-pw" };
    let tags = Tags::default();
    let registry = Registry::start(Some(&secured));
    let (c, ep) = single();
    let docker_config = tempfile::tempdir().unwrap();
    let mut docker_login = Command::new("docker")
        .arg("--config")
        .arg(docker_config.path())
        .args(["login", &registry.host(), "-u", secured.user, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    docker_login.stdin.take().unwrap().write_all(secured.password.as_bytes()).unwrap();
    assert!(docker_login.wait().unwrap().success(), "docker login to the test registry");
    let marker = unique();
    let reference = tags.add(&format!("{}/team/private:1", registry.host()));
    push_test_image(&reference, &marker, Some(docker_config.path()));

    eprintln!("--- no login stored: refused");
    let o = cli(&ep, &["image", "pull", &reference]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("no login is stored for"), "{}", err(&o));
    eprintln!("--- a wrong password: refused, unauthorized");
    login(&ep, &registry.host(), secured.user, "wrong");
    let o = cli(&ep, &["image", "pull", &reference]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("unauthorized"), "{}", err(&o));
    assert!(nodes_with(&c, &reference).is_empty());

    eprintln!("--- the right login: pulled, and used on demand too");
    login(&ep, &registry.host(), secured.user, secured.password);
    json_of(&cli(&ep, &["-o", "json", "image", "pull", &reference]));
    assert_eq!(nodes_with(&c, &reference), [1]);
    remove_everywhere(&c, &reference);
    assert_eq!(marker_in_sandbox(&ep, &reference), marker);
    remove_everywhere(&c, &reference);

    eprintln!("--- the password is in no reply and no log");
    let status = cli(&ep, &["-o", "json", "cluster", "status"]);
    assert!(!out(&status).contains(secured.password));
    assert!(!c.logs().contains(secured.password), "a node logged the registry password");
}

#[test]
fn images_build_from_a_context_and_app_specs_build_once_per_content() {
    let tags = Tags::default();
    let (c, ep) = single();
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    let marker = unique();
    std::fs::write(ctx.join("marker"), format!("{marker}\n")).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM flotilla/busybox\nCOPY marker /marker\n").unwrap();

    eprintln!("--- image build: FROM a local image, then a sandbox from it");
    let tag = tags.add(&format!("flotilla-test/built-{}:1", std::process::id()));
    let o = cli(&ep, &["-o", "json", "image", "build", "-t", &tag, ctx.to_str().unwrap()]);
    let built = json_of(&o);
    assert_eq!(built["image"], tag.as_str());
    assert!(err(&o).contains("Step 2/2 : COPY marker /marker"), "the build output is streamed: {}", err(&o));
    assert_eq!(marker_in_sandbox(&ep, &tag), marker);

    eprintln!("--- a failing Dockerfile: exit 1 with the engine's reason, nothing tagged");
    let bad_tag = tags.add(&format!("flotilla-test/bad-{}:1", std::process::id()));
    std::fs::write(dir.path().join("Bad.Dockerfile"), "FROM flotilla/busybox\nRUN exit 3\n").unwrap();
    let bad_file = dir.path().join("Bad.Dockerfile");
    let o = cli(&ep, &["image", "build", "-t", &bad_tag, "-f", bad_file.to_str().unwrap(), ctx.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("returned a non-zero code: 3"), "{}", err(&o));
    assert!(nodes_with(&c, &bad_tag).is_empty());
    let o = cli(&ep, &["image", "build", "-t", &bad_tag, dir.path().join("nope").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "a missing context is bad input: {}", err(&o));
    assert!(err(&o).contains("context"), "{}", err(&o));

    eprintln!("--- app spec image = {{ dockerfile, context }}: built at deploy, once per content");
    let spec = dir.path().join("built.toml");
    std::fs::write(
        &spec,
        "name = \"built\"\n[functions.show]\nimage = { dockerfile = \"Dockerfile\", context = \"ctx\" }\ncommand = [\"cat\", \"/marker\"]\n",
    )
    .unwrap();
    let deploy = || {
        let d = json_of(&cli(&ep, &["-o", "json", "app", "deploy", spec.to_str().unwrap()]));
        let image = d["images"][0]["image"].as_str().unwrap().to_string();
        tags.add(&image);
        (image, d["images"][0]["built"].as_bool().unwrap())
    };
    let (first, built) = deploy();
    assert!(built && first.starts_with("flotilla-build/built:"), "{first}");
    let o = cli(&ep, &["fn", "call", "built/show", "--input", ""]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o).trim(), marker);
    let (again, built) = deploy();
    assert_eq!((again.as_str(), built), (first.as_str(), false), "an unchanged redeploy builds nothing");
    std::fs::write(ctx.join("marker"), "changed\n").unwrap();
    let (changed, built) = deploy();
    assert!(built && changed != first, "a changed context builds a new image: {changed}");
    let o = cli(&ep, &["fn", "call", "built/show", "--input", ""]);
    assert_eq!(out(&o).trim(), "changed", "{}", err(&o));
    cli(&ep, &["app", "rm", "built"]);
}

/// `--docker-host` wins over `DOCKER_HOST`, and a node whose engine address answers nothing
/// says which address it tried and offers no capacity.
#[test]
fn a_node_uses_the_engine_its_docker_host_names() {
    busybox_image();
    let bogus = "unix:///nonexistent/flotilla-h4/docker.sock";
    let mut c = TestCluster::empty();
    let addr = c.add_node_with_env(
        1,
        How::Bootstrap,
        &["--docker-host", "unix:///var/run/docker.sock"],
        &[("DOCKER_HOST", bogus)],
    );
    c.wait_leader(Duration::from_secs(20));
    let ep = format!("http://{addr}");
    let o = cli(&ep, &["sandbox", "create", "--image", "flotilla/busybox", "--wait"]);
    assert!(o.status.success(), "the flag's engine runs sandboxes: {}", err(&o));
    let o = cli(&ep, &["sandbox", "exec", out(&o).trim(), "--", "echo", "engine ok"]);
    assert_eq!(out(&o), "engine ok\n", "{}", err(&o));

    c.add_node_with_env(2, How::Join(&addr), &[], &[("DOCKER_HOST", bogus)]);
    c.eventually(Duration::from_secs(20), "node 2 reports the engine address it could not reach", || {
        c.nodes[&2].log_text().contains(&format!("cannot reach the Docker engine at {bogus}"))
    });
    c.eventually(Duration::from_secs(20), "node 2 registered with no capacity", || {
        let s = c.json(1, &["cluster", "status"]);
        s["nodes"].as_array().unwrap().iter().any(|n| n["id"] == 2 && n["cpus"] == 0)
    });
}

/// `--writable-rootfs` (and `writable_rootfs = true` in an app spec) lets programs write
/// anywhere, as package installs need; the default root filesystem stays read-only.
#[test]
fn a_writable_root_filesystem_only_where_asked() {
    let (c, ep) = single();
    let write = ["sh", "-c", "echo w > /etc/flotilla-w && cat /etc/flotilla-w"];
    let sandbox = |extra: &[&str]| {
        let o = cli(&ep, &[&["sandbox", "create", "--image", "flotilla/busybox", "--wait"], extra].concat());
        assert!(o.status.success(), "{}", err(&o));
        out(&o).trim().to_string()
    };
    let read_only = sandbox(&[]);
    let o = cli(&ep, &[&["sandbox", "exec", &read_only, "--"][..], &write].concat());
    assert_ne!(o.status.code(), Some(0), "the default rootfs refuses writes: {}", out(&o));
    assert!(err(&o).contains("Read-only file system"), "{}", err(&o));
    let writable = sandbox(&["--writable-rootfs"]);
    let o = cli(&ep, &[&["sandbox", "exec", &writable, "--"][..], &write].concat());
    assert_eq!(out(&o), "w\n", "{}", err(&o));
    let shown = c.json(1, &["sandbox", "show", &writable]);
    assert_eq!(shown["id"], writable.as_str());

    let spec = c.dir.path().join("rw.toml");
    std::fs::write(
        &spec,
        "name = \"rw\"\n[functions.w]\nimage = \"flotilla/busybox\"\nwritable_rootfs = true\ncommand = [\"sh\", \"-c\", \"echo w > /etc/flotilla-w && cat /etc/flotilla-w\"]\n",
    )
    .unwrap();
    let o = cli(&ep, &["app", "deploy", spec.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    let o = cli(&ep, &["fn", "call", "rw/w", "--input", ""]);
    assert_eq!(out(&o).trim(), "w", "{}", err(&o));
    cli(&ep, &["app", "rm", "rw"]);
}

/// `image rm` with a node down removes the image where it can and exits 1 naming the node
/// that may still have it; `image ls` lists what the live nodes have.
#[test]
fn image_rm_with_a_node_down_names_it_and_removes_the_rest() {
    busybox_image();
    let tags = Tags::default();
    let name = tags.add(&format!("flotilla-test/rm-{}:1", unique()));
    assert!(Command::new("docker").args(["tag", "flotilla/busybox", &name]).status().unwrap().success());
    let mut c = TestCluster::start(3, &[]);
    c.wait_leader(Duration::from_secs(20));
    c.node(3).kill();
    assert_eq!(nodes_with(&c, &name), [1, 2], "the live nodes list it (all share one engine)");
    let o = cli(&c.nodes[&1].endpoint(), &["image", "rm", &name]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("did not answer") && err(&o).contains("[3]"), "{}", err(&o));
    let gone = Command::new("docker").args(["image", "inspect", &name]).output().unwrap();
    assert!(!gone.status.success(), "removed from the engine the live nodes use");
}
