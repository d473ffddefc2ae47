//! Integration tests: real `flotilla` processes on loopback, driven through the CLI (as users
//! drive them) and the SDK. One binary, numbered topic modules.

// Shared with `flotilla bench images`, which needs the same engines.
#[path = "../../src/bench/engines.rs"]
mod engines;
mod harness;

mod t10_cluster;
mod t15_quiet_start;
mod t20_failover;
mod t30_membership;
mod t32_force_remove;
mod t40_bad_input;
mod t45_cli;
mod t50_dev;
mod t60_sandbox;
mod t61_sandbox_cp;
mod t62_sandbox_disk;
mod t63_engine_ids;
mod t65_images;
mod t66_image_travel;
mod t70_security;
mod t72_tokens;
mod t75_functions;
mod t76_app_lifecycle;
mod t77_retention;
mod t78_bench_cleanup;
mod t80_snapshots;
mod t85_failover;
mod t90_schedules;
mod t93_events_logs;
mod t95_metrics;
mod t96_log_format;
mod t97_dashboard;
