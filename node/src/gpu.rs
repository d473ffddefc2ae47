//! The GPUs a node offers: found with `nvidia-smi` (`--gpus auto`), declared as fakes for
//! tests (`--gpus fake:H100:4`), or none.
//!
//! Each GPU becomes a slot in the catalog (see `flotilla_raft::catalog::replica`): a workload
//! that asks for GPUs gets leased indices, and its container sees exactly those devices. A
//! real GPU is handed to the container as an NVIDIA device request for its index; a fake one
//! has no device, so the container gets `NVIDIA_VISIBLE_DEVICES` with the leased indices and
//! tests can check that no two holders share one.

use std::process::Command;

use flotilla_raft::Gpu;

/// Where a node's GPU inventory comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum GpuSource {
    #[default]
    None,
    /// Ask `nvidia-smi`; no NVIDIA driver means no GPUs.
    Auto,
    /// `count` fake GPUs of `model`, for tests on machines without GPUs.
    Fake { model: String, count: u32 },
}

impl std::str::FromStr for GpuSource {
    type Err = String;

    /// Parses `auto`, `none` or `fake:MODEL:COUNT`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(GpuSource::Auto),
            "none" => Ok(GpuSource::None),
            _ => {
                let bad = || format!("{s:?} is not auto, none or fake:MODEL:COUNT (e.g. fake:H100:4)");
                let rest = s.strip_prefix("fake:").ok_or_else(bad)?;
                let (model, count) = rest.rsplit_once(':').ok_or_else(bad)?;
                let count: u32 = count.parse().map_err(|_| bad())?;
                let model_ok =
                    !model.is_empty() && model.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if !model_ok || !(1..=64).contains(&count) {
                    return Err(bad());
                }
                Ok(GpuSource::Fake { model: model.to_string(), count })
            }
        }
    }
}

impl GpuSource {
    /// The GPUs this source offers. `auto` without a working `nvidia-smi` offers none (and
    /// says why in the log): a machine without GPUs is not an error.
    pub fn detect(&self) -> Vec<Gpu> {
        match self {
            GpuSource::None => vec![],
            GpuSource::Fake { model, count } => {
                (0..*count).map(|index| Gpu { index, model: model.clone(), fake: true }).collect()
            }
            GpuSource::Auto => match nvidia_smi() {
                Ok(gpus) => gpus,
                Err(why) => {
                    tracing::info!(%why, "--gpus auto found no GPUs");
                    vec![]
                }
            },
        }
    }
}

/// What a container needs to see exactly the GPUs at `leased` indices of `node_gpus`:
/// `NVIDIA_VISIBLE_DEVICES` with the indices (for fakes, the only trace; the NVIDIA runtime
/// reads it too), and the indices of real GPUs for the engine's device request.
pub fn hand_out(node_gpus: &[Gpu], leased: &[u32]) -> (Vec<(String, String)>, Vec<String>) {
    if leased.is_empty() {
        return (vec![], vec![]);
    }
    let list = leased.iter().map(u32::to_string).collect::<Vec<_>>();
    let real =
        leased.iter().filter(|i| node_gpus.iter().any(|g| g.index == **i && !g.fake)).map(u32::to_string).collect();
    (vec![("NVIDIA_VISIBLE_DEVICES".to_string(), list.join(","))], real)
}

/// Lists GPUs with `nvidia-smi --query-gpu=index,name --format=csv,noheader`.
fn nvidia_smi() -> Result<Vec<Gpu>, String> {
    let out = Command::new("nvidia-smi")
        .args(["--query-gpu=index,name", "--format=csv,noheader"])
        .output()
        .map_err(|e| format!("nvidia-smi: {e}"))?;
    if !out.status.success() {
        return Err(format!("nvidia-smi: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    parse_nvidia_smi(&String::from_utf8_lossy(&out.stdout))
}

/// Parses nvidia-smi's CSV lines (`0, NVIDIA H100 80GB HBM3`) into GPUs.
fn parse_nvidia_smi(csv: &str) -> Result<Vec<Gpu>, String> {
    csv.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let (index, name) = line.split_once(',').ok_or_else(|| format!("unexpected nvidia-smi line {line:?}"))?;
            let index = index.trim().parse().map_err(|_| format!("unexpected nvidia-smi index in {line:?}"))?;
            Ok(Gpu { index, model: model_of(name.trim()), fake: false })
        })
        .collect()
}

/// The short model name users write in `gpu = "H100:1"`: the marketing name without the
/// vendor and without memory or form-factor suffixes (`NVIDIA A100-SXM4-40GB` -> `A100`).
fn model_of(name: &str) -> String {
    let name = name.strip_prefix("NVIDIA ").unwrap_or(name);
    let name = name.strip_prefix("Tesla ").unwrap_or(name);
    let first = name.split_whitespace().next().unwrap_or(name);
    first.split('-').next().unwrap_or(first).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse() {
        assert_eq!("auto".parse(), Ok(GpuSource::Auto));
        assert_eq!("none".parse(), Ok(GpuSource::None));
        assert_eq!("fake:H100:4".parse(), Ok(GpuSource::Fake { model: "H100".into(), count: 4 }));
        for bad in ["fake:H100", "fake::2", "fake:H100:0", "fake:H 100:1", "gpu", "fake:H100:x"] {
            assert!(bad.parse::<GpuSource>().is_err(), "{bad}");
        }
    }

    #[test]
    fn fakes_are_numbered_from_zero() {
        let gpus = GpuSource::Fake { model: "H100".into(), count: 2 }.detect();
        assert_eq!(
            gpus.iter().map(|g| (g.index, g.model.as_str(), g.fake)).collect::<Vec<_>>(),
            [(0, "H100", true), (1, "H100", true)]
        );
    }

    #[test]
    fn leased_gpus_are_handed_out_by_index() {
        let gpus =
            [Gpu { index: 0, model: "H100".into(), fake: false }, Gpu { index: 1, model: "H100".into(), fake: true }];
        let (env, devices) = hand_out(&gpus, &[1, 0]);
        assert_eq!(env, [("NVIDIA_VISIBLE_DEVICES".to_string(), "1,0".to_string())]);
        assert_eq!(devices, ["0"]);
        assert_eq!(hand_out(&gpus, &[]), (vec![], vec![]));
    }

    #[test]
    fn nvidia_smi_names_become_short_models() {
        let gpus = parse_nvidia_smi("0, NVIDIA H100 80GB HBM3\n1, NVIDIA A100-SXM4-40GB\n2, Tesla T4\n").unwrap();
        assert_eq!(
            gpus.iter().map(|g| (g.index, g.model.as_str())).collect::<Vec<_>>(),
            [(0, "H100"), (1, "A100"), (2, "T4")]
        );
        assert!(parse_nvidia_smi("garbage").is_err());
    }
}
