//! Workloads: clients that drive the cluster through the SDK and record what happened.
//!
//! - [`catalog`]: registers in the replicated catalog, written and read by several clients.
//! - [`schedule`]: 1-second schedules deployed before the faults, their runs read back after
//!   the liveness phase for `check::schedule`.
//! - [`status`]: every node's `cluster status`, sampled alone, for the leader checker.
//!
//! A workload for sandboxes (create with `--restore-on-failure`, exec, snapshot; checked by
//! `check::sandbox` and `check::snapshot`) plugs in the same way: a task that runs until the
//! stop signal and leaves its records for a checker.

pub mod catalog;
pub mod schedule;
pub mod status;
