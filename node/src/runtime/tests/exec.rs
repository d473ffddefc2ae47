//! Exec: output, exit codes, streaming, stdin, concurrency.

use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::{run_spec, sh, with_sandbox};
use crate::runtime::{ExecSpec, Output, RuntimeError};

#[tokio::test]
async fn echo_returns_stdout_and_exit_zero() {
    with_sandbox(
        "echo",
        |_| {},
        |docker, id| async move {
            let ran = run_spec(&docker, &id, &ExecSpec::new(["echo", "hi"])).await;
            assert_eq!(ran.out(), "hi\n");
            assert_eq!(ran.err(), "");
            assert_eq!(ran.code, Some(0));
        },
    )
    .await;
}

#[tokio::test]
async fn stderr_is_kept_apart() {
    with_sandbox(
        "stderr",
        |_| {},
        |docker, id| async move {
            let ran = sh(&docker, &id, "echo out; echo err >&2; echo out2").await;
            assert_eq!(ran.out(), "out\nout2\n");
            assert_eq!(ran.err(), "err\n");
        },
    )
    .await;
}

#[tokio::test]
async fn exit_codes_and_signals() {
    with_sandbox(
        "codes",
        |_| {},
        |docker, id| async move {
            assert_eq!(sh(&docker, &id, "exit 3").await.code, Some(3));
            assert_eq!(sh(&docker, &id, "kill -9 $$").await.code, Some(137));
            assert_eq!(sh(&docker, &id, "kill -15 $$").await.code, Some(143));
            assert_eq!(sh(&docker, &id, "false").await.code, Some(1));
        },
    )
    .await;
}

#[tokio::test]
async fn env_and_workdir() {
    with_sandbox(
        "env",
        |spec| spec.env = vec![("FROM_SPEC".into(), "a b".into())],
        |docker, id| async move {
            let ran = sh(&docker, &id, "pwd; echo \"$FROM_SPEC\"").await;
            assert_eq!(ran.out(), "/work\na b\n", "default workdir is /work");
            let mut spec = ExecSpec::new(["sh", "-c", "pwd; echo $FROM_EXEC"]);
            spec.env = vec![("FROM_EXEC".into(), "x=y".into())];
            spec.workdir = Some("/tmp".into());
            assert_eq!(run_spec(&docker, &id, &spec).await.out(), "/tmp\nx=y\n");
        },
    )
    .await;
}

#[tokio::test]
async fn output_is_streamed_in_order() {
    with_sandbox(
        "stream",
        |_| {},
        |docker, id| async move {
            let script = "for i in 1 2 3 4 5; do echo line$i; sleep 0.3; done";
            let mut process = docker.exec(&id, &ExecSpec::new(["sh", "-c", script])).await.expect("exec");
            let start = Instant::now();
            let mut chunks = Vec::new();
            while let Some(chunk) = process.output.next().await {
                let Output::Stdout(bytes) = chunk.expect("chunk") else {
                    panic!("unexpected stderr");
                };
                chunks.push((start.elapsed(), String::from_utf8_lossy(&bytes).into_owned()));
            }
            let text: String = chunks.iter().map(|(_, s)| s.as_str()).collect();
            assert_eq!(text, "line1\nline2\nline3\nline4\nline5\n");
            assert_eq!(chunks.len(), 5, "one chunk per line: {chunks:?}");
            let (first, last) = (chunks[0].0, chunks[4].0);
            assert!(first < Duration::from_millis(800), "first line late: {chunks:?}");
            assert!(last - first >= Duration::from_millis(900), "not streamed: {chunks:?}");
        },
    )
    .await;
}

#[tokio::test]
async fn large_output_arrives_complete() {
    with_sandbox(
        "large",
        |_| {},
        |docker, id| async move {
            let ran = sh(&docker, &id, "yes 0123456789abcdef | head -c 20000000").await;
            assert_eq!(ran.code, Some(0), "stderr: {}", ran.err());
            assert_eq!(ran.stdout.len(), 20_000_000);
            let line = b"0123456789abcdef\n";
            assert!(ran.stdout.chunks(line.len()).all(|c| line.starts_with(c)));
        },
    )
    .await;
}

