//! A closed-loop load generator: N clients each issue one request at a time for a fixed
//! duration; latencies go into one histogram.

use std::future::Future;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// What one run measured.
#[derive(Debug, Clone, Copy)]
pub struct Figures {
    pub ops: u64,
    pub errors: u64,
    pub ops_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Runs `clients` concurrent loops of `op(client, seq)` for `duration` and returns the figures.
/// A failed op counts as an error and is not timed.
pub async fn closed_loop<F, Fut>(clients: usize, duration: Duration, op: F) -> Figures
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for client in 0..clients {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
            let mut errors = 0;
            let mut seq = 0;
            while Instant::now() < deadline {
                let t = Instant::now();
                match op(client, seq).await {
                    Ok(()) => hist.saturating_record(t.elapsed().as_micros() as u64),
                    Err(_) => errors += 1,
                }
                seq += 1;
            }
            (hist, errors)
        }));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
    let mut errors = 0;
    for t in tasks {
        let (h, e) = t.await.expect("load task panicked");
        hist.add(h).expect("same histogram bounds");
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    Figures {
        ops: hist.len(),
        errors,
        ops_per_s: hist.len() as f64 / elapsed,
        p50_ms: hist.value_at_quantile(0.50) as f64 / 1000.0,
        p99_ms: hist.value_at_quantile(0.99) as f64 / 1000.0,
    }
}
