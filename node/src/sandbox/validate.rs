//! Checks sandbox and exec requests at the edge; every error names its field.

use std::collections::BTreeMap;

use flotilla_proto::control as pb;
use flotilla_proto::worker::{ExecStart, SnapshotRequest};
use flotilla_raft::{SandboxSpec, SnapshotKind};

use super::exec::ExecRequest;
use crate::error::NodeError;

/// Total bytes of a command line (arguments plus environment), like the kernel's ARG_MAX
/// budget; larger requests are refused rather than failing inside the engine.
pub const MAX_ARGS_BYTES: usize = 256 * 1024;
/// Longest sandbox timeout, seconds (7 days).
pub const MAX_TIMEOUT_S: u64 = 7 * 24 * 3600;
/// Defaults for unset resources.
pub const DEFAULT_CPU: f64 = 1.0;
pub const DEFAULT_MEMORY_MIB: u64 = 512;
/// Size of a sandbox's `/work` when the request leaves it 0, MiB.
pub const DEFAULT_DISK_MIB: u64 = 1024;
/// Bounds of a sandbox's `/work` size, MiB (the disk is a sparse file: it takes host space
/// only as it fills).
pub const MIN_DISK_MIB: u64 = 16;
pub const MAX_DISK_MIB: u64 = 1_048_576;

fn invalid(field: &str, message: impl Into<String>) -> NodeError {
    NodeError::invalid(field, message)
}

fn check_env(field: &str, env: &BTreeMap<String, String>) -> Result<(), NodeError> {
    for (k, v) in env {
        let ok = !k.is_empty()
            && k.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(invalid(&format!("{field}.{k}"), "must match [A-Za-z_][A-Za-z0-9_]*"));
        }
        if v.contains('\0') {
            return Err(invalid(&format!("{field}.{k}"), "must not contain NUL"));
        }
    }
    Ok(())
}

fn check_args(field: &str, args: &[String], env: &BTreeMap<String, String>) -> Result<(), NodeError> {
    if args.iter().any(|a| a.contains('\0')) {
        return Err(invalid(field, "arguments must not contain NUL"));
    }
    let size: usize =
        args.iter().map(|a| a.len() + 1).sum::<usize>() + env.iter().map(|(k, v)| k.len() + v.len() + 2).sum::<usize>();
    if size > MAX_ARGS_BYTES {
        return Err(invalid(
            field,
            format!("arguments and environment total {size} bytes; the limit is {MAX_ARGS_BYTES}"),
        ));
    }
    Ok(())
}

fn check_workdir(field: &str, workdir: &Option<String>) -> Result<(), NodeError> {
    match workdir {
        Some(w) if !w.starts_with('/') => Err(invalid(field, format!("{w:?} must be an absolute path"))),
        _ => Ok(()),
    }
}

/// Checks a sandbox name: 1 to 63 characters of `[A-Za-z0-9_.-]`, not starting with `sb-`
/// (ids start with it, and names and ids share one lookup).
pub fn check_name(name: &str) -> Result<(), NodeError> {
    let ok = (1..=63).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && !name.starts_with("sb-");
    if ok {
        Ok(())
    } else {
        Err(invalid("name", format!("{name:?} must be 1-63 characters of [A-Za-z0-9_.-] and not start with sb-")))
    }
}

