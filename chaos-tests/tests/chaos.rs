//! The chaos run as a test: the profile from `FLOTILLA_CHAOS_PROFILE` (short by default, as
//! in CI), faults and checks as in `flotilla_chaos::run`. Needs root (iptables) and the built
//! `flotilla` binary.

use flotilla_chaos::profile::Profile;

#[test]
fn the_cluster_keeps_its_promises_under_faults() {
    let profile = Profile::from_env().expect("profile");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let report = rt.block_on(flotilla_chaos::run::run(profile)).expect("chaos run");
    eprintln!("{report}");
    assert!(report.violations.is_empty(), "chaos run found violations:\n{report}");
    // A run that checked nothing proves nothing.
    assert!(report.acknowledged_writes > 50, "too few acknowledged writes to check:\n{report}");
    // Every fault kind took effect on a leader and on a follower (counted from effects).
    let missing = flotilla_chaos::nemesis::missing(&report.injected);
    assert!(missing.is_empty(), "fault kinds never injected: {missing:?}\n{report}");
    assert!(report.schedule.ticks > 40, "too few schedule ticks to check:\n{report}");
    // The sandbox's node is cut off at the end of the faults: it must have failed over, or
    // the one-live-copy check saw a single copy.
    assert!(report.sandbox.copies.len() >= 2, "the sandbox never moved to a second copy:\n{report}");
}
