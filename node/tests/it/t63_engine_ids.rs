//! The engine's container ids never reach a user: errors about a sandbox name the sandbox.
//! Each case provokes an error whose engine-side text carries the container's id.

use crate::harness::*;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Whether `s` names engine container `engine_id` (full or by its 12-digit short form) or
/// holds any 64-hex-digit id.
fn has_engine_id(s: &str, engine_id: &str) -> bool {
    s.contains(&engine_id[..12]) || s.split(|c: char| !c.is_ascii_hexdigit()).any(|w| w.len() >= 64)
}

#[test]
fn errors_about_a_sandbox_never_show_the_engine_id() {
    let (_c, ep) = single();
    let o = cli(&ep, &["sandbox", "create", "--wait"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let id = text(&o.stdout).trim().to_string();
    let engine_id = docker(&["ps", "-q", "--no-trunc", "--filter", &format!("label=flotilla.sandbox={id}")]);
    assert_eq!(engine_id.len(), 64, "{engine_id:?}");

    // 1. A dir snapshot of a missing folder: the engine's archive API answers about
    // "<container>:/work/nope".
    let o = cli(&ep, &["sandbox", "snapshot", &id, "--kind", "dir", "--path", "/work/nope"]);
    let e = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("/work/nope"), "{e}");
    assert!(!has_engine_id(&e, &engine_id), "snapshot error shows an engine id: {e}");

    // 2. An exec while the container is frozen: the engine says "Container <id> is paused".
    docker(&["pause", &engine_id]);
    let o = cli(&ep, &["sandbox", "exec", &id, "--", "true"]);
    docker(&["unpause", &engine_id]);
    let e = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains(&id) && e.contains("paused"), "{e}");
    assert!(!has_engine_id(&e, &engine_id), "exec error shows an engine id: {e}");

    // 3. A copy out of a missing path (through the sandbox's own tar).
    let o = cli(&ep, &["sandbox", "cp", &format!("{id}:/tmp/nope"), "/tmp"]);
    let e = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains(&id) && e.contains("/tmp/nope"), "{e}");
    assert!(!has_engine_id(&e, &engine_id), "cp error shows an engine id: {e}");

    // The sandbox is fine afterwards.
    let o = cli(&ep, &["sandbox", "exec", &id, "--", "echo", "ok"]);
    assert_eq!(text(&o.stdout), "ok\n", "{}", text(&o.stderr));
}
