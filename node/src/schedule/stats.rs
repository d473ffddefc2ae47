//! Figures about the ticks this node committed while it led, served in `GET /status` (and read
//! by `flotilla bench schedules`): counts, and the commit lateness of fired ticks (from
//! `scheduled_at` to the moment the leader saw the Fire applied) over the last 10 to 20 s.
//! Fires and their lateness also go to the node's Prometheus series (`metrics`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::metrics::Metrics;

/// Lateness samples are kept for one window, then moved to "previous"; reports merge both.
const WINDOW: Duration = Duration::from_secs(10);
/// Largest lateness recorded exactly, ms (larger values are clamped to it).
const MAX_LATENESS_MS: u64 = 3_600_000;

/// Shared by the Scheduler (writes) and the HTTP endpoint (reads). Cheap to clone.
#[derive(Clone)]
pub struct Stats(Arc<Mutex<Inner>>, Metrics);

struct Inner {
    fired: u64,
    skipped: u64,
    /// Fires `apply` rejected as stale (a tick already committed): expected only right after
    /// a leader change, never a duplicate run.
    stale: u64,
    current: Histogram<u64>,
    previous: Histogram<u64>,
    rotated_at: Instant,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENESS_MS, 3).expect("valid histogram bounds")
}

impl Stats {
    /// Figures that also count fires and their lateness in `metrics` (Prometheus).
    pub fn new(metrics: Metrics) -> Self {
        Stats(
            Arc::new(Mutex::new(Inner {
                fired: 0,
                skipped: 0,
                stale: 0,
                current: histogram(),
                previous: histogram(),
                rotated_at: Instant::now(),
            })),
            metrics,
        )
    }

    /// Counts one committed entry's outcome: `lateness_ms` of each fired tick, skips, stale fires.
    pub fn record(&self, lateness_ms: &[i64], skipped: u64, stale: u64) {
        self.1.schedule_fired(lateness_ms);
        let mut s = self.0.lock().expect("stats lock poisoned");
        if s.rotated_at.elapsed() >= WINDOW {
            s.previous = std::mem::replace(&mut s.current, histogram());
            s.rotated_at = Instant::now();
        }
        for l in lateness_ms {
            let v = u64::try_from(*l).unwrap_or(0).clamp(1, MAX_LATENESS_MS);
            s.current.saturating_record(v);
        }
        s.fired += lateness_ms.len() as u64;
        s.skipped += skipped;
        s.stale += stale;
    }

    /// The figures as JSON, for `/status`.
    pub fn report(&self) -> Value {
        let s = self.0.lock().expect("stats lock poisoned");
        let mut recent = s.current.clone();
        // Same bounds, so adding cannot fail.
        let _ = recent.add(&s.previous);
        json!({
            "fired": s.fired,
            "skipped": s.skipped,
            "stale": s.stale,
            "commit_lateness_ms": {
                "count": recent.len(),
                "p50": recent.value_at_quantile(0.5),
                "p99": recent.value_at_quantile(0.99),
                "max": recent.max(),
            },
        })
    }
}
