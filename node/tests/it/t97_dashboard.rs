//! The dashboard in a real browser: Debian's headless `chromium` loads `GET /` from a
//! three-node cluster with tokens on and known contents, and the page it renders (its DOM after
//! the scripts ran) must show the nodes, the app, the sandbox, a scheduled run and the cluster's
//! events; without a token it shows only the token prompt. A screenshot is saved as a test artifact,
//! `target/tmp/dashboard.png`.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::*;

/// What headless chromium renders at `url` after the page's scripts had 5 s of (virtual)
/// time: the DOM, or with `screenshot` a PNG written there.
fn chromium(dir: &std::path::Path, url: &str, screenshot: Option<&std::path::Path>) -> String {
    let profile = tempfile::tempdir_in(dir).unwrap();
    let mut cmd = Command::new("timeout");
    cmd.args(["60", "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--virtual-time-budget=5000");
    match screenshot {
        Some(path) => cmd.arg("--window-size=1400,1100").arg(format!("--screenshot={}", path.display())),
        None => cmd.arg("--dump-dom"),
    };
    let out = cmd
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("run chromium (scripts/test installs Debian's chromium package)");
    assert!(out.status.success(), "chromium {url}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_dashboard_shows_the_cluster_in_a_browser() {
    busybox_image();
    let (c, http, token) = with_tokens_and_http(3);
    deploy_every_second(&c, "shop", "restock");
    let sandbox =
        c.json(2, &["sandbox", "create", "--image", "flotilla/busybox", "--wait"])["id"].as_str().unwrap().to_string();
    let mut run = String::new();
    c.eventually(Duration::from_secs(30), "a scheduled run", || {
        let runs = c.json(1, &["runs", "ls", "--app", "shop", "--scheduled", "--limit", "1"]);
        runs[0]["id"].as_str().map(|id| run = id.to_string()).is_some()
    });
    assert!(c.cli(&c.endpoints(), &["schedule", "pause", "shop/restock"]).status.success());

    // Without a token: the page (no data in it) loads, its JSON is refused, and it asks.
    assert_eq!(http_get(&http[0], "/api/dashboard", None).unwrap().0, 401);
    let dom = chromium(c.dir.path(), &format!("http://{}/", http[0]), None);
    assert!(dom.contains("This node requires an API token"), "{dom}");
    assert!(dom.contains("id=\"login\" style=\"display: block;\""), "the prompt is shown: {dom}");
    assert!(!dom.contains(&sandbox) && !dom.contains("shop"), "no data without a token: {dom}");

    // With the token (handed over in the link's fragment, then kept in sessionStorage).
    let url = format!("http://{}/#token={token}", http[1]);
    let dom = chromium(c.dir.path(), &url, None);
    for n in c.nodes.values() {
        assert!(dom.contains(&format!("<td>node {}</td><td>{}</td>", n.id, n.addr)), "node {}: {dom}", n.id);
    }
    assert!(dom.contains("<td class=\"leader\">leader</td>"), "{dom}");
    assert!(dom.contains("<td>shop</td>") && dom.contains("<td>restock</td>"), "the app: {dom}");
    assert!(dom.contains(&format!("<td>{sandbox}</td>")), "the sandbox: {dom}");
    assert!(dom.contains(&format!("<td>{sandbox}</td><td></td><td class=\"running\">running</td><td>node ")), "{dom}");
    assert!(dom.contains(&run), "the run {run}: {dom}");
    assert!(dom.contains("<td>shop/restock</td><td>yes</td>"), "the paused schedule: {dom}");
    assert!(dom.contains("<h2>Events (newest first)</h2>"), "{dom}");
    assert!(dom.contains("<td>replica</td><td>shop/restock</td><td>node "), "the replica's event: {dom}");
    assert!(!dom.contains(&token), "the token stays out of the page: {dom}");

    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    chromium(c.dir.path(), &url, Some(&shot));
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a {}-byte screenshot", png.len());
}
