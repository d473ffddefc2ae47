//! Workloads: clients that drive the cluster through the SDK and record what happened.
//!
//! - [`catalog`]: registers in the replicated catalog, written and read by several clients.
//! - [`status`]: every node's `cluster status`, sampled alone, for the leader checker.
//!
//! Workloads for schedules (runs read back with `runs ls -o json`, checked by
//! `check::schedule`) and for sandboxes (create with `--restore-on-failure`, exec, snapshot;
//! checked by `check::sandbox` and `check::snapshot`) plug in beside these once those
//! features exist: a workload is a task that runs until the stop signal and leaves its
//! records for a checker.

pub mod catalog;
pub mod status;
