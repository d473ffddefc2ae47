//! Flotilla's isolation defaults, turned into the engine's container-create body.
//! The reasons for each default are in the module documentation of [`crate::runtime`].

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, DeviceRequest, HostConfig, HostConfigLogConfig, Mount, MountBindOptions,
    MountBindOptionsPropagationEnum, MountType,
};

use super::disk::{WorkDisk, LABEL_DISK};
use super::{ContainerSpec, Limits};

/// Capabilities a sandbox keeps; every other one is dropped.
pub(crate) const SANDBOX_CAPS: [&str; 8] =
    ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "NET_BIND_SERVICE"];

/// Main process of a container created without a command. Both busybox and GNU coreutils
/// `sleep` accept `infinity`.
pub(crate) const KEEPALIVE_CMD: [&str; 2] = ["sleep", "infinity"];

/// The writable work area: a volume created with (and removed with) the container.
pub(crate) const WORK_DIR: &str = "/work";

/// Label put on every container this runtime creates.
pub(crate) const FLOTILLA_LABEL: (&str, &str) = ("flotilla", "1");

/// Seconds the engine waits after the stop signal before it sends SIGKILL.
const STOP_TIMEOUT_SECS: i64 = 2;

/// Mount options of the `/tmp` scratch tmpfs (its pages count against the memory limit).
const TMP_OPTIONS: &str = "rw,nosuid,nodev,mode=1777";

/// Share of the memory limit `/tmp` may fill (1/`TMP_SHARE`): the rest stays for processes,
/// so a full `/tmp` never wedges the sandbox (see the module docs of [`crate::runtime`]).
pub(crate) const TMP_SHARE: u64 = 2;

/// The `/tmp` tmpfs options for a sandbox with these limits.
fn tmp_options(limits: &Limits) -> String {
    format!("{TMP_OPTIONS},size={}k", limits.memory_mib.saturating_mul(1024) / TMP_SHARE)
}

/// Cap on the engine-side log of the main process: one file of at most this size.
const LOG_MAX_SIZE: &str = "10m";

/// The create body for `spec` with all isolation defaults applied; `disk`, when given, is
/// mounted at `/work` instead of the volume.
pub(crate) fn container_body(spec: &ContainerSpec, disk: Option<&WorkDisk>) -> ContainerCreateBody {
    let cmd = spec.cmd.clone().unwrap_or_else(|| KEEPALIVE_CMD.iter().map(|s| s.to_string()).collect());
    let mut labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
    labels.insert(FLOTILLA_LABEL.0.into(), FLOTILLA_LABEL.1.into());
    if let Some(disk) = disk {
        labels.insert(LABEL_DISK.into(), disk.key.clone());
    }
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: Some(cmd),
        env: Some(env_list(&spec.env)),
        working_dir: Some(spec.workdir.clone().unwrap_or_else(|| WORK_DIR.into())),
        labels: Some(labels),
        stop_timeout: Some(STOP_TIMEOUT_SECS),
        host_config: Some(host_config(spec, disk)),
        ..Default::default()
    }
}