/// A create request as a catalog spec.
pub fn sandbox(req: &pb::CreateSandboxRequest) -> Result<(Option<String>, SandboxSpec), NodeError> {
    let spec = req.spec.as_ref().ok_or_else(|| invalid("spec", "is required"))?;
    if spec.image.trim().is_empty() || spec.image.chars().any(char::is_whitespace) {
        return Err(invalid("spec.image", "must be an image name such as flotilla/busybox"));
    }
    let cpu = if spec.cpu == 0.0 { DEFAULT_CPU } else { spec.cpu };
    if !cpu.is_finite() || cpu <= 0.0 || cpu > 64.0 {
        return Err(invalid("spec.cpu", format!("{} must be more than 0 and at most 64 cores", spec.cpu)));
    }
    let memory_mib = if spec.memory_mib == 0 { DEFAULT_MEMORY_MIB } else { spec.memory_mib };
    if !(16..=1_048_576).contains(&memory_mib) {
        return Err(invalid("spec.memory_mib", format!("{memory_mib} must be 16 to 1048576 MiB")));
    }
    let disk_mib = if spec.disk_mib == 0 { DEFAULT_DISK_MIB } else { spec.disk_mib };
    if !(MIN_DISK_MIB..=MAX_DISK_MIB).contains(&disk_mib) {
        return Err(invalid(
            "spec.disk_mib",
            format!("{disk_mib} must be {MIN_DISK_MIB} to {MAX_DISK_MIB} MiB (the size of /work)"),
        ));
    }
    if spec.timeout_s > MAX_TIMEOUT_S {
        return Err(invalid("spec.timeout_s", format!("{} is more than {MAX_TIMEOUT_S} s", spec.timeout_s)));
    }
    if spec.idle_timeout_s > MAX_TIMEOUT_S {
        return Err(invalid("spec.idle_timeout_s", format!("{} is more than {MAX_TIMEOUT_S} s", spec.idle_timeout_s)));
    }
    let runtime = match spec.runtime.as_str() {
        "" | "runc" => "runc",
        "runsc" => "runsc",
        other => return Err(invalid("spec.runtime", format!("{other:?} must be runc or runsc"))),
    };
    let env: BTreeMap<String, String> = spec.env.clone().into_iter().collect();
    check_env("spec.env", &env)?;
    check_args("spec.command", &spec.command, &env)?;
    check_workdir("spec.workdir", &spec.workdir)?;
    check_snapshot_settings(spec)?;
    for (k, v) in &spec.tags {
        if k.is_empty() || k.len() > 63 || v.len() > 255 {
            return Err(invalid(&format!("spec.tags.{k}"), "keys are 1-63 characters, values at most 255"));
        }
    }
    if let Some(name) = &req.name {
        check_name(name)?;
    }
    let gpu = spec.gpu.as_deref().map(|g| parse_gpu("spec.gpu", g)).transpose()?;
    Ok((
        req.name.clone(),
        SandboxSpec {
            image: spec.image.clone(),
            command: spec.command.clone(),
            env,
            workdir: spec.workdir.clone(),
            cpu,
            memory_mib,
            timeout_s: spec.timeout_s,
            idle_timeout_s: spec.idle_timeout_s,
            block_network: spec.block_network,
            runtime: runtime.to_string(),
            tags: spec.tags.clone().into_iter().collect(),
            gpu,
            restore_on_failure: spec.restore_on_failure,
            snapshot_every_s: spec.snapshot_every_s,
            from_snapshot: spec.from_snapshot.clone(),
            disk_mib,
            writable_rootfs: spec.writable_rootfs,
        },
    ))
}

/// Parses a GPU request (`MODEL:N` or `any:N`, N from 1 to 16) for the catalog.
pub fn parse_gpu(field: &str, s: &str) -> Result<flotilla_raft::GpuRequest, NodeError> {
    let g: flotilla::spec::GpuRequest = s.parse().map_err(|e: String| invalid(field, e))?;
    if !(1..=16).contains(&g.count) {
        return Err(invalid(field, format!("GPU count must be between 1 and 16 (got {})", g.count)));
    }
    Ok(flotilla_raft::GpuRequest { model: g.model, count: g.count })
}

/// Shortest `snapshot_every_s`: each snapshot reads and replicates the sandbox's files.
pub const MIN_SNAPSHOT_EVERY_S: u64 = 5;

/// Checks the snapshot settings of a sandbox spec.
fn check_snapshot_settings(spec: &pb::SandboxSpec) -> Result<(), NodeError> {
    if spec.snapshot_every_s != 0 && !(MIN_SNAPSHOT_EVERY_S..=MAX_TIMEOUT_S).contains(&spec.snapshot_every_s) {
        return Err(invalid(
            "spec.snapshot_every_s",
            format!("must be 0 (never) or {MIN_SNAPSHOT_EVERY_S} to {MAX_TIMEOUT_S} seconds"),
        ));
    }
    if let Some(id) = &spec.from_snapshot {
        if !id.starts_with("sn-") || id.len() > 64 {
            return Err(invalid("spec.from_snapshot", format!("{id:?} is not a snapshot id (sn-…)")));
        }
    }
    Ok(())
}

