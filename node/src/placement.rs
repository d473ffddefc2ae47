//! Where a new sandbox or function replica runs: a pure function of the cluster's view, so
//! it is table-tested and the leader's choice is reproducible.
//!
//! A node fits when its capacity minus what its live sandboxes and replicas reserve covers
//! the request, and it has enough unleased GPUs of the asked model.
//! Memory is not overcommitted (a sandbox's memory limit is a hard wall). CPU is: a
//! sandbox's `cpu` is a cap on its share (CFS quota), and most sandboxes idle between execs,
//! so a node offers [`CPU_OVERCOMMIT`] times its cores, the way Kubernetes limits exceed
//! node capacity; what a busy node cannot give is shared fairly by the kernel. Among the nodes
//! that fit, the one with the most room left afterwards wins (the smaller of its free CPU and
//! free memory fractions), which spreads load; ties go to the lower node id so the choice is
//! deterministic. A node that already has the workload's image counts [`PREFER_SLACK`] more
//! room ([`place_preferring`]): all else about equal, it starts the workload without
//! fetching the image.
//!
//! When nothing fits, [`place`] says why as a typed [`PlacementError`]: what is short on
//! each node ("no node has 1 free CPU: node 1 has 0.0 of 8.0 left"), and whether waiting can
//! help ([`PlacementError::Full`]: work must end first) or not ([`PlacementError::Never`]: no
//! node could take it even empty, such as a GPU model no node has). The autoscaler records
//! the reason on the app for `app show`; a call to a function that can never be placed fails
//! at once with it.

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
    /// Every GPU of the node, leased or not: what it could offer once empty.
    pub gpus: Vec<(u32, String)>,
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

/// Why no node can take a request: a plain value, so the autoscaler can record it, a call
/// can name it, and an events log can keep it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub enum PlacementError {
    /// No live node is registered (yet).
    NoNodes,
    /// Nothing fits now, but some node could take it once work there ends.
    Full(Shortage),
    /// No node could take it even with nothing else on it: a GPU model no node has, or more
    /// CPU, memory or GPUs than the largest node offers. Waiting will not help.
    Never(Shortage),
}

impl PlacementError {
    /// Whether waiting cannot help (see [`PlacementError::Never`]).
    pub fn is_permanent(&self) -> bool {
        matches!(self, PlacementError::Never(_))
    }
}

impl std::fmt::Display for PlacementError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlacementError::NoNodes => f.write_str("no live node is registered"),
            PlacementError::Full(s) => write!(f, "{s}"),
            PlacementError::Never(s) => write!(f, "no node can ever take it, even with nothing else on it: {s}"),
        }
    }
}

impl std::error::Error for PlacementError {}

/// What the request lacks, and what each node has of it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub enum Shortage {
    /// Not enough CPU or memory on any node (among those with the GPUs asked for).
    Room { cpu: f64, memory_mib: u64, nodes: Vec<NodeRoom> },
    /// Not enough GPUs of the model on any node: each node's count of matching free GPUs.
    Gpus { model: Option<String>, wanted: u32, nodes: Vec<(NodeId, usize)> },
}

/// A node's free and offered CPU and memory.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NodeRoom {
    pub id: NodeId,
    pub free_cpu: f64,
    pub cpus: f64,
    pub free_memory_mib: u64,
    pub memory_mib: u64,
}

/// Nodes named in a message; the rest are counted.
const NODES_NAMED: usize = 5;

/// Writes `items` joined by ", ", at most [`NODES_NAMED`] of them, then how many more.
fn list(f: &mut std::fmt::Formatter<'_>, items: impl ExactSizeIterator<Item = String>) -> std::fmt::Result {
    let total = items.len();
    let named: Vec<String> = items.take(NODES_NAMED).collect();
    f.write_str(&named.join(", "))?;
    if total > NODES_NAMED {
        write!(f, " and {} more", total - NODES_NAMED)?;
    }
    Ok(())
}

