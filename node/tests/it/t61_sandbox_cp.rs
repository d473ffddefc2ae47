//! `sandbox cp` follows cp(1) both ways, for files and folders, to and from any absolute path
//! in the sandbox: `/work` (a volume or disk) and `/tmp` (a tmpfs the engine's archive API
//! cannot see) alike. Errors name the sandbox, never the engine's container id.

use std::path::Path;

use crate::harness::*;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn cp(ep: &str, src: &str, dst: &str) -> std::process::Output {
    cli(ep, &["sandbox", "cp", src, dst])
}

fn ok(o: std::process::Output, what: &str) {
    assert!(o.status.success(), "{what}: {}", text(&o.stderr));
}

/// `cat` of files in the sandbox.
fn cat(ep: &str, id: &str, paths: &[&str]) -> String {
    let o = cli(ep, &[&["sandbox", "exec", id, "--", "cat"], paths].concat());
    assert!(o.status.success(), "cat {paths:?}: {}", text(&o.stderr));
    text(&o.stdout)
}

fn local(dir: &Path, rel: &str) -> String {
    dir.join(rel).to_str().unwrap().to_string()
}

#[test]
fn cp_follows_cp1_both_ways_for_any_path() {
    let (c, ep) = single();
    let o = cli(&ep, &["sandbox", "create", "--wait"]);
    ok(o.clone(), "create");
    let id = text(&o.stdout).trim().to_string();
    let dir = c.dir.path().join("cp");
    std::fs::create_dir_all(dir.join("tree/sub")).unwrap();
    std::fs::write(dir.join("a.txt"), "alpha\n").unwrap();
    std::fs::write(dir.join("tree/top.txt"), "top\n").unwrap();
    std::fs::write(dir.join("tree/sub/deep.txt"), "deep\n").unwrap();
    let at = |path: &str| format!("{id}:{path}");

    // In: a file to a new name becomes that file; into an existing folder it keeps its name.
    ok(cp(&ep, &local(&dir, "a.txt"), &at("/work/b.txt")), "file -> new name");
    assert_eq!(cat(&ep, &id, &["/work/b.txt"]), "alpha\n");
    ok(cli(&ep, &["sandbox", "exec", &id, "--", "mkdir", "/work/d"]), "mkdir");
    ok(cp(&ep, &local(&dir, "a.txt"), &at("/work/d")), "file -> folder");
    assert_eq!(cat(&ep, &id, &["/work/d/a.txt"]), "alpha\n");
    // A folder into an existing folder goes inside; to a new name it becomes that folder.
    ok(cp(&ep, &local(&dir, "tree"), &at("/work/d")), "folder -> folder");
    assert_eq!(cat(&ep, &id, &["/work/d/tree/top.txt", "/work/d/tree/sub/deep.txt"]), "top\ndeep\n");
    ok(cp(&ep, &local(&dir, "tree"), &at("/work/copy")), "folder -> new name");
    assert_eq!(cat(&ep, &id, &["/work/copy/sub/deep.txt"]), "deep\n");
    // /tmp, a tmpfs: files and folders both ways.
    ok(cp(&ep, &local(&dir, "a.txt"), &at("/tmp/x.txt")), "file -> /tmp");
    ok(cp(&ep, &local(&dir, "tree"), &at("/tmp")), "folder -> /tmp");
    assert_eq!(cat(&ep, &id, &["/tmp/x.txt", "/tmp/tree/sub/deep.txt"]), "alpha\ndeep\n");
    ok(cp(&ep, &at("/tmp/x.txt"), &local(&dir, "back.txt")), "/tmp file -> local new name");
    assert_eq!(std::fs::read_to_string(dir.join("back.txt")).unwrap(), "alpha\n");
    ok(cp(&ep, &at("/tmp/tree"), &local(&dir, "tree-back")), "/tmp folder -> local new name");
    assert_eq!(std::fs::read_to_string(dir.join("tree-back/sub/deep.txt")).unwrap(), "deep\n");
    ok(cp(&ep, &at("/work/b.txt"), &local(&dir, "tree-back")), "/work file -> local folder");
    assert_eq!(std::fs::read_to_string(dir.join("tree-back/b.txt")).unwrap(), "alpha\n");

    // A missing source, either side: exit 1 naming the path, never the engine's container id.
    let engine_id = docker(&["ps", "-q", "--no-trunc", "--filter", &format!("label=flotilla.sandbox={id}")]);
    assert_eq!(engine_id.len(), 64, "{engine_id:?}");
    let cases = [
        (cp(&ep, &at("/tmp/nope.txt"), &local(&dir, "x")), "/tmp/nope.txt"),
        (cp(&ep, &at("/work/nope"), &local(&dir, "x")), "/work/nope"),
        (cp(&ep, &local(&dir, "nope.txt"), &at("/tmp")), "nope.txt"),
        (cp(&ep, &local(&dir, "a.txt"), &at("/no/such/dir/a.txt")), "/no/such"),
        (cp(&ep, &local(&dir, "a.txt"), &at("/tmp/nope/deeper/")), "/tmp/nope"),
    ];
    for (o, path) in cases {
        let e = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{path}: {e}");
        assert!(e.contains(path), "{path}: {e}");
        assert!(!e.contains(&engine_id[..12]), "{path}: the engine's container id shows: {e}");
    }
    // Into the read-only image: refused with the reason.
    let o = cp(&ep, &local(&dir, "a.txt"), &at("/bin"));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("Read-only"), "{}", text(&o.stderr));
    assert!(!text(&o.stderr).contains(&engine_id[..12]), "{}", text(&o.stderr));
}
