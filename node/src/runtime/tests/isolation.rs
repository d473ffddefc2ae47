//! The isolation defaults, checked from inside a sandbox.

use std::time::{Duration, Instant};

use bollard::query_parameters::TopOptions;

use super::{sh, spec, unique, with_sandbox};
use crate::runtime::sandbox::SANDBOX_CAPS;
use crate::runtime::Limits;

/// Linux capability numbers of the capabilities a sandbox keeps.
fn cap_number(name: &str) -> u32 {
    match name {
        "CHOWN" => 0,
        "DAC_OVERRIDE" => 1,
        "FOWNER" => 3,
        "FSETID" => 4,
        "KILL" => 5,
        "SETGID" => 6,
        "SETUID" => 7,
        "NET_BIND_SERVICE" => 10,
        other => panic!("add {other} to cap_number"),
    }
}

/// The value of `field` in `/proc/self/status` text.
fn status_field<'a>(status: &'a str, field: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("{field} missing in {status}"))
        .trim()
}

#[tokio::test]
async fn capabilities_are_reduced_and_no_new_privileges() {
    with_sandbox(
        "caps",
        |_| {},
        |docker, id| async move {
            let status = sh(&docker, &id, "cat /proc/self/status").await.out();
            let expected = SANDBOX_CAPS.iter().fold(0u64, |m, c| m | 1 << cap_number(c));
            for field in ["CapEff", "CapPrm", "CapBnd"] {
                let value = u64::from_str_radix(status_field(&status, field), 16).expect("hex");
                assert_eq!(value, expected, "{field}: {value:#x}, want {expected:#x}");
            }
            assert_eq!(status_field(&status, "NoNewPrivs"), "1");
            // NET_RAW is gone: no raw sockets, so no ping.
            let ping = sh(&docker, &id, "ping -c1 -W1 127.0.0.1").await;
            assert_ne!(ping.code, Some(0), "ping needs NET_RAW: {}", ping.out());
        },
    )
    .await;
}

#[tokio::test]
async fn root_filesystem_is_read_only_but_work_and_tmp_are_writable() {
    with_sandbox(
        "rofs",
        |_| {},
        |docker, id| async move {
            let denied = sh(&docker, &id, "echo x > /bin/x").await;
            assert_ne!(denied.code, Some(0));
            assert!(denied.err().contains("Read-only file system"), "{}", denied.err());
            let ok = sh(&docker, &id, "echo w > /work/x && echo t > /tmp/x && cat /work/x /tmp/x").await;
            assert_eq!((ok.code, ok.out()), (Some(0), "w\nt\n".into()), "{}", ok.err());
            let socket = sh(&docker, &id, "ls /var/run/docker.sock /run/docker.sock").await;
            assert_ne!(socket.code, Some(0), "engine socket must not be mounted");
        },
    )
    .await;
}

#[tokio::test]
async fn blocked_network_has_only_loopback() {
    with_sandbox(
        "nonet",
        |s| s.block_network = true,
        |docker, id| async move {
            let ran = sh(&docker, &id, "ls /sys/class/net").await;
            assert_eq!(ran.out().split_whitespace().collect::<Vec<_>>(), ["lo"]);
        },
    )
    .await;
    with_sandbox(
        "net",
        |_| {},
        |docker, id| async move {
            let ran = sh(&docker, &id, "ls /sys/class/net").await;
            assert!(ran.out().contains("eth0"), "networked sandbox: {}", ran.out());
        },
    )
    .await;
}

/// Doubles a shell string until the OOM killer ends it: reaches 64 MiB in well under a
/// second (a `head -c 500m /dev/zero | tail` pipe took 1 to 35 s here, the kernel thrashing
/// on page cache before it gave up).
const HOG: &str = "a=xxxxxxxxxxxxxxxx; while :; do a=$a$a; done";