/// A snapshot request: its kind and, for `dir`, the directory (below `/work`, normalised).
pub fn snapshot(req: &SnapshotRequest) -> Result<(SnapshotKind, Option<String>), NodeError> {
    if req.sandbox_id.is_empty() {
        return Err(invalid("sandbox_id", "is required"));
    }
    let kind = SnapshotKind::parse(&req.kind)
        .ok_or_else(|| invalid("kind", format!("{:?} is not one of fs, dir, memory", req.kind)))?;
    match kind {
        SnapshotKind::Dir => {
            // Checked on the text: `Path::components` would quietly drop a `.`.
            let normal = req
                .path
                .trim_end_matches('/')
                .split('/')
                .skip(1)
                .all(|seg| !seg.is_empty() && seg != "." && seg != "..");
            if !req.path.starts_with("/work/") || !normal || req.path.contains('\0') {
                return Err(invalid(
                    "path",
                    format!(
                        "{:?} must be an absolute directory below /work (the sandbox's writable filesystem), without . or ..",
                        req.path
                    ),
                ));
            }
            Ok((kind, Some(req.path.trim_end_matches('/').to_string())))
        }
        _ if !req.path.is_empty() => {
            Err(invalid("path", format!("only a dir snapshot takes a path, not {}", req.kind)))
        }
        _ => Ok((kind, None)),
    }
}

