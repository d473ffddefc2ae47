//! How long and how hard a run is, and its seed.
//!
//! `short` (the default) is what CI runs: about a minute of faults and checks on a 2-core
//! machine. `long` runs ten minutes of faults with more clients and keys. Choose with
//! `FLOTILLA_CHAOS_PROFILE=short|long`. The seed comes from `FLOTILLA_CHAOS_SEED`, or from the
//! clock; it is printed at the start and in every failure, and setting it replays the run's
//! fault plan and client choices.

use std::time::Duration;

use anyhow::{bail, Result};

/// One run's size.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: &'static str,
    pub seed: u64,
    /// Nodes in the cluster.
    pub nodes: u64,
    /// Concurrent workload clients.
    pub clients: usize,
    /// Registers the clients share; fewer keys means more contention per key.
    pub keys: usize,
    /// Length of the phase with faults.
    pub safety: Duration,
    /// Upper bound on fault steps in that phase (each also ends by the phase's time).
    pub max_steps: usize,
    /// Longest a fault is held.
    pub max_hold: Duration,
    /// How long the healed cluster has to recover completely (leader, every node caught up).
    pub recover_within: Duration,
    /// How long the workload runs on the healed cluster, where every operation must succeed.
    pub liveness: Duration,
}

impl Profile {
    pub fn short(seed: u64) -> Self {
        Self {
            name: "short",
            seed,
            nodes: 3,
            clients: 4,
            keys: 3,
            safety: Duration::from_secs(50),
            max_steps: 20,
            max_hold: Duration::from_secs(7),
            recover_within: Duration::from_secs(30),
            liveness: Duration::from_secs(8),
        }
    }

    pub fn long(seed: u64) -> Self {
        Self {
            name: "long",
            clients: 8,
            keys: 6,
            safety: Duration::from_secs(600),
            max_steps: 300,
            max_hold: Duration::from_secs(10),
            liveness: Duration::from_secs(30),
            ..Self::short(seed)
        }
    }

    /// The profile and seed the environment asks for.
    pub fn from_env() -> Result<Self> {
        let seed = match std::env::var("FLOTILLA_CHAOS_SEED") {
            Ok(s) => s.trim().parse().map_err(|_| anyhow::anyhow!("FLOTILLA_CHAOS_SEED={s:?} is not a number"))?,
            Err(_) => {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                now.as_nanos() as u64 ^ u64::from(std::process::id())
            }
        };
        match std::env::var("FLOTILLA_CHAOS_PROFILE").as_deref() {
            Err(_) | Ok("short") => Ok(Self::short(seed)),
            Ok("long") => Ok(Self::long(seed)),
            Ok(other) => bail!("FLOTILLA_CHAOS_PROFILE={other:?}: expected short or long"),
        }
    }
}
