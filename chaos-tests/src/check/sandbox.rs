//! At most one live copy of a sandbox accepts exec.
//!
//! When a sandbox with `--restore-on-failure` is restored on another node, the old copy
//! (on a node that is partitioned or paused, not dead) must stop accepting exec before the
//! new one starts (self-fencing). Fed by exec records: each successful exec reports which
//! copy answered it (the container's hostname, which differs per copy). Copies are ordered
//! by their first answer. A violation is an exec answered by an older copy that was invoked
//! after a newer copy had already answered one: both copies were then accepting work. Fed by
//! the sandbox workload ([`crate::workload::sandbox`]).

use std::collections::BTreeMap;

use super::Violation;

/// One exec against a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExecRecord {
    pub sandbox: String,
    /// Microseconds since the run started.
    pub invoke_us: u64,
    /// `None` when the exec failed or its outcome is unknown.
    pub complete_us: Option<u64>,
    /// The copy that answered (its container hostname); `None` unless the exec succeeded.
    pub copy: Option<String>,
}

/// Violations of single-copy execution, per sandbox.
pub fn check(execs: &[ExecRecord]) -> Vec<Violation> {
    let mut by_sandbox: BTreeMap<&str, Vec<(&ExecRecord, u64, &str)>> = BTreeMap::new();
    for e in execs {
        if let (Some(done), Some(copy)) = (e.complete_us, e.copy.as_deref()) {
            by_sandbox.entry(&e.sandbox).or_default().push((e, done, copy));
        }
    }
    let mut out = Vec::new();
    for (sandbox, answered) in by_sandbox {
        // Each copy's first answer (completion time), in order: the copies' generations.
        let mut first: BTreeMap<&str, u64> = BTreeMap::new();
        for (_, done, copy) in &answered {
            let t = first.entry(copy).or_insert(*done);
            *t = (*t).min(*done);
        }
        let mut order: Vec<(&str, u64)> = first.into_iter().collect();
        order.sort_by_key(|(_, t)| *t);
        let rank: BTreeMap<&str, usize> = order.iter().enumerate().map(|(i, (c, _))| (*c, i)).collect();
        for (e, _, copy) in &answered {
            let newer = order.iter().skip(rank[copy] + 1).find(|(_, started)| *started < e.invoke_us);
            if let Some((other, started)) = newer {
                out.push(Violation::new(
                    "one-live-sandbox-copy",
                    format!(
                        "sandbox {sandbox}: copy {copy} answered an exec invoked at {} us, after copy {other} had answered one at {started} us",
                        e.invoke_us
                    ),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(t: (u64, u64), copy: &str) -> ExecRecord {
        ExecRecord { sandbox: "sb-1".into(), invoke_us: t.0, complete_us: Some(t.1), copy: Some(copy.into()) }
    }

    #[test]
    fn a_clean_handover_passes() {
        let h = [exec((0, 1), "a"), exec((2, 3), "a"), exec((10, 11), "b"), exec((12, 13), "b")];
        assert!(check(&h).is_empty());
    }

    #[test]
    fn overlapping_execs_during_the_handover_pass() {
        // a's last exec was invoked before b first answered: not proof of two live copies.
        assert!(check(&[exec((0, 20), "a"), exec((10, 11), "b")]).is_empty());
    }

    #[test]
    fn the_old_copy_answering_after_the_new_one_is_reported() {
        let v = check(&[exec((0, 1), "a"), exec((10, 11), "b"), exec((12, 13), "a")]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].detail.contains("copy a answered"), "{v:?}");
    }

    #[test]
    fn failed_execs_are_ignored() {
        let mut failed = exec((12, 13), "a");
        failed.complete_us = None;
        failed.copy = None;
        assert!(check(&[exec((0, 1), "a"), exec((10, 11), "b"), failed]).is_empty());
    }
}
