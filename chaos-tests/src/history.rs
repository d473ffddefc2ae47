//! Recorded histories: every operation a workload client ran, with when it was invoked, when
//! it completed and what it returned.
//!
//! Times are microseconds since the run started, on one monotonic clock shared by every
//! client. An operation whose outcome is not known (a timeout, a dropped connection) is
//! recorded as [`Ret::Unknown`] with no completion time: it may have taken effect at any
//! point after its invocation, or never. The checkers treat it exactly so.

use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

/// A register value as the catalog returned it: the value and the app version that holds it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Versioned {
    pub value: String,
    /// The app's version: the number of deploys applied to the key so far.
    pub version: u64,
}

/// What a client asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "f", rename_all = "snake_case")]
pub enum Call {
    /// Set register `key` to `value` (deploy app `key` with the value in its spec).
    Write { key: String, value: String },
    /// Read register `key` (show app `key`, a linearizable read).
    Read { key: String },
}

impl Call {
    pub fn key(&self) -> &str {
        match self {
            Call::Write { key, .. } | Call::Read { key } => key,
        }
    }
}

/// What the cluster answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Ret {
    /// The write was acknowledged and made the app this version.
    Written { version: u64 },
    /// The read saw this value, or no app at all (`None`).
    Read { seen: Option<Versioned> },
    /// The operation definitely did not take effect (the request was refused before it
    /// reached the log).
    Failed { error: String },
    /// The outcome is not known: it may or may not have taken effect.
    Unknown { error: String },
}

/// One operation of one client.
#[derive(Debug, Clone, Serialize)]
pub struct Op {
    /// The client that ran it; a client runs one operation at a time.
    pub process: usize,
    pub call: Call,
    /// Microseconds since the run started.
    pub invoke_us: u64,
    /// Microseconds since the run started; `None` when the outcome is unknown.
    pub complete_us: Option<u64>,
    pub ret: Ret,
}

/// A shared, append-only history on one clock. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct History {
    start: Instant,
    ops: Mutex<Vec<Op>>,
}

impl History {
    pub fn new(start: Instant) -> Self {
        Self { start, ops: Mutex::new(Vec::new()) }
    }

    /// Microseconds from the run's start to `t`.
    pub fn micros(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.start).as_micros() as u64
    }

    /// Records an operation invoked at `invoked` that has just returned `ret`.
    pub fn record(&self, process: usize, call: Call, invoked: Instant, ret: Ret) {
        let complete_us = (!matches!(ret, Ret::Unknown { .. })).then(|| self.micros(Instant::now()));
        let op = Op { process, call, invoke_us: self.micros(invoked), complete_us, ret };
        self.ops.lock().expect("history lock poisoned").push(op);
    }

    /// Every operation recorded so far, in completion order.
    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().expect("history lock poisoned").clone()
    }
}
