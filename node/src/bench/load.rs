//! A closed-loop load generator: N clients each issue one request at a time for a fixed
//! duration; latencies go into one histogram. [`sized_loop`] first warms up, untimed, and
//! stretches the window until every client makes enough calls for the figures to mean
//! something.

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
    /// Length of the measured window.
    pub window: Duration,
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
        window: duration,
    }
}

/// Least calls per client a sized window is made long enough for.
pub const CALLS_PER_CLIENT: u64 = 20;

/// A warm-up of at least one call per client (untimed, not counted), then a [`closed_loop`]
/// whose window is `min_window` or long enough for [`CALLS_PER_CLIENT`] calls per client at
/// the warm-up's median latency, whichever is longer.
pub async fn sized_loop<F, Fut>(clients: usize, min_window: Duration, op: F) -> Figures
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let warm = closed_loop(clients, Duration::from_millis(500), op.clone()).await;
    let per_call = Duration::from_secs_f64(warm.p50_ms / 1000.0);
    let window = min_window.max(per_call * CALLS_PER_CLIENT as u32);
    closed_loop(clients, window, op).await
}