/// The first message of an exec stream as a request.
pub fn exec(start: &ExecStart) -> Result<ExecRequest, NodeError> {
    if start.sandbox_id.is_empty() {
        return Err(invalid("sandbox_id", "is required"));
    }
    if start.exec_id.is_empty() || start.exec_id.len() > 128 {
        return Err(invalid("exec_id", "must be 1 to 128 characters"));
    }
    if start.command.is_empty() || start.command[0].is_empty() {
        return Err(invalid("command", "must name a program"));
    }
    if start.timeout_s > MAX_TIMEOUT_S {
        return Err(invalid("timeout_s", format!("{} is more than {MAX_TIMEOUT_S} s", start.timeout_s)));
    }
    let env: BTreeMap<String, String> = start.env.clone().into_iter().collect();
    check_env("env", &env)?;
    check_args("command", &start.command, &env)?;
    check_workdir("workdir", &start.workdir)?;
    Ok(ExecRequest {
        sandbox_id: start.sandbox_id.clone(),
        exec_id: start.exec_id.clone(),
        command: start.command.clone(),
        env: env.into_iter().collect(),
        workdir: start.workdir.clone(),
        timeout_s: start.timeout_s,
        stdin: start.stdin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> pb::CreateSandboxRequest {
        pb::CreateSandboxRequest {
            spec: Some(pb::SandboxSpec { image: "flotilla/busybox".into(), ..Default::default() }),
            name: None,
            wait_running: false,
            request_id: String::new(),
        }
    }

    fn field(r: Result<(Option<String>, SandboxSpec), NodeError>) -> String {
        match r {
            Err(NodeError::InvalidArgument { field, .. }) => field,
            other => panic!("expected an invalid argument, got {other:?}"),
        }
    }

    #[test]
    fn defaults_fill_in() {
        let (_, spec) = sandbox(&req()).unwrap();
        assert_eq!((spec.cpu, spec.memory_mib, spec.runtime.as_str()), (DEFAULT_CPU, DEFAULT_MEMORY_MIB, "runc"));
        assert_eq!(spec.disk_mib, DEFAULT_DISK_MIB);
    }

    #[test]
    fn bad_sandbox_requests_name_the_field() {
        type Mutate = fn(&mut pb::CreateSandboxRequest);
        let cases: Vec<(Mutate, &str)> = vec![
            (|r| r.spec = None, "spec"),
            (|r| r.spec.as_mut().unwrap().image = " ".into(), "spec.image"),
            (|r| r.spec.as_mut().unwrap().cpu = -1.0, "spec.cpu"),
            (|r| r.spec.as_mut().unwrap().cpu = f64::NAN, "spec.cpu"),
            (|r| r.spec.as_mut().unwrap().memory_mib = 4, "spec.memory_mib"),
            (|r| r.spec.as_mut().unwrap().disk_mib = 8, "spec.disk_mib"),
            (|r| r.spec.as_mut().unwrap().disk_mib = MAX_DISK_MIB + 1, "spec.disk_mib"),
            (|r| r.spec.as_mut().unwrap().timeout_s = MAX_TIMEOUT_S + 1, "spec.timeout_s"),
            (|r| r.spec.as_mut().unwrap().runtime = "kata".into(), "spec.runtime"),
            (
                |r| {
                    r.spec.as_mut().unwrap().env.insert("1BAD".into(), "x".into());
                },
                "spec.env.1BAD",
            ),
            (|r| r.spec.as_mut().unwrap().command = vec!["x".repeat(MAX_ARGS_BYTES)], "spec.command"),
            (|r| r.spec.as_mut().unwrap().workdir = Some("rel".into()), "spec.workdir"),
            (|r| r.name = Some("sb-x".into()), "name"),
            (|r| r.name = Some("has space".into()), "name"),
        ];
        for (mutate, want) in cases {
            let mut r = req();
            mutate(&mut r);
            assert_eq!(field(sandbox(&r)), want);
        }
    }

    #[test]
    fn bad_exec_requests_name_the_field() {
        let ok = ExecStart {
            sandbox_id: "sb-1".into(),
            exec_id: "e1".into(),
            command: vec!["true".into()],
            ..Default::default()
        };
        assert!(exec(&ok).is_ok());
        let cases: Vec<(ExecStart, &str)> = vec![
            (ExecStart { sandbox_id: String::new(), ..ok.clone() }, "sandbox_id"),
            (ExecStart { exec_id: String::new(), ..ok.clone() }, "exec_id"),
            (ExecStart { command: vec![], ..ok.clone() }, "command"),
            (ExecStart { command: vec!["a".repeat(MAX_ARGS_BYTES + 1)], ..ok.clone() }, "command"),
            (ExecStart { timeout_s: MAX_TIMEOUT_S + 1, ..ok.clone() }, "timeout_s"),
        ];
        for (start, want) in cases {
            match exec(&start) {
                Err(NodeError::InvalidArgument { field, .. }) => assert_eq!(field, want),
                other => panic!("{want}: {other:?}"),
            }
        }
    }

    #[test]
    fn snapshot_requests_name_the_field() {
        let req = |kind: &str, path: &str| SnapshotRequest {
            sandbox_id: "sb-1".into(),
            kind: kind.into(),
            path: path.into(),
        };
        assert_eq!(snapshot(&req("fs", "")).unwrap(), (SnapshotKind::Fs, None));
        assert_eq!(snapshot(&req("memory", "")).unwrap(), (SnapshotKind::Memory, None));
        assert_eq!(snapshot(&req("dir", "/work/a/b/")).unwrap(), (SnapshotKind::Dir, Some("/work/a/b".into())));
        let cases = [
            (SnapshotRequest { sandbox_id: String::new(), ..req("fs", "") }, "sandbox_id"),
            (req("disk", ""), "kind"),
            (req("dir", ""), "path"),
            (req("dir", "/work"), "path"),
            (req("dir", "/etc"), "path"),
            (req("dir", "work/a"), "path"),
            (req("dir", "/work/../etc"), "path"),
            (req("dir", "/work/./a"), "path"),
            (req("fs", "/work/a"), "path"),
        ];
        for (r, want) in cases {
            match snapshot(&r) {
                Err(NodeError::InvalidArgument { field, .. }) => assert_eq!(field, want, "{r:?}"),
                other => panic!("{r:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn snapshot_settings_are_bounded() {
        let with = |every: u64, from: Option<&str>| pb::CreateSandboxRequest {
            spec: Some(pb::SandboxSpec {
                image: "flotilla/busybox".into(),
                snapshot_every_s: every,
                from_snapshot: from.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(sandbox(&with(0, None)).is_ok());
        assert_eq!(sandbox(&with(60, Some("sn-1"))).unwrap().1.from_snapshot.as_deref(), Some("sn-1"));
        for (r, want) in [(with(1, None), "spec.snapshot_every_s"), (with(0, Some("sb-1")), "spec.from_snapshot")] {
            match sandbox(&r) {
                Err(NodeError::InvalidArgument { field, .. }) => assert_eq!(field, want),
                other => panic!("{want}: {other:?}"),
            }
        }
    }
}