#[tokio::test]
async fn stdin_is_echoed_and_closed_by_shutdown() {
    with_sandbox(
        "stdin",
        |_| {},
        |docker, id| async move {
            let mut spec = ExecSpec::new(["cat"]);
            spec.stdin = true;
            let mut process = docker.exec(&id, &spec).await.expect("exec");
            let mut stdin = process.stdin.take().expect("stdin requested");
            stdin.write_all(b"hello\n").await.expect("write");
            stdin.flush().await.expect("flush");
            let first = process.output.next().await.expect("echo").expect("chunk");
            assert_eq!(first, Output::Stdout("hello\n".into()), "echoed before EOF");
            stdin.write_all(b"bye").await.expect("write");
            stdin.shutdown().await.expect("shutdown");
            let mut rest = Vec::new();
            while let Some(chunk) = process.output.next().await {
                if let Output::Stdout(b) = chunk.expect("chunk") {
                    rest.extend_from_slice(&b);
                }
            }
            assert_eq!(rest, b"bye");
            assert_eq!(docker.exec_exit_code(&process.exec_id).await.expect("code"), Some(0));
        },
    )
    .await;
}

#[tokio::test]
async fn dropping_stdin_sends_eof() {
    with_sandbox(
        "stdin-drop",
        |_| {},
        |docker, id| async move {
            let mut spec = ExecSpec::new(["wc", "-c"]);
            spec.stdin = true;
            let mut process = docker.exec(&id, &spec).await.expect("exec");
            let mut stdin = process.stdin.take().expect("stdin requested");
            stdin.write_all(b"12345").await.expect("write");
            stdin.flush().await.expect("flush");
            drop(stdin);
            let mut out = Vec::new();
            while let Some(chunk) = process.output.next().await {
                if let Output::Stdout(b) = chunk.expect("chunk") {
                    out.extend_from_slice(&b);
                }
            }
            assert_eq!(String::from_utf8_lossy(&out).trim(), "5");
        },
    )
    .await;
}

#[tokio::test]
async fn concurrent_execs_in_one_container() {
    with_sandbox(
        "concurrent",
        |_| {},
        |docker, id| async move {
            let start = Instant::now();
            let runs = (0..8).map(|i| {
                let (docker, id) = (docker.clone(), id.clone());
                async move { sh(&docker, &id, &format!("sleep 1; echo {i}")).await }
            });
            let results = futures::future::join_all(runs).await;
            for (i, ran) in results.iter().enumerate() {
                assert_eq!(ran.out(), format!("{i}\n"));
                assert_eq!(ran.code, Some(0));
            }
            assert!(start.elapsed() < Duration::from_secs(6), "ran one after another");
        },
    )
    .await;
}

#[tokio::test]
async fn exec_needs_a_command_and_a_running_container() {
    with_sandbox(
        "exec-errors",
        |_| {},
        |docker, id| async move {
            let empty = ExecSpec::new(Vec::<String>::new());
            assert!(matches!(docker.exec(&id, &empty).await, Err(RuntimeError::InvalidSpec(_))));
            docker.kill(&id, "SIGKILL").await.expect("kill");
            docker.wait(&id).await.expect("wait");
            let err = docker.exec(&id, &ExecSpec::new(["true"])).await.expect_err("stopped");
            assert!(matches!(err, RuntimeError::Conflict(_)), "{err:?}");
        },
    )
    .await;
}

#[tokio::test]
async fn kill_exec_ends_a_running_exec() {
    with_sandbox(
        "kill-exec",
        |_| {},
        |docker, id| async move {
            let mut process =
                docker.exec(&id, &ExecSpec::new(["sh", "-c", "echo started; sleep 60"])).await.expect("exec");
            let first = process.output.next().await.expect("output").expect("chunk");
            assert_eq!(first, Output::Stdout("started\n".into()));
            let start = Instant::now();
            docker.kill_exec(&process.exec_id).await.expect("kill exec");
            while process.output.next().await.is_some() {}
            assert!(start.elapsed() < Duration::from_secs(5), "output did not end");
            let code = docker.exec_exit_code(&process.exec_id).await.expect("code");
            assert_eq!(code, Some(137));
            docker.kill_exec(&process.exec_id).await.expect("killing a finished exec is fine");
            assert_eq!(sh(&docker, &id, "echo alive").await.out(), "alive\n");
        },
    )
    .await;
}
