//! Checkers: one file per invariant, each a pure function over what a run recorded.
//!
//! | invariant | file | fed by |
//! |---|---|---|
//! | catalog operations are linearizable | [`linearizable`] | the catalog register workload |
//! | at most one leader per term | [`leader`] | `cluster status` sampled on every node |
//! | no acknowledged write is lost | [`lost_writes`] | the history and the final reads of every node |
//! | each schedule tick fires once, or is recorded skipped per policy | [`schedule`] | the schedule workload's runs (`runs ls --scheduled`) |
//! | at most one live copy of a sandbox accepts exec | [`sandbox`] | the sandbox workload's exec records |
//! | snapshot replicas match their digest | [`snapshot`] | `snapshot ls` and each replica's blob, hashed |

pub mod leader;
pub mod linearizable;
pub mod lost_writes;
pub mod sandbox;
pub mod schedule;
pub mod snapshot;

use serde::Serialize;

/// A broken promise: which invariant, and the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub invariant: &'static str,
    pub detail: String,
}

impl Violation {
    pub fn new(invariant: &'static str, detail: impl Into<String>) -> Self {
        Self { invariant, detail: detail.into() }
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.invariant, self.detail)
    }
}
