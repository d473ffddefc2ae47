//! Files in and out as tar archives.

use std::collections::BTreeMap;
use std::io::Read;

use futures::TryStreamExt;

use super::{sh, with_sandbox};
use crate::runtime::{Docker, RuntimeError};

/// A tar with `hello.txt` and `d/a.txt`, `d/sub/b.txt`.
fn sample_tar() -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, data) in [("hello.txt", "hello\n"), ("d/a.txt", "a\n"), ("d/sub/b.txt", "b\n")] {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        tar.append_data(&mut header, path, data.as_bytes()).expect("append");
    }
    tar.into_inner().expect("tar")
}

/// Regular files of a tar stream read out of a container with the engine's archive API:
/// path -> content.
async fn read_back(docker: &Docker, id: &str, path: &str) -> Result<BTreeMap<String, String>, RuntimeError> {
    files_of(docker.get_archive(id, path).try_collect().await?)
}

/// Regular files of the tar in `chunks`: path -> content.
fn files_of(chunks: Vec<bytes::Bytes>) -> Result<BTreeMap<String, String>, RuntimeError> {
    let bytes = chunks.concat();
    let mut archive = tar::Archive::new(bytes.as_slice());
    let mut files = BTreeMap::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        if entry.header().entry_type().is_file() {
            let name = entry.path().expect("path").display().to_string();
            let mut content = String::new();
            entry.read_to_string(&mut content).expect("read");
            files.insert(name, content);
        }
    }
    Ok(files)
}

#[tokio::test]
async fn put_archive_then_get_archive_of_a_file_and_a_directory() {
    with_sandbox(
        "archive",
        |_| {},
        |docker, id| async move {
            docker.put_archive(&id, "/work", sample_tar()).await.expect("put");
            assert_eq!(sh(&docker, &id, "cat /work/hello.txt").await.out(), "hello\n");
            let file = read_back(&docker, &id, "/work/hello.txt").await.expect("get file");
            assert_eq!(file, BTreeMap::from([("hello.txt".into(), "hello\n".into())]));
            let dir = read_back(&docker, &id, "/work/d").await.expect("get dir");
            assert_eq!(dir, BTreeMap::from([("d/a.txt".into(), "a\n".into()), ("d/sub/b.txt".into(), "b\n".into()),]));
            let output = sh(&docker, &id, "mkdir -p /work/out && echo made > /work/out/r.txt").await;
            assert_eq!(output.code, Some(0));
            let made = read_back(&docker, &id, "/work/out/r.txt").await.expect("get");
            assert_eq!(made.get("r.txt").map(String::as_str), Some("made\n"));
        },
    )
    .await;
}

#[tokio::test]
async fn archive_errors_name_what_is_missing() {
    with_sandbox(
        "archive-err",
        |_| {},
        |docker, id| async move {
            let missing = read_back(&docker, &id, "/work/nope").await;
            assert!(matches!(missing, Err(RuntimeError::NotFound(_))), "{missing:?}");
            let no_dir = docker.put_archive(&id, "/work/nope", sample_tar()).await;
            assert!(matches!(no_dir, Err(RuntimeError::NotFound(_))), "{no_dir:?}");
            let read_only = docker.put_archive(&id, "/bin", sample_tar()).await;
            assert!(read_only.is_err(), "read-only rootfs refuses archives");
        },
    )
    .await;
}

#[tokio::test]
async fn tar_in_and_out_reach_the_tmpfs() {
    with_sandbox(
        "tar-exec",
        |_| {},
        |docker, id| async move {
            // /tmp is a tmpfs: the engine's archive API neither sees it nor writes into it.
            docker.tar_in(&id, "/tmp", sample_tar()).await.expect("tar into /tmp");
            assert_eq!(sh(&docker, &id, "cat /tmp/hello.txt /tmp/d/sub/b.txt").await.out(), "hello\nb\n");
            let out = |path: &'static str| {
                let docker = docker.clone();
                let id = id.clone();
                async move { files_of(docker.tar_out(&id, path).try_collect().await?) }
            };
            assert_eq!(
                out("/tmp/hello.txt").await.expect("file"),
                BTreeMap::from([("hello.txt".into(), "hello\n".into())])
            );
            let dir = out("/tmp/d").await.expect("folder");
            assert_eq!(dir, BTreeMap::from([("d/a.txt".into(), "a\n".into()), ("d/sub/b.txt".into(), "b\n".into())]));
            let missing = out("/tmp/nope").await;
            assert!(matches!(&missing, Err(RuntimeError::NotFound(m)) if m.contains("/tmp/nope")), "{missing:?}");
            let no_dir = docker.tar_in(&id, "/tmp/nope", sample_tar()).await;
            assert!(matches!(&no_dir, Err(RuntimeError::NotFound(m)) if m.contains("/tmp/nope")), "{no_dir:?}");
            let read_only = docker.tar_in(&id, "/bin", sample_tar()).await;
            assert!(matches!(&read_only, Err(RuntimeError::Engine(m)) if m.contains("Read-only")), "{read_only:?}");
            // No error names the engine's container id.
            for e in
                [missing.unwrap_err().to_string(), no_dir.unwrap_err().to_string(), read_only.unwrap_err().to_string()]
            {
                assert!(!e.contains(&id[..12]), "{e}");
            }
        },
    )
    .await;
}
