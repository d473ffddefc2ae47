//! Create, wait, state, labels, limits update, kill and remove; images.

use std::path::Path;

use bollard::query_parameters::RemoveImageOptionsBuilder;

use super::{docker, sh, spec, unique, with_sandbox, IMAGE, TEST_LABEL};
use crate::runtime::images::busybox_rootfs;
use crate::runtime::sandbox::FLOTILLA_LABEL;
use crate::runtime::{Limits, RuntimeError};

#[tokio::test]
async fn command_runs_to_its_exit_code() {
    let docker = docker().await;
    let mut spec = spec(&unique("cmd"));
    spec.cmd = Some(vec!["sh".into(), "-c".into(), "exit 3".into()]);
    let id = docker.create(&spec).await.expect("create");
    let created = docker.state(&id).await.expect("state").expect("exists");
    docker.start(&id).await.expect("start");
    let code = docker.wait(&id).await;
    let exited = docker.state(&id).await;
    docker.remove(&id).await.expect("remove");
    assert!(!created.running && created.exit_code.is_none(), "{created:?}");
    assert_eq!(code.expect("wait"), 3);
    let exited = exited.expect("state").expect("exists");
    assert_eq!((exited.running, exited.exit_code, exited.oom_killed), (false, Some(3), false));
}

#[tokio::test]
async fn keepalive_runs_until_killed() {
    with_sandbox(
        "keepalive",
        |_| {},
        |docker, id| async move {
            let state = docker.state(&id).await.expect("state").expect("exists");
            assert!(state.running && state.exit_code.is_none(), "{state:?}");
            docker.kill(&id, "SIGKILL").await.expect("kill");
            assert_eq!(docker.wait(&id).await.expect("wait"), 137);
            docker.kill(&id, "SIGKILL").await.expect("killing a stopped container is fine");
        },
    )
    .await;
}

#[tokio::test]
async fn list_named_finds_the_container_with_its_labels() {
    with_sandbox(
        "labels",
        |_| {},
        |docker, id| async move {
            let state = docker.state(&id).await.expect("state").expect("exists");
            let value = state.labels.get(TEST_LABEL).expect("test label").clone();
            let found = docker.list_named(&format!("{TEST_LABEL}={value}")).await.expect("list");
            assert_eq!(found.len(), 1, "{found:?}");
            assert_eq!(found[0].id, id);
            assert_eq!(found[0].labels.get(FLOTILLA_LABEL.0).map(String::as_str), Some("1"));
            let by_key = docker.list_named(TEST_LABEL).await.expect("list by key");
            assert!(by_key.iter().any(|c| c.id == id));
            let none = docker.list_named(&format!("{TEST_LABEL}=nope")).await.expect("list");
            assert!(none.is_empty());
        },
    )
    .await;
}

#[tokio::test]
async fn kill_and_remove_leave_nothing_behind() {
    let docker = docker().await;
    let id = docker.create(&spec(&unique("remove"))).await.expect("create");
    docker.start(&id).await.expect("start");
    let inspect = docker.inner.inspect_container(&id, None).await.expect("inspect");
    let volume = inspect
        .mounts
        .unwrap_or_default()
        .into_iter()
        .find(|m| m.destination.as_deref() == Some("/work"))
        .and_then(|m| m.name)
        .expect("/work volume");
    docker.kill(&id, "SIGKILL").await.expect("kill");
    docker.remove(&id).await.expect("remove");
    assert_eq!(docker.state(&id).await.expect("state"), None);
    docker.remove(&id).await.expect("removing again is fine");
    let err = docker.inner.inspect_volume(&volume).await.expect_err("volume removed too");
    assert!(crate::runtime::error::is_not_found(&err), "{err:?}");
}

