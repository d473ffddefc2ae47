//! What this machine offers to workloads, read once at start.

/// CPU, memory and GPUs this node announces in the catalog.
#[derive(Debug, Clone)]
pub struct Resources {
    /// Logical CPUs.
    pub cpus: u32,
    /// Total memory, MiB.
    pub memory_mib: u64,
    pub gpus: Vec<flotilla_raft::Gpu>,
}

impl Resources {
    /// Reads the machine's CPU count, `MemTotal` from `/proc/meminfo` (0 if unreadable) and
    /// the GPUs `gpus` offers.
    pub fn detect(gpus: &crate::gpu::GpuSource) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        let memory_mib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map_or(0, |kib| kib / 1024);
        Self { cpus, memory_mib, gpus: gpus.detect() }
    }
}