impl std::fmt::Display for Shortage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shortage::Room { cpu, memory_mib, nodes } => {
                let cpu_short = nodes.iter().any(|n| n.free_cpu + 1e-9 < *cpu);
                let mem_short = nodes.iter().any(|n| n.free_memory_mib < *memory_mib);
                let (cpu_part, mem_part) = (format!("{cpu} free CPU"), format!("{memory_mib} MiB free memory"));
                let room = |n: &NodeRoom| {
                    let c = format!("{:.1} of {:.1}", n.free_cpu.max(0.0), n.cpus);
                    let m = format!("{} of {} MiB", n.free_memory_mib, n.memory_mib);
                    match (cpu_short, mem_short) {
                        (true, false) => format!("node {} has {c} left", n.id),
                        (false, true) => format!("node {} has {m} left", n.id),
                        _ => format!("node {} has {c} CPU and {m} left", n.id),
                    }
                };
                match (cpu_short, mem_short) {
                    (true, false) => write!(f, "no node has {cpu_part}: ")?,
                    (false, true) => write!(f, "no node has {mem_part}: ")?,
                    _ => write!(f, "no node has {cpu_part} and {mem_part}: ")?,
                }
                list(f, nodes.iter().map(room))
            }
            Shortage::Gpus { model, wanted, nodes } => {
                let model = model.as_deref().map(|m| format!("{m} ")).unwrap_or_default();
                write!(f, "no node has {wanted} free {model}GPUs: ")?;
                if nodes.is_empty() {
                    return f.write_str("no node has any");
                }
                list(f, nodes.iter().map(|(id, n)| format!("node {id} has {n}")))
            }
        }
    }
}

/// Picks the node for `req`. Without GPUs, the node with the most room left afterwards wins
/// (spread). With GPUs, the node with the fewest matching free GPUs that still has enough
/// wins (best fit, so a 4-GPU node is kept whole for a 4-GPU request), and the lowest free
/// indices are taken. When none fits, the error says what is short on each node, and
/// whether any node could take the request once empty (judged on the same candidates with
/// nothing reserved and every GPU free).
pub fn place(candidates: &[Candidate], req: Request<'_>) -> Result<Placed, PlacementError> {
    place_preferring(candidates, req, |_| false)
}

/// [`place`], preferring the nodes `prefer` names (those that have the workload's image,
/// so it starts without a fetch): such a node wins over one with up to [`PREFER_SLACK`] more
/// room.
pub fn place_preferring(
    candidates: &[Candidate],
    req: Request<'_>,
    prefer: impl Fn(NodeId) -> bool,
) -> Result<Placed, PlacementError> {
    if candidates.is_empty() {
        return Err(PlacementError::NoNodes);
    }
    if let Some(placed) = best(candidates, req, &prefer) {
        return Ok(placed);
    }
    let empty: Vec<Candidate> = candidates
        .iter()
        .map(|c| Candidate { used_cpu: 0.0, used_memory_mib: 0, free_gpus: c.gpus.clone(), ..c.clone() })
        .collect();
    match best(&empty, req, &|_| false) {
        Some(_) => Err(PlacementError::Full(shortage(candidates, req))),
        None => Err(PlacementError::Never(shortage(&empty, req))),
    }
}

/// Free GPU indices of `c` that serve `req`.
fn matching(c: &Candidate, req: Request<'_>) -> Vec<u32> {
    req.gpu.map_or_else(Vec::new, |g| c.free_gpus.iter().filter(|(_, m)| g.accepts(m)).map(|(i, _)| *i).collect())
}

/// How much less room (a fraction of a node's CPU or memory) a preferred node may have and
/// still be chosen.
pub const PREFER_SLACK: f64 = 0.05;

