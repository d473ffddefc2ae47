//! Where a new sandbox or function replica runs: a pure function of the cluster's view, so
//! it is table-tested and the leader's choice is reproducible.
//!
//! A node fits when its capacity minus what its live sandboxes and replicas reserve covers
//! the request, and it has enough unleased GPUs of the asked model.
//! Memory is not overcommitted (a sandbox's memory limit is a hard wall). CPU is: a
//! sandbox's `cpu` is a cap on its share (CFS quota), and most sandboxes idle between execs,
//! so a node offers [`CPU_OVERCOMMIT`] times its cores, the way Kubernetes limits exceed
//! node capacity; what a busy node cannot give is shared fairly by the kernel. Among the nodes that fit, the one with the most room left afterwards wins (the
//! smaller of its free CPU and free memory fractions), which spreads load; ties go to the
//! lower node id so the choice is deterministic.

use flotilla_raft::{Catalog, GpuRequest, NodeId};

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
    /// Cores reserved by live sandboxes and replicas.
    pub used_cpu: f64,
    /// MiB reserved by live sandboxes and replicas.
    pub used_memory_mib: u64,
    /// GPUs with no lease: (index, model), by index.
    pub free_gpus: Vec<(u32, String)>,
}

/// What a workload needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Request<'a> {
    pub cpu: f64,
    pub memory_mib: u64,
    pub gpu: Option<&'a GpuRequest>,
}

/// Where a workload goes: a node and the GPU indices it gets there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub node: NodeId,
    pub gpus: Vec<u32>,
}

/// No node can take the request.
#[allow(clippy::enum_variant_names)] // each says what there is no node with
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlacementError {
    #[error("no live node is registered")]
    NoNodes,
    #[error(
        "no node has {cpu} CPU and {memory_mib} MiB free (largest free: {best_cpu:.2} CPU, {best_memory_mib} MiB)"
    )]
    NoRoom { cpu: f64, memory_mib: u64, best_cpu: f64, best_memory_mib: u64 },
    #[error("no live node has {wanted} free GPUs of model {model} (most free on one node: {best})")]
    NoGpus { model: String, wanted: u32, best: usize },
}

/// Picks the node for `req`. Without GPUs, the node with the most room left afterwards wins
/// (spread). With GPUs, the node with the fewest matching free GPUs that still has enough
/// wins (best fit, so a 4-GPU node is kept whole for a 4-GPU request), and the lowest free
/// indices are taken.
pub fn place(candidates: &[Candidate], req: Request<'_>) -> Result<Placed, PlacementError> {
    if candidates.is_empty() {
        return Err(PlacementError::NoNodes);
    }
    let room = |c: &Candidate| {
        let free_cpu = c.cpus - c.used_cpu - req.cpu;
        let free_mem = c.memory_mib as f64 - c.used_memory_mib as f64 - req.memory_mib as f64;
        (free_cpu >= -1e-9 && free_mem >= 0.0)
            .then(|| (free_cpu / c.cpus.max(1e-9)).min(free_mem / (c.memory_mib.max(1) as f64)))
    };
    let matching = |c: &Candidate| -> Vec<u32> {
        req.gpu.map_or_else(Vec::new, |g| c.free_gpus.iter().filter(|(_, m)| g.accepts(m)).map(|(i, _)| *i).collect())
    };
    let wanted = req.gpu.map_or(0, |g| g.count as usize);
    let best = candidates
        .iter()
        .filter_map(|c| {
            let gpus = matching(c);
            (gpus.len() >= wanted).then_some(())?;
            room(c).map(|score| (c, score, gpus))
        })
        .max_by(|a, b| {
            // Fewer spare matching GPUs first (only differs for GPU requests), then more room,
            // then the lower id.
            b.2.len().cmp(&a.2.len()).then(a.1.total_cmp(&b.1)).then(b.0.id.cmp(&a.0.id))
        });
    if let Some((c, _, gpus)) = best {
        return Ok(Placed { node: c.id, gpus: gpus.into_iter().take(wanted).collect() });
    }
    if let Some(g) = req.gpu {
        let most = candidates.iter().map(|c| matching(c).len()).max().unwrap_or(0);
        if most < wanted {
            let model = g.model.clone().unwrap_or_else(|| "any".into());
            return Err(PlacementError::NoGpus { model, wanted: g.count, best: most });
        }
    }
    let best = candidates
        .iter()
        .max_by_key(|c| c.memory_mib.saturating_sub(c.used_memory_mib))
        .expect("candidates is not empty");
    Err(PlacementError::NoRoom {
        cpu: req.cpu,
        memory_mib: req.memory_mib,
        best_cpu: best.cpus - best.used_cpu,
        best_memory_mib: best.memory_mib.saturating_sub(best.used_memory_mib),
    })
}

