//! A sandbox's `/work` has a size (`sandbox create --disk MIB`, default 1024): a write past it
//! fails inside the sandbox with "No space left on device", the sandbox keeps working, and the
//! host's disk holds at most the size.

use crate::harness::*;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The file holding sandbox `id`'s `/work` on the host (named by its container's disk label).
fn disk_file(c: &TestCluster, id: &str) -> std::path::PathBuf {
    let filter = format!("label=flotilla.sandbox={id}");
    let key = docker(&["ps", "-a", "--filter", &filter, "--format", "{{.Label \"flotilla.disk\"}}"]);
    assert!(!key.trim().is_empty(), "sandbox {id} has no disk label");
    c.data_dir(1).join("disks").join(format!("{}.img", key.trim()))
}

/// Bytes the host holds for a sparse file (its allocated blocks).
fn host_bytes(file: &std::path::Path) -> u64 {
    let o = std::process::Command::new("du").args(["-B1"]).arg(file).output().expect("run du");
    assert!(o.status.success(), "du {}: {}", file.display(), text(&o.stderr));
    text(&o.stdout).split_whitespace().next().and_then(|n| n.parse().ok()).expect("du prints a byte count")
}

fn fill_past_the_quota(runtime: &str) {
    let (c, ep) = single();
    let o = cli(&ep, &["sandbox", "create", "--wait", "--disk", "32", "--runtime", runtime, "--block-network"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let id = text(&o.stdout).trim().to_string();
    assert_eq!(c.json(1, &["sandbox", "show", &id])["disk_mib"].as_u64(), Some(32));

    let o = cli(&ep, &["sandbox", "exec", &id, "--", "dd", "if=/dev/zero", "of=/work/big", "bs=1M", "count=64"]);
    assert_ne!(o.status.code(), Some(0), "{runtime}: 64 MiB fitted into a 32 MiB /work");
    assert!(text(&o.stderr).contains("No space left"), "{runtime}: {}", text(&o.stderr));
    let file = disk_file(&c, &id);
    let on_host = host_bytes(&file);
    assert!(on_host <= 32 << 20, "{runtime}: the host holds {on_host} bytes for a 32 MiB disk");
    assert!(on_host >= 16 << 20, "{runtime}: the write never reached the disk ({on_host} bytes)");

    // Still usable: exec, free the space, write again.
    let o = cli(
        &ep,
        &["sandbox", "exec", &id, "--", "sh", "-c", "rm /work/big && echo ok > /work/small && cat /work/small"],
    );
    assert_eq!((o.status.code(), text(&o.stdout).as_str()), (Some(0), "ok\n"), "{runtime}: {}", text(&o.stderr));

    // Terminating the sandbox removes its disk.
    assert!(cli(&ep, &["sandbox", "terminate", &id]).status.success());
    c.eventually(std::time::Duration::from_secs(20), "the disk is removed", || !file.exists());
    assert!(!file.with_extension("").exists(), "its mount point is removed too");
}

#[test]
fn writes_past_the_disk_size_fail_with_enospc_runc() {
    fill_past_the_quota("runc");
}

#[test]
fn writes_past_the_disk_size_fail_with_enospc_runsc() {
    fill_past_the_quota("runsc");
}

#[test]
fn the_default_disk_is_1024_mib_and_bad_sizes_exit_2() {
    let (c, ep) = single();
    let o = cli(&ep, &["sandbox", "create", "--wait"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let id = text(&o.stdout).trim().to_string();
    assert_eq!(c.json(1, &["sandbox", "show", &id])["disk_mib"].as_u64(), Some(1024));
    let o = cli(&ep, &["sandbox", "exec", &id, "--", "df", "-m", "/work"]);
    let size: u64 = text(&o.stdout).lines().nth(1).and_then(|l| l.split_whitespace().nth(1)).unwrap().parse().unwrap();
    assert!((900..=1024).contains(&size), "df says /work is {size} MiB");
    for bad in ["0", "8", "1048577", "99999999999999999999", "-1", "lots"] {
        let o = cli(&ep, &["sandbox", "create", &format!("--disk={bad}")]);
        assert_eq!(o.status.code(), Some(2), "--disk {bad}: {}", text(&o.stderr));
        assert!(text(&o.stderr).contains("--disk"), "--disk {bad}: {}", text(&o.stderr));
    }
}

#[test]
fn a_disk_left_by_a_container_removed_while_the_node_was_down_is_swept_at_start() {
    let (mut c, ep) = single();
    let o = cli(&ep, &["sandbox", "create", "--wait", "--disk", "32"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let id = text(&o.stdout).trim().to_string();
    let file = disk_file(&c, &id);
    assert!(file.exists());
    // The node dies; meanwhile its container is removed from outside (as by an operator).
    c.node(1).kill();
    docker(&["rm", "-f", &docker(&["ps", "-aq", "--filter", &format!("label=flotilla.sandbox={id}")])]);
    assert!(file.exists(), "nothing but the node removes disks");
    c.node(1).start();
    c.eventually(std::time::Duration::from_secs(30), "the leftover disk is removed", || !file.exists());
    assert!(!file.with_extension("").exists(), "its mount point is removed too");
}
