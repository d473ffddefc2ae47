//! A healthy start logs no warning and no error: those lines are kept for real problems.

use std::time::Duration;

use crate::harness::*;

/// Starts `n` nodes, waits until every node reports every member up and has registered, and
/// checks that no node logged a WARN or ERROR line.
fn start_is_quiet(n: u64) {
    let mut c = TestCluster::start(n, &[]);
    c.wait_leader(Duration::from_secs(20));
    c.eventually(Duration::from_secs(20), "every node healthy", || {
        c.nodes.values().all(|node| {
            let log = node.log_text();
            log.contains("registered in the catalog") && log.contains("fence lifted")
        }) && (1..=n)
            .all(|id| c.status(id).is_some_and(|s| s["nodes"].as_array().unwrap().iter().all(|m| m["status"] == "up")))
    });
    // Let the first heartbeats, probes and leases run.
    std::thread::sleep(Duration::from_secs(2));
    for node in c.nodes.values() {
        let log = node.log_text();
        let noisy: Vec<&str> = log.lines().filter(|l| l.contains(" ERROR ") || l.contains(" WARN ")).collect();
        assert!(noisy.is_empty(), "node {} logged at a healthy start:\n{}", node.id, noisy.join("\n"));
    }
}

#[test]
fn a_healthy_three_node_start_logs_no_warning() {
    start_is_quiet(3);
}

#[test]
fn a_healthy_single_node_start_logs_no_warning() {
    start_is_quiet(1);
}