#[tokio::test]
async fn update_limits_changes_a_running_container() {
    with_sandbox(
        "update",
        |_| {},
        |docker, id| async move {
            let new = Limits { cpu: 0.5, memory_mib: 200, pids: 50 };
            docker.update_limits(&id, &new).await.expect("update");
            let inspect = docker.inner.inspect_container(&id, None).await.expect("inspect");
            let host = inspect.host_config.expect("host config");
            assert_eq!(host.memory, Some(200 << 20));
            assert_eq!(host.memory_swap, Some(200 << 20));
            assert_eq!(host.nano_cpus, Some(500_000_000));
            assert_eq!(host.pids_limit, Some(50));
            let cgroup = sh(
                &docker,
                &id,
                "cat /sys/fs/cgroup/memory/memory.limit_in_bytes \
                                        /sys/fs/cgroup/memory.max 2>/dev/null",
            )
            .await;
            assert_eq!(cgroup.out().trim(), (200u64 << 20).to_string(), "applied to the cgroup");
            let lower = Limits { memory_mib: 64, ..new };
            docker.update_limits(&id, &lower).await.expect("lower memory");
            let cgroup = sh(
                &docker,
                &id,
                "cat /sys/fs/cgroup/memory/memory.limit_in_bytes \
                                        /sys/fs/cgroup/memory.max 2>/dev/null",
            )
            .await;
            assert_eq!(cgroup.out().trim(), (64u64 << 20).to_string(), "lowered too");
            let bad = Limits { pids: 0, ..new };
            assert!(matches!(docker.update_limits(&id, &bad).await, Err(RuntimeError::InvalidSpec(_))));
        },
    )
    .await;
}

#[tokio::test]
async fn busybox_image_is_listed_and_usable() {
    let docker = docker().await;
    assert!(docker.image_exists(IMAGE).await.expect("exists"));
    assert!(!docker.image_exists("flotilla/nope:none").await.expect("exists"));
    let images = docker.list_images().await.expect("list");
    let busybox = images.iter().find(|i| i.name == format!("{IMAGE}:latest")).expect("listed");
    assert!(busybox.id.starts_with("sha256:") && busybox.size_bytes > 1_000_000);
    assert!(busybox.created_unix > 1_600_000_000);
    with_sandbox(
        "busybox",
        |_| {},
        |docker, id| async move {
            let ran = sh(&docker, &id, "whoami; ls /bin | wc -l; grep nobody /etc/passwd | cut -d: -f1").await;
            let lines: Vec<String> = ran.out().lines().map(|l| l.trim().to_string()).collect();
            assert_eq!(lines[0], "root");
            assert!(lines[1].parse::<u32>().expect("count") > 200, "applets: {}", lines[1]);
            assert_eq!(lines[2], "nobody");
            assert_eq!(sh(&docker, &id, "/usr/bin/env true").await.code, Some(0));
        },
    )
    .await;
}

#[tokio::test]
async fn import_rootfs_from_a_file_applies_changes() {
    let docker = docker().await;
    let name = format!("flotilla-test/import-{}:v1", std::process::id());
    let binary = std::fs::read("/bin/busybox").expect("busybox-static");
    let rootfs = busybox_rootfs(&binary, &["sh".to_string()]).expect("rootfs");
    let tar = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(tar.path(), rootfs).expect("write tar");
    docker.import_rootfs(&name, tar.path(), &["WORKDIR /work", "ENV IMPORTED=yes"]).await.expect("import");
    let inspect = docker.inner.inspect_image(&name).await;
    let options = RemoveImageOptionsBuilder::new().force(true).build();
    docker.inner.remove_image(&name, Some(options), None).await.expect("remove image");
    let config = inspect.expect("imported").config.expect("config");
    assert_eq!(config.working_dir.as_deref(), Some("/work"));
    assert!(config.env.unwrap_or_default().contains(&"IMPORTED=yes".to_string()));
    let missing = docker.import_rootfs(&name, Path::new("/nonexistent.tar"), &[]).await;
    assert!(matches!(missing, Err(RuntimeError::Io(_))), "{missing:?}");
}

#[tokio::test]
async fn update_limits_works_before_start() {
    let docker = docker().await;
    let id = docker.create(&spec(&unique("update-created"))).await.expect("create");
    let limits = Limits { cpu: 2.0, memory_mib: 300, pids: 99 };
    let updated = docker.update_limits(&id, &limits).await;
    let inspect = docker.inner.inspect_container(&id, None).await;
    docker.remove(&id).await.expect("remove");
    updated.expect("update");
    let host = inspect.expect("inspect").host_config.expect("host config");
    assert_eq!((host.memory, host.memory_swap), (Some(300 << 20), Some(300 << 20)));
    assert_eq!((host.nano_cpus, host.pids_limit), (Some(2_000_000_000), Some(99)));
}
