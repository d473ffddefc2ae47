//! `--log-format json`: every log line a node writes is one JSON object, and a gRPC request's
//! lines carry its request id in an `rpc` span, on the node that took the request and on the
//! leader it asked on the request's behalf; a sandbox's actor logs in a `sandbox` span with
//! the request id of the create that made it.

use std::time::Duration;

use flotilla_proto::control::control_client::ControlClient;
use flotilla_proto::control::ListAppsRequest;
use serde_json::Value;

use crate::harness::*;

/// Node `id`'s log lines on stderr, each parsed as JSON (the `ready` line is stdout's).
fn json_lines(c: &TestCluster, id: u64) -> Vec<Value> {
    let text = c.nodes[&id].log_text();
    text.lines()
        .filter(|l| !l.starts_with("flotilla node "))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("node {id}: not a JSON line ({e}): {l}")))
        .collect()
}

/// The `rpc` spans of `lines` with this request id: their `method`s.
fn methods_of(lines: &[Value], request_id: &str) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| l["spans"].as_array())
        .flatten()
        .filter(|s| s["name"] == "rpc" && s["request_id"] == request_id)
        .map(|s| s["method"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn json_logs_follow_one_request_across_nodes() {
    let mut c = TestCluster::start_each(
        3,
        |_| vec!["--log-format".into(), "json".into()],
        &[("RUST_LOG", "info,openraft=warn,flotilla::request_id=debug")],
    );
    let leader = c.wait_leader(Duration::from_secs(20));
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let request_id = format!("t96-{:x}", rand::random::<u64>());

    // A linearizable read through a follower: it asks the leader for a read index.
    let (echoed, generated) = rt().block_on(async {
        let mut client = ControlClient::connect(c.nodes[&follower].endpoint()).await.unwrap();
        let mut req = tonic::Request::new(ListAppsRequest {});
        req.metadata_mut().insert("x-request-id", request_id.parse().unwrap());
        let reply = client.list_apps(req).await.unwrap();
        let echoed = reply.metadata().get("x-request-id").unwrap().to_str().unwrap().to_string();
        // A request without an id gets one, in the reply.
        let reply = client.list_apps(ListAppsRequest {}).await.unwrap();
        (echoed, reply.metadata().get("x-request-id").unwrap().to_str().unwrap().to_string())
    });
    assert_eq!(echoed, request_id);
    assert!(generated.len() == 16 && generated.bytes().all(|b| b.is_ascii_hexdigit()), "{generated}");

    c.eventually(Duration::from_secs(10), "the request's lines on both nodes", || {
        let on_follower = methods_of(&json_lines(&c, follower), &request_id);
        let on_leader = methods_of(&json_lines(&c, leader), &request_id);
        on_follower.iter().any(|m| m == "/flotilla.v1.control.Control/ListApps")
            && on_leader.iter().any(|m| m == "/flotilla.v1.peer.Peer/ReadIndex")
    });
    // The node's own span encloses the request's.
    let line = json_lines(&c, follower)
        .into_iter()
        .find(|l| l["span"]["request_id"] == request_id.as_str())
        .expect("a line whose innermost span is the request's");
    assert_eq!(line["spans"][0]["name"], "node");
    assert_eq!(line["spans"][0]["id"], follower);
    assert_eq!(line["fields"]["message"], "request answered");
    // The node ran with JSON from its first line.
    let first = &json_lines(&c, leader)[0];
    assert_eq!(first["level"], "INFO");
    assert!(first["timestamp"].as_str().is_some(), "{first}");
}

#[test]
fn a_sandboxs_actor_logs_under_the_request_id_of_its_create() {
    busybox_image();
    let mut c = TestCluster::start_each(
        3,
        |_| vec!["--log-format".into(), "json".into()],
        &[("RUST_LOG", "info,openraft=warn,flotilla::request_id=debug")],
    );
    c.wait_leader(Duration::from_secs(20));
    let id =
        c.json(1, &["sandbox", "create", "--image", "flotilla/busybox", "--wait"])["id"].as_str().unwrap().to_string();
    let host = c.json(1, &["sandbox", "show", &id])["node"].as_u64().unwrap();
    // The actor's line on the node that runs it, in the sandbox's span.
    let mut request_id = String::new();
    c.eventually(Duration::from_secs(10), "the actor's `sandbox running` line", || {
        let found = json_lines(&c, host).into_iter().find(|l| {
            l["fields"]["message"] == "sandbox running"
                && l["span"]["name"] == "sandbox"
                && l["span"]["id"] == id.as_str()
        });
        found.map(|l| request_id = l["span"]["request_id"].as_str().unwrap_or_default().to_string()).is_some()
    });
    assert!(!request_id.is_empty(), "the sandbox span names a request id");
    assert_eq!(
        json_lines(&c, host).iter().find(|l| l["span"]["name"] == "sandbox").unwrap()["spans"][0]["name"],
        "node"
    );
    // The CLI's create request was logged under the same id (on the node it asked).
    let create = "/flotilla.v1.control.Control/CreateSandbox";
    assert!(
        (1..=3).any(|n| methods_of(&json_lines(&c, n), &request_id).iter().any(|m| m == create)),
        "no CreateSandbox request with id {request_id}"
    );
    c.cli(&c.endpoints(), &["sandbox", "terminate", &id]);
}
