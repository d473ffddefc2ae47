//! No acknowledged write is lost.
//!
//! After the liveness phase (faults healed, every node caught up), every node reads every
//! key. All nodes must agree, and for each acknowledged write of a key the final state must
//! hold that write or a later one: a version at least the write's, and its value when the
//! versions are equal. The final value must also be one some client wrote.

use std::collections::{BTreeMap, HashSet};

use super::Violation;
use crate::history::{Call, Op, Ret, Versioned};

/// The final read of each key, per node that answered it.
pub type FinalReads = BTreeMap<String, BTreeMap<u64, Option<Versioned>>>;

/// Violations of durability (and of agreement between nodes) in the final state.
pub fn check(ops: &[Op], finals: &FinalReads) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut state: BTreeMap<&str, Option<&Versioned>> = BTreeMap::new();
    for (key, by_node) in finals {
        let mut seen = by_node.values();
        let first = seen.next().and_then(|v| v.as_ref());
        if seen.any(|v| v.as_ref() != first) {
            out.push(Violation::new("no-lost-write", format!("nodes disagree on {key} after healing: {by_node:?}")));
        }
        state.insert(key, first);
    }
    let written: HashSet<(&str, &str)> = ops
        .iter()
        .filter_map(|o| match &o.call {
            Call::Write { key, value } => Some((key.as_str(), value.as_str())),
            Call::Read { .. } => None,
        })
        .collect();
    for (key, fin) in &state {
        if let Some(f) = fin {
            if !written.contains(&(*key, f.value.as_str())) {
                out.push(Violation::new("no-lost-write", format!("{key} ends with {f:?}, which no client wrote")));
            }
        }
    }
    for op in ops {
        let (Call::Write { key, value }, Ret::Written { version }) = (&op.call, &op.ret) else { continue };
        let lost = match state.get(key.as_str()) {
            None => {
                out.push(Violation::new("no-lost-write", format!("{key} was never read back at the end")));
                continue;
            }
            Some(None) => true,
            Some(Some(f)) => f.version < *version || (f.version == *version && f.value != *value),
        };
        if lost {
            out.push(Violation::new(
                "no-lost-write",
                format!(
                    "acknowledged write {key}={value} (version {version}, client {}) is gone: the cluster ends with {:?}",
                    op.process,
                    state.get(key.as_str())
                ),
            ));
        }
    }
    out
}

/// How many acknowledged writes the history holds, for the report.
pub fn acknowledged(ops: &[Op]) -> usize {
    ops.iter().filter(|o| matches!(o.ret, Ret::Written { .. })).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(key: &str, value: &str, version: u64) -> Op {
        Op {
            process: 0,
            call: Call::Write { key: key.into(), value: value.into() },
            invoke_us: 0,
            complete_us: Some(1),
            ret: Ret::Written { version },
        }
    }

    fn finals(key: &str, nodes: &[(u64, Option<(&str, u64)>)]) -> FinalReads {
        let by_node = nodes
            .iter()
            .map(|(n, v)| (*n, v.map(|(value, version)| Versioned { value: value.into(), version })))
            .collect();
        BTreeMap::from([(key.to_string(), by_node)])
    }

    #[test]
    fn the_last_write_or_a_later_one_survives() {
        let ops = [write("k", "a", 1), write("k", "b", 2)];
        assert!(check(&ops, &finals("k", &[(1, Some(("b", 2))), (2, Some(("b", 2)))])).is_empty());
        assert_eq!(acknowledged(&ops), 2);
    }

    #[test]
    fn a_lost_write_is_reported() {
        let ops = [write("k", "a", 1), write("k", "b", 2)];
        let v = check(&ops, &finals("k", &[(1, Some(("a", 1)))]));
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].detail.contains("k=b"), "{v:?}");
    }

    #[test]
    fn disagreeing_nodes_and_phantom_values_are_reported() {
        let ops = [write("k", "a", 1)];
        let v = check(&ops, &finals("k", &[(1, Some(("a", 1))), (2, Some(("zz", 1)))]));
        assert!(v.iter().any(|v| v.detail.contains("disagree")), "{v:?}");
        let v = check(&ops, &finals("k", &[(1, Some(("zz", 2)))]));
        assert!(v.iter().any(|v| v.detail.contains("no client wrote")), "{v:?}");
    }
}
