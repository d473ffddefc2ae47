//! Samples every node's `cluster status` through the run, each node asked alone.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flotilla::{Client, ClientOptions};
use tokio::sync::watch;

use crate::check::leader::StatusSample;

/// Time between two samples of one node.
const EVERY: Duration = Duration::from_millis(250);

/// Samples node `endpoint` until `stop`; a node that does not answer (paused, killed,
/// cut off from this client) simply adds no sample.
pub async fn sampler(
    endpoint: String,
    start: Instant,
    samples: Arc<Mutex<Vec<StatusSample>>>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let options = ClientOptions {
        connect_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_millis(500),
        retry_for: Duration::ZERO,
        ..Default::default()
    };
    let client = Client::connect_with([endpoint], options).await?;
    while !*stop.borrow() {
        if let Ok(s) = client.cluster_status().await {
            let at_us = start.elapsed().as_micros() as u64;
            let sample = StatusSample { at_us, node: s.answered_by, term: s.term, leader: s.leader };
            samples.lock().expect("samples lock poisoned").push(sample);
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = stop.changed() => {}
        }
    }
    Ok(())
}
