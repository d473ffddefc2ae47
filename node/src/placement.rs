//! Where a new sandbox runs: a pure function of the cluster's view, so it is table-tested
//! and the leader's choice is reproducible.
//!
//! A node fits when its capacity minus what its live sandboxes reserve covers the request.
//! Memory is not overcommitted (a sandbox's memory limit is a hard wall). CPU is: a
//! sandbox's `cpu` is a cap on its share (CFS quota), and most sandboxes idle between execs,
//! so a node offers [`CPU_OVERCOMMIT`] times its cores, the way Kubernetes limits exceed
//! node capacity; what a busy node cannot give is shared fairly by the kernel. Among the nodes that fit, the one with the most room left afterwards wins (the
//! smaller of its free CPU and free memory fractions), which spreads load; ties go to the
//! lower node id so the choice is deterministic.

use flotilla_raft::{Catalog, NodeId};

/// How many times its cores a node offers as sandbox CPU caps.
pub const CPU_OVERCOMMIT: f64 = 4.0;

/// A node that may take work, with what it offers and what is already reserved on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub id: NodeId,
    /// Cores offered (the node's cores times [`CPU_OVERCOMMIT`]).
    pub cpus: f64,
    /// MiB offered.
    pub memory_mib: u64,
    /// Cores reserved by live sandboxes.
    pub used_cpu: f64,
    /// MiB reserved by live sandboxes.
    pub used_memory_mib: u64,
}

/// No node can take the request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlacementError {
    #[error("no live node is registered")]
    NoNodes,
    #[error(
        "no node has {cpu} CPU and {memory_mib} MiB free (largest free: {best_cpu:.2} CPU, {best_memory_mib} MiB)"
    )]
    NoRoom { cpu: f64, memory_mib: u64, best_cpu: f64, best_memory_mib: u64 },
}

/// Picks the node for a request of `cpu` cores and `memory_mib` MiB.
pub fn place(candidates: &[Candidate], cpu: f64, memory_mib: u64) -> Result<NodeId, PlacementError> {
    if candidates.is_empty() {
        return Err(PlacementError::NoNodes);
    }
    let score = |c: &Candidate| {
        let free_cpu = c.cpus - c.used_cpu - cpu;
        let free_mem = c.memory_mib as f64 - c.used_memory_mib as f64 - memory_mib as f64;
        (free_cpu >= -1e-9 && free_mem >= 0.0)
            .then(|| (free_cpu / c.cpus.max(1e-9)).min(free_mem / (c.memory_mib.max(1) as f64)))
    };
    candidates
        .iter()
        .filter_map(|c| score(c).map(|s| (s, c.id)))
        .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)))
        .map(|(_, id)| id)
        .ok_or_else(|| {
            let best = candidates
                .iter()
                .max_by(|a, b| {
                    (a.memory_mib - a.used_memory_mib.min(a.memory_mib))
                        .cmp(&(b.memory_mib - b.used_memory_mib.min(b.memory_mib)))
                })
                .expect("candidates is not empty");
            PlacementError::NoRoom {
                cpu,
                memory_mib,
                best_cpu: best.cpus - best.used_cpu,
                best_memory_mib: best.memory_mib.saturating_sub(best.used_memory_mib),
            }
        })
}

