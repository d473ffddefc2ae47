//! Snapshot replicas match their digest.
//!
//! Fed by `snapshot ls -o json` (the contract's snapshot shape) and the sha256 of the blob
//! each replica node holds. Every `ready` snapshot must list at least one replica, and every
//! listed replica must hold a blob with the recorded digest. Fed by the sandbox workload
//! ([`crate::workload::sandbox::snapshot_digests`] hashes each replica's chunks from its data
//! dir).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Violation;

/// One snapshot as `snapshot ls -o json` prints it (fields the checker needs).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Snapshot {
    pub id: String,
    pub sha256: String,
    pub replicas: Vec<u64>,
    /// `pending|ready|lost`.
    pub state: String,
}

/// The digest of the blob that `(snapshot id, node)` holds; absent when the node has none.
pub type ReplicaDigests = BTreeMap<(String, u64), String>;

/// Violations of replica integrity for ready snapshots.
pub fn check(snapshots: &[Snapshot], digests: &ReplicaDigests) -> Vec<Violation> {
    let mut out = Vec::new();
    for s in snapshots.iter().filter(|s| s.state == "ready") {
        if s.replicas.is_empty() {
            out.push(Violation::new("snapshot-digest", format!("{} is ready with no replica", s.id)));
        }
        for node in &s.replicas {
            match digests.get(&(s.id.clone(), *node)) {
                None => {
                    out.push(Violation::new("snapshot-digest", format!("{}: replica node {node} holds no blob", s.id)))
                }
                Some(d) if *d != s.sha256 => out.push(Violation::new(
                    "snapshot-digest",
                    format!("{}: replica node {node} holds sha256 {d}, the catalog says {}", s.id, s.sha256),
                )),
                Some(_) => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(state: &str, replicas: &[u64]) -> Snapshot {
        Snapshot { id: "sn-1".into(), sha256: "aa".into(), replicas: replicas.to_vec(), state: state.into() }
    }

    fn digests(d: &[(u64, &str)]) -> ReplicaDigests {
        d.iter().map(|(n, s)| (("sn-1".to_string(), *n), s.to_string())).collect()
    }

    #[test]
    fn matching_replicas_pass() {
        assert!(check(&[snap("ready", &[1, 2])], &digests(&[(1, "aa"), (2, "aa")])).is_empty());
        // Pending snapshots are not yet promised anywhere.
        assert!(check(&[snap("pending", &[1, 2])], &digests(&[])).is_empty());
    }

    #[test]
    fn missing_or_corrupt_replicas_are_reported() {
        let v = check(&[snap("ready", &[1, 2, 3])], &digests(&[(1, "aa"), (2, "bb")]));
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(check(&[snap("ready", &[])], &digests(&[])).len() == 1);
    }

    #[test]
    fn snapshot_ls_json_parses() {
        let json = r#"[{"id":"sn-1","kind":"fs","sandbox":"sb-1","size_bytes":10,"sha256":"aa","replicas":[1],"state":"ready"}]"#;
        let s: Vec<Snapshot> = serde_json::from_str(json).unwrap();
        assert!(check(&s, &digests(&[(1, "aa")])).is_empty());
    }
}