#[tokio::test]
async fn memory_hog_in_exec_is_oom_killed_and_container_survives() {
    let limits = Limits { memory_mib: 64, ..super::small_limits() };
    with_sandbox(
        "oom-exec",
        |s| s.limits = limits,
        |docker, id| async move {
            let ran = sh(&docker, &id, HOG).await;
            assert_eq!(ran.code, Some(137), "stderr: {}", ran.err());
            let state = docker.state(&id).await.expect("state").expect("exists");
            assert!(state.running, "the sandbox keeps running");
            assert_eq!(sh(&docker, &id, "echo alive").await.out(), "alive\n");
        },
    )
    .await;
}

#[tokio::test]
async fn memory_hog_as_main_process_reports_oom() {
    let docker = super::docker().await;
    let mut spec = spec(&unique("oom-main"));
    spec.limits.memory_mib = 64;
    spec.cmd = Some(vec!["sh".into(), "-c".into(), HOG.into()]);
    let id = docker.create(&spec).await.expect("create");
    docker.start(&id).await.expect("start");
    let code = docker.wait(&id).await;
    let state = docker.state(&id).await;
    docker.remove(&id).await.expect("remove");
    assert_eq!(code.expect("wait"), 137);
    let state = state.expect("state").expect("exists");
    assert!(state.oom_killed && !state.running, "{state:?}");
    assert_eq!(state.exit_code, Some(137));
}

#[tokio::test]
async fn fork_bomb_is_contained_by_the_pids_limit() {
    let limits = Limits { cpu: 0.5, memory_mib: 128, pids: 64 };
    with_sandbox(
        "forkbomb",
        |s| s.limits = limits,
        |docker, id| async move {
            // The main shell launches the bomb and exits at once (a failed fork would abort
            // the script, so it forks nothing else); the exec ends about 2 s later, when the
            // engine stops waiting for the bomb's copies of stdout.
            let start = Instant::now();
            let ran = sh(&docker, &id, "f() { f | f & }; f; echo launched").await;
            assert!(start.elapsed() < Duration::from_secs(20), "exec did not return");
            assert_eq!((ran.code, ran.out()), (Some(0), "launched\n".into()));
            assert!(ran.err().contains("can't fork"), "the limit was hit: {}", ran.err());
            let top = docker.inner.top_processes(&id, None::<TopOptions>).await.expect("top");
            let count = top.processes.unwrap_or_default().len();
            assert!(count <= 64, "{count} processes despite pids=64");
            let state = docker.state(&id).await.expect("state").expect("exists");
            assert!(state.running);
            // The host still forks fine.
            let host = std::process::Command::new("true").status().expect("host fork");
            assert!(host.success());
        },
    )
    .await;
}

#[tokio::test]
async fn orphans_are_reaped() {
    with_sandbox(
        "reap",
        |_| {},
        |docker, id| async move {
            for _ in 0..3 {
                assert_eq!(sh(&docker, &id, "sleep 0.1 & exit 0").await.code, Some(0));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            let stats = sh(&docker, &id, "cat /proc/[0-9]*/stat").await.out();
            let zombies = stats.lines().filter(|l| l.contains(") Z ")).count();
            assert_eq!(zombies, 0, "{stats}");
        },
    )
    .await;
}

#[tokio::test]
async fn cpu_limit_caps_cpu_time() {
    let limits = Limits { cpu: 0.25, ..super::small_limits() };
    with_sandbox(
        "cpu",
        |s| s.limits = limits,
        |docker, id| async move {
            // Spin for 2 s of wall time; user+system time must stay near 0.25 * 2 s.
            let script = "timeout 2 sh -c 'while :; do :; done'; times";
            let ran = sh(&docker, &id, script).await;
            let children = ran.out().lines().nth(1).unwrap_or_default().to_string();
            let seconds: f64 = children.split_whitespace().map(parse_times).sum();
            assert!(seconds > 0.2, "the loop did spin: {children}");
            assert!(seconds < 1.0, "children used {seconds} s of CPU in 2 s with cpu=0.25: {children}");
        },
    )
    .await;
}

/// Parses `0m1.230s` as printed by the shell's `times`.
fn parse_times(t: &str) -> f64 {
    let (min, sec) = t.trim_end_matches('s').split_once('m').unwrap_or(("0", "0"));
    min.parse::<f64>().unwrap_or(0.0) * 60.0 + sec.parse::<f64>().unwrap_or(0.0)
}