/// The candidates among `live` nodes: those registered in the catalog, with the resources
/// their live sandboxes reserve.
pub fn candidates(catalog: &Catalog, live: impl Fn(NodeId) -> bool) -> Vec<Candidate> {
    catalog
        .nodes
        .values()
        .filter(|n| live(n.id))
        .map(|n| {
            let mine = catalog.sandboxes.values().filter(|s| s.node == n.id && !s.state.is_final());
            let (used_cpu, used_memory_mib) = mine.fold((0.0, 0), |(c, m), s| (c + s.spec.cpu, m + s.spec.memory_mib));
            Candidate {
                id: n.id,
                cpus: n.cpus as f64 * CPU_OVERCOMMIT,
                memory_mib: n.memory_mib,
                used_cpu,
                used_memory_mib,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: NodeId, cpus: f64, memory_mib: u64, used_cpu: f64, used_memory_mib: u64) -> Candidate {
        Candidate { id, cpus, memory_mib, used_cpu, used_memory_mib }
    }

    #[test]
    fn placement_table() {
        type Case = (&'static str, Vec<Candidate>, f64, u64, Result<NodeId, ()>);
        let cases: Vec<Case> = vec![
            ("empty cluster", vec![], 0.5, 128, Err(())),
            ("one node that fits", vec![node(1, 2.0, 1024, 0.0, 0)], 0.5, 128, Ok(1)),
            ("exact fit", vec![node(1, 2.0, 1024, 1.5, 896)], 0.5, 128, Ok(1)),
            ("memory full", vec![node(1, 2.0, 1024, 0.0, 1000)], 0.5, 128, Err(())),
            ("cpu full", vec![node(1, 2.0, 1024, 1.8, 0)], 0.5, 128, Err(())),
            (
                "spread to the emptier node",
                vec![node(1, 2.0, 1024, 1.0, 512), node(2, 2.0, 1024, 0.0, 0)],
                0.5,
                128,
                Ok(2),
            ),
            ("skip the full node", vec![node(1, 2.0, 1024, 2.0, 0), node(2, 2.0, 1024, 1.5, 900)], 0.25, 64, Ok(2)),
            ("tie goes to the lower id", vec![node(3, 2.0, 1024, 0.0, 0), node(2, 2.0, 1024, 0.0, 0)], 0.5, 128, Ok(2)),
            (
                "bigger node wins by fraction",
                vec![node(1, 2.0, 1024, 0.0, 0), node(2, 8.0, 8192, 0.0, 0)],
                1.0,
                512,
                Ok(2),
            ),
        ];
        for (name, nodes, cpu, mem, want) in cases {
            assert_eq!(place(&nodes, cpu, mem).map_err(|_| ()), want, "{name}");
        }
    }

    #[test]
    fn candidates_count_live_sandboxes_and_overcommit_cpu() {
        use flotilla_raft::{Command, Response};
        let mut c = Catalog::default();
        for id in [1, 2] {
            c.apply(Command::RegisterNode { id, addr: format!("n{id}:1"), cpus: 2, memory_mib: 1024, at_ms: 0 });
        }
        let spec = |cpu, memory_mib| flotilla_raft::SandboxSpec {
            image: "i".into(),
            command: vec![],
            env: Default::default(),
            workdir: None,
            cpu,
            memory_mib,
            timeout_s: 0,
            idle_timeout_s: 0,
            block_network: false,
            runtime: "runc".into(),
            tags: Default::default(),
            restore_on_failure: false,
            snapshot_every_s: 0,
            from_snapshot: None,
        };
        for (i, (cpu, mem)) in [(1.0, 100), (1.0, 200), (3.0, 300)].into_iter().enumerate() {
            let cmd = Command::CreateSandbox {
                id: format!("sb-{i}"),
                name: None,
                spec: spec(cpu, mem),
                node: 1,
                request_id: None,
                at_ms: 0,
            };
            assert!(matches!(c.apply(cmd), Response::Sandbox(_)));
        }
        // A final sandbox no longer reserves anything.
        c.apply(Command::TerminateSandbox { id: "sb-2".into(), at_ms: 1 });
        let got = candidates(&c, |id| id != 2);
        assert_eq!(got, [node(1, 2.0 * CPU_OVERCOMMIT, 1024, 2.0, 300)]);
    }

    #[test]
    fn no_room_says_what_is_free() {
        let err = place(&[node(1, 2.0, 1024, 1.0, 1000)], 0.5, 128).unwrap_err();
        assert_eq!(err, PlacementError::NoRoom { cpu: 0.5, memory_mib: 128, best_cpu: 1.0, best_memory_mib: 24 });
    }
}