/// `KEY=VALUE` strings as the engine wants them.
pub(crate) fn env_list(env: &[(String, String)]) -> Vec<String> {
    env.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

fn host_config(spec: &ContainerSpec, disk: Option<&WorkDisk>) -> HostConfig {
    let limits = limits_config(&spec.limits);
    HostConfig {
        cap_drop: Some(vec!["ALL".into()]),
        cap_add: Some(SANDBOX_CAPS.iter().map(|c| c.to_string()).collect()),
        security_opt: Some(vec!["no-new-privileges".into()]),
        readonly_rootfs: Some(!spec.writable_rootfs),
        init: Some(true),
        mounts: Some(vec![disk.map_or_else(work_volume, work_disk)]),
        tmpfs: Some(HashMap::from([("/tmp".into(), tmp_options(&spec.limits))])),
        network_mode: spec.block_network.then(|| "none".into()),
        runtime: spec.runtime.clone(),
        log_config: Some(log_config()),
        device_requests: (!spec.gpu_devices.is_empty()).then(|| {
            vec![DeviceRequest {
                driver: Some("nvidia".into()),
                device_ids: Some(spec.gpu_devices.clone()),
                capabilities: Some(vec![vec!["gpu".into()]]),
                ..Default::default()
            }]
        }),
        ..limits
    }
}

/// Memory (with swap equal to memory, i.e. no swap), CPU and pids limits.
pub(crate) fn limits_config(limits: &Limits) -> HostConfig {
    HostConfig {
        memory: Some(limits.memory_bytes()),
        memory_swap: Some(limits.memory_bytes()),
        nano_cpus: Some(limits.nano_cpus()),
        pids_limit: Some(limits.pids),
        ..Default::default()
    }
}

/// An anonymous volume at `/work`: created with the container, removed with it (`v=true`).
fn work_volume() -> Mount {
    Mount { target: Some(WORK_DIR.into()), typ: Some(MountType::VOLUME), ..Default::default() }
}

/// `disk`'s filesystem (mounted on the host) bound at `/work`; private propagation, so
/// nothing mounted on either side later shows on the other.
fn work_disk(disk: &WorkDisk) -> Mount {
    Mount {
        target: Some(WORK_DIR.into()),
        source: Some(disk.mount.to_string_lossy().into_owned()),
        typ: Some(MountType::BIND),
        bind_options: Some(MountBindOptions {
            propagation: Some(MountBindOptionsPropagationEnum::RPRIVATE),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn log_config() -> HostConfigLogConfig {
    HostConfigLogConfig {
        typ: Some("json-file".into()),
        config: Some(HashMap::from([("max-size".into(), LOG_MAX_SIZE.into()), ("max-file".into(), "1".into())])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ContainerSpec {
        ContainerSpec::new("img", Limits { cpu: 0.5, memory_mib: 64, pids: 32 })
    }

    #[test]
    fn defaults_are_locked_down() {
        let body = container_body(&spec(), None);
        let host = body.host_config.expect("host config");
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
        let added = host.cap_add.expect("cap_add");
        assert!(!added.iter().any(|c| c == "NET_RAW" || c == "SYS_ADMIN"));
        assert_eq!(host.security_opt, Some(vec!["no-new-privileges".into()]));
        assert_eq!(host.readonly_rootfs, Some(true));
        assert_eq!(host.memory, Some(64 << 20));
        assert_eq!(host.memory_swap, host.memory);
        assert_eq!(host.nano_cpus, Some(500_000_000));
        assert_eq!(host.pids_limit, Some(32));
        assert_eq!(host.network_mode, None);
        assert_eq!(host.binds, None, "nothing from the host is bind-mounted");
        let mounts = host.mounts.expect("mounts");
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].typ, Some(MountType::VOLUME));
        assert_eq!(mounts[0].source, None, "anonymous volume");
        assert_eq!(body.working_dir.as_deref(), Some("/work"));
        let tmp = host.tmpfs.expect("tmpfs")["/tmp"].clone();
        assert_eq!(tmp, "rw,nosuid,nodev,mode=1777,size=32768k", "/tmp is half the memory limit");
        assert_eq!(body.cmd, Some(vec!["sleep".into(), "infinity".into()]));
        assert_eq!(body.labels.expect("labels").get("flotilla").map(String::as_str), Some("1"));
    }

    #[test]
    fn options_are_passed_through() {
        let mut spec = spec();
        spec.block_network = true;
        spec.runtime = Some("runsc".into());
        spec.cmd = Some(vec!["true".into()]);
        spec.env = vec![("A".into(), "b=c".into())];
        spec.workdir = Some("/tmp".into());
        let body = container_body(&spec, None);
        let host = body.host_config.expect("host config");
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        assert_eq!(host.runtime.as_deref(), Some("runsc"));
        assert_eq!(body.cmd, Some(vec!["true".into()]));
        assert_eq!(body.env, Some(vec!["A=b=c".into()]));
        assert_eq!(body.working_dir.as_deref(), Some("/tmp"));
    }

    #[test]
    fn a_disk_replaces_the_work_volume() {
        let disk = WorkDisk { key: "k1".into(), mount: "/data/disks/k1".into() };
        let body = container_body(&spec(), Some(&disk));
        let mounts = body.host_config.expect("host config").mounts.expect("mounts");
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].typ, Some(MountType::BIND));
        assert_eq!(mounts[0].source.as_deref(), Some("/data/disks/k1"));
        assert_eq!(mounts[0].target.as_deref(), Some("/work"));
        assert_eq!(body.labels.expect("labels").get(LABEL_DISK).map(String::as_str), Some("k1"));
    }

    #[test]
    fn zero_limits_are_refused() {
        let ok = spec().limits;
        assert!(ok.validate().is_ok());
        for bad in [
            Limits { cpu: 0.0, ..ok },
            Limits { cpu: f64::NAN, ..ok },
            Limits { memory_mib: 0, ..ok },
            Limits { pids: 0, ..ok },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