/// The best node that fits, if any.
fn best(candidates: &[Candidate], req: Request<'_>, prefer: &dyn Fn(NodeId) -> bool) -> Option<Placed> {
    let room = |c: &Candidate| {
        let free_cpu = c.cpus - c.used_cpu - req.cpu;
        let free_mem = c.memory_mib as f64 - c.used_memory_mib as f64 - req.memory_mib as f64;
        (free_cpu >= -1e-9 && free_mem >= 0.0)
            .then(|| (free_cpu / c.cpus.max(1e-9)).min(free_mem / (c.memory_mib.max(1) as f64)))
    };
    let wanted = req.gpu.map_or(0, |g| g.count as usize);
    candidates
        .iter()
        .filter_map(|c| {
            let gpus = matching(c, req);
            (gpus.len() >= wanted).then_some(())?;
            room(c).map(|score| (c, score + if prefer(c.id) { PREFER_SLACK } else { 0.0 }, gpus))
        })
        .max_by(|a, b| {
            // Fewer spare matching GPUs first (only differs for GPU requests), then more room,
            // then the lower id.
            b.2.len().cmp(&a.2.len()).then(a.1.total_cmp(&b.1)).then(b.0.id.cmp(&a.0.id))
        })
        .map(|(c, _, gpus)| Placed { node: c.id, gpus: gpus.into_iter().take(wanted).collect() })
}

