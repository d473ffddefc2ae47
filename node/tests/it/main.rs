//! Integration tests: real `flotilla` processes on loopback, driven through the CLI (as users
//! drive them) and the SDK. One binary, numbered topic modules.

mod harness;

mod t10_cluster;
mod t20_failover;
mod t30_membership;
mod t40_bad_input;
mod t50_dev;
mod t60_sandbox;
mod t70_security;
mod t75_functions;
mod t80_snapshots;
mod t85_failover;
mod t90_schedules;
