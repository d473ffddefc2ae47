//! At most one leader per term (Raft's Election Safety, §5.2 of the Raft paper).
//!
//! Fed by samples of `cluster status` taken from every node, each alone, through the run:
//! each sample says which leader the answering node knew for its current term. Two samples
//! that name different leaders for one term are a split brain, whichever nodes said so.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Violation;

/// One node's answer to `cluster status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusSample {
    /// Microseconds since the run started.
    pub at_us: u64,
    /// The node that answered.
    pub node: u64,
    pub term: u64,
    /// The leader that node knew for `term`, if any.
    pub leader: Option<u64>,
}

/// One violation per term that had more than one leader.
pub fn check(samples: &[StatusSample]) -> Vec<Violation> {
    let mut by_term: BTreeMap<u64, BTreeMap<u64, &StatusSample>> = BTreeMap::new();
    for s in samples {
        if let Some(l) = s.leader {
            by_term.entry(s.term).or_default().entry(l).or_insert(s);
        }
    }
    by_term
        .into_iter()
        .filter(|(_, leaders)| leaders.len() > 1)
        .map(|(term, leaders)| {
            let who: Vec<String> = leaders
                .values()
                .map(|s| format!("node {} said leader {} at {} us", s.node, s.leader.unwrap_or(0), s.at_us))
                .collect();
            Violation::new(
                "one-leader-per-term",
                format!("term {term} had {} leaders: {}", leaders.len(), who.join("; ")),
            )
        })
        .collect()
}

/// Terms in which some node named a leader, for the report.
pub fn terms_with_leader(samples: &[StatusSample]) -> usize {
    let mut terms: Vec<u64> = samples.iter().filter(|s| s.leader.is_some()).map(|s| s.term).collect();
    terms.sort_unstable();
    terms.dedup();
    terms.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(at_us: u64, node: u64, term: u64, leader: Option<u64>) -> StatusSample {
        StatusSample { at_us, node, term, leader }
    }

    #[test]
    fn one_leader_per_term_passes() {
        let h = [s(0, 1, 1, Some(1)), s(1, 2, 1, Some(1)), s(2, 3, 2, None), s(3, 3, 2, Some(3)), s(4, 1, 2, Some(3))];
        assert!(check(&h).is_empty());
        assert_eq!(terms_with_leader(&h), 2);
    }

    #[test]
    fn two_leaders_in_one_term_are_reported() {
        let v = check(&[s(0, 1, 4, Some(1)), s(5, 3, 4, Some(3)), s(6, 2, 5, Some(2))]);
        assert_eq!(v.len(), 1);
        assert!(v[0].detail.starts_with("term 4 had 2 leaders"), "{v:?}");
    }
}