/// What `req` lacks on `candidates`, none of which fits: GPUs when no node has enough of
/// them, otherwise CPU and memory on the nodes that do.
fn shortage(candidates: &[Candidate], req: Request<'_>) -> Shortage {
    let wanted = req.gpu.map_or(0, |g| g.count as usize);
    let with_gpus: Vec<&Candidate> = candidates.iter().filter(|c| matching(c, req).len() >= wanted).collect();
    match req.gpu {
        Some(g) if with_gpus.is_empty() => Shortage::Gpus {
            model: g.model.clone(),
            wanted: g.count,
            nodes: candidates.iter().map(|c| (c.id, matching(c, req).len())).collect(),
        },
        _ => Shortage::Room {
            cpu: req.cpu,
            memory_mib: req.memory_mib,
            nodes: with_gpus
                .iter()
                .map(|c| NodeRoom {
                    id: c.id,
                    free_cpu: c.cpus - c.used_cpu,
                    cpus: c.cpus,
                    free_memory_mib: c.memory_mib.saturating_sub(c.used_memory_mib),
                    memory_mib: c.memory_mib,
                })
                .collect(),
        },
    }
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
                gpus: n.gpus.iter().map(|g| (g.index, g.model.clone())).collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: NodeId, cpus: f64, memory_mib: u64, used_cpu: f64, used_memory_mib: u64) -> Candidate {
        Candidate { id, cpus, memory_mib, used_cpu, used_memory_mib, free_gpus: vec![], gpus: vec![] }
    }

    fn plain(cpu: f64, memory_mib: u64) -> Request<'static> {
        Request { cpu, memory_mib, gpu: None }
    }

    fn gpu_node(id: NodeId, free: &[(u32, &str)]) -> Candidate {
        let free_gpus: Vec<(u32, String)> = free.iter().map(|(i, m)| (*i, m.to_string())).collect();
        Candidate { gpus: free_gpus.clone(), free_gpus, ..node(id, 16.0, 65536, 0.0, 0) }
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
    fn a_node_with_the_image_wins_when_it_has_about_as_much_room() {
        // 0.3 of 10 CPUs used on node 1 (room 0.92 after a 0.5 CPU request): within the slack of
        // node 2's 0.95, so node 1, which has the image, is chosen; at 2 of 10 (0.75), it is not.
        let has = |id| id == 1;
        let nodes = vec![node(1, 10.0, 1 << 20, 0.3, 0), node(2, 10.0, 1 << 20, 0.0, 0)];
        assert_eq!(place(&nodes, plain(0.5, 1)).unwrap().node, 2, "without a preference, room decides");
        assert_eq!(place_preferring(&nodes, plain(0.5, 1), has).unwrap().node, 1);
        let busier = vec![node(1, 10.0, 1 << 20, 2.0, 0), node(2, 10.0, 1 << 20, 0.0, 0)];
        assert_eq!(place_preferring(&busier, plain(0.5, 1), has).unwrap().node, 2, "more than the slack apart");
        let full = vec![node(1, 10.0, 1 << 20, 10.0, 0), node(2, 10.0, 1 << 20, 0.0, 0)];
        assert_eq!(place_preferring(&full, plain(0.5, 1), has).unwrap().node, 2, "a preferred node must still fit");
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
            writable_rootfs: false,
            from_snapshot: None,
            disk_mib: 0,
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

    /// Why nothing fits, as a user reads it: what is short on which node, and whether
    /// waiting can help.
    #[test]
    fn placement_error_table() {
        let h100 = |count| GpuRequest { model: Some("H100".into()), count };
        let any = GpuRequest { model: None, count: 1 };
        let (one_h100, three_h100) = (h100(1), h100(3));
        // Node 3's one H100 is leased: it has it, but not free.
        let leased = Candidate { gpus: vec![(0, "H100".into())], ..node(3, 8.0, 4096, 0.0, 0) };
        let req = |cpu, memory_mib, gpu| Request { cpu, memory_mib, gpu };
        type Case<'a> = (&'static str, Vec<Candidate>, Request<'a>, bool, &'static str);
        let cases: Vec<Case> = vec![
            (
                "sandboxes hold the CPU",
                vec![node(1, 8.0, 8192, 8.0, 512)],
                req(1.0, 128, None),
                false,
                "no node has 1 free CPU: node 1 has 0.0 of 8.0 left",
            ),
            (
                "memory short on one node, CPU on the other",
                vec![node(1, 8.0, 1024, 0.0, 1000), node(2, 8.0, 1024, 7.5, 0)],
                req(1.0, 128, None),
                false,
                "no node has 1 free CPU and 128 MiB free memory: node 1 has 8.0 of 8.0 CPU and 24 of 1024 MiB left, \
                 node 2 has 0.5 of 8.0 CPU and 1024 of 1024 MiB left",
            ),
            (
                "more memory than any node has",
                vec![node(1, 8.0, 1024, 0.0, 0), node(2, 8.0, 2048, 0.0, 0)],
                req(0.5, 4096, None),
                true,
                "no node can ever take it, even with nothing else on it: no node has 4096 MiB free memory: \
                 node 1 has 1024 of 1024 MiB left, node 2 has 2048 of 2048 MiB left",
            ),
            (
                "a GPU model no node has",
                vec![node(1, 8.0, 1024, 0.0, 0), gpu_node(2, &[(0, "A100")])],
                req(1.0, 128, Some(&one_h100)),
                true,
                "no node can ever take it, even with nothing else on it: no node has 1 free H100 GPUs: \
                 node 1 has 0, node 2 has 0",
            ),
            (
                "the GPU exists but is leased",
                vec![leased.clone()],
                req(1.0, 128, Some(&one_h100)),
                false,
                "no node has 1 free H100 GPUs: node 3 has 0",
            ),
            (
                "more GPUs than one node has",
                vec![leased.clone(), gpu_node(2, &[(0, "H100"), (1, "H100")])],
                req(1.0, 128, Some(&three_h100)),
                true,
                "no node can ever take it, even with nothing else on it: no node has 3 free H100 GPUs: \
                 node 3 has 1, node 2 has 2",
            ),
            (
                "only the GPU node's room counts",
                vec![node(1, 8.0, 8192, 0.0, 0), Candidate { used_cpu: 16.0, ..gpu_node(2, &[(0, "H100")]) }],
                req(1.0, 128, Some(&any)),
                false,
                "no node has 1 free CPU: node 2 has 0.0 of 16.0 left",
            ),
        ];
        for (name, nodes, r, permanent, want) in cases {
            let err = place(&nodes, r).unwrap_err();
            assert_eq!((err.is_permanent(), err.to_string().as_str()), (permanent, want), "{name}");
        }
        let many: Vec<Candidate> = (1..=7).map(|id| node(id, 1.0, 64, 1.0, 0)).collect();
        let err = place(&many, req(1.0, 1, None)).unwrap_err().to_string();
        assert!(err.ends_with("node 5 has 0.0 of 1.0 left and 2 more"), "{err}");
        assert_eq!(place(&[], req(1.0, 1, None)), Err(PlacementError::NoNodes));
    }
}