/// The candidates among `live` nodes: those registered in the catalog, with the resources
/// their live sandboxes and function replicas reserve and their unleased GPUs.
pub fn candidates(catalog: &Catalog, live: impl Fn(NodeId) -> bool) -> Vec<Candidate> {
    catalog
        .nodes
        .values()
        .filter(|n| live(n.id))
        .map(|n| {
            let sandboxes = catalog.sandboxes.values().filter(|s| s.node == n.id && !s.state.is_final());
            let replicas = catalog.replicas.values().filter(|r| r.node == n.id);
            let (used_cpu, used_memory_mib) = sandboxes
                .map(|s| (s.spec.cpu, s.spec.memory_mib))
                .chain(replicas.map(|r| (r.cpu, r.memory_mib)))
                .fold((0.0, 0), |(c, m), (dc, dm)| (c + dc, m + dm));
            let free_gpus = n
                .gpus
                .iter()
                .filter(|g| !catalog.gpu_leases.contains_key(&(n.id, g.index)))
                .map(|g| (g.index, g.model.clone()))
                .collect();
            Candidate {
                id: n.id,
                cpus: n.cpus as f64 * CPU_OVERCOMMIT,
                memory_mib: n.memory_mib,
                used_cpu,
                used_memory_mib,
                free_gpus,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: NodeId, cpus: f64, memory_mib: u64, used_cpu: f64, used_memory_mib: u64) -> Candidate {
        Candidate { id, cpus, memory_mib, used_cpu, used_memory_mib, free_gpus: vec![] }
    }

    fn plain(cpu: f64, memory_mib: u64) -> Request<'static> {
        Request { cpu, memory_mib, gpu: None }
    }

    fn gpu_node(id: NodeId, free: &[(u32, &str)]) -> Candidate {
        let free_gpus = free.iter().map(|(i, m)| (*i, m.to_string())).collect();
        Candidate { free_gpus, ..node(id, 16.0, 65536, 0.0, 0) }
    }

    #[test]
    fn gpu_placement_table() {
        let h100 = |count| GpuRequest { model: Some("H100".into()), count };
        let any = |count| GpuRequest { model: None, count };
        let four = gpu_node(1, &[(0, "H100"), (1, "H100"), (2, "H100"), (3, "H100")]);
        let two_left = gpu_node(2, &[(2, "H100"), (3, "H100")]);
        let a100 = gpu_node(3, &[(0, "A100")]);
        type Case = (&'static str, Vec<Candidate>, GpuRequest, Result<Placed, ()>);
        let cases: Vec<Case> = vec![
            ("lowest free indices", vec![four.clone()], h100(2), Ok(Placed { node: 1, gpus: vec![0, 1] })),
            (
                "best fit keeps the whole node for later",
                vec![four.clone(), two_left.clone()],
                h100(2),
                Ok(Placed { node: 2, gpus: vec![2, 3] }),
            ),
            ("too few anywhere", vec![two_left.clone(), a100.clone()], h100(3), Err(())),
            ("model must match", vec![a100.clone()], h100(1), Err(())),
            ("any model", vec![a100.clone()], any(1), Ok(Placed { node: 3, gpus: vec![0] })),
            (
                "model match ignores case",
                vec![two_left.clone()],
                GpuRequest { model: Some("h100".into()), count: 1 },
                Ok(Placed { node: 2, gpus: vec![2] }),
            ),
        ];
        for (name, nodes, gpu, want) in cases {
            let got = place(&nodes, Request { cpu: 1.0, memory_mib: 256, gpu: Some(&gpu) });
            assert_eq!(got.map_err(|_| ()), want, "{name}");
        }
        let err = place(&[two_left], Request { cpu: 1.0, memory_mib: 1, gpu: Some(&h100(3)) }).unwrap_err();
        assert_eq!(err.to_string(), "no live node has 3 free GPUs of model H100 (most free on one node: 2)");
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
            assert_eq!(place(&nodes, plain(cpu, mem)).map(|p| p.node).map_err(|_| ()), want, "{name}");
        }
    }

    #[test]
    fn candidates_count_live_sandboxes_and_overcommit_cpu() {
        use flotilla_raft::{Command, Response};
        let mut c = Catalog::default();
        for id in [1, 2] {
            c.apply(Command::RegisterNode {
                id,
                addr: format!("n{id}:1"),
                cpus: 2,
                memory_mib: 1024,
                gpus: vec![],
                at_ms: 0,
            });
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
            gpu: None,
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
                gpus: vec![],
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
        let err = place(&[node(1, 2.0, 1024, 1.0, 1000)], plain(0.5, 128)).unwrap_err();
        assert_eq!(err, PlacementError::NoRoom { cpu: 0.5, memory_mib: 128, best_cpu: 1.0, best_memory_mib: 24 });
    }
}
