//! Workloads: clients that drive the cluster through the SDK and record what happened.
//!
//! - [`catalog`]: registers in the replicated catalog, written and read by several clients.
//! - [`schedule`]: 1-second schedules deployed before the faults, their runs read back after
//!   the liveness phase for `check::schedule`.
//! - [`sandbox`]: a `--restore-on-failure` sandbox exec'd through every node, for
//!   `check::sandbox`; its snapshots' replicas hashed for `check::snapshot`.
//! - [`status`]: every node's `cluster status`, sampled alone, for the leader checker.
//!
//! A workload is a task that runs until the run's stop signal and leaves its records for a
//! checker.

pub mod catalog;
pub mod sandbox;
pub mod schedule;
pub mod status;
