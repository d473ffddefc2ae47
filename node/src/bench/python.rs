//! `flotilla bench python`: the Python SDK against the Rust SDK on the same cluster, in one
//! run: the round trip of a warm Python app function (`Function.remote()` vs the Rust SDK's
//! `call`) and of a sandbox exec (`sb.exec("echo", "hi")` read to the end and waited for, vs
//! the Rust SDK's `exec(..).output()`).
//!
//! One node, one caller, one operation at a time: the figures are each SDK's own latency over
//! the same server path. The Python side runs in a child process of the Python given with
//! `--python` (the flotilla package must be installed there), the Rust side in this process.
//! The two alternate in `--rounds` rounds of `--calls` operations each, after an untimed
//! warm-up on both, so a drift of the machine falls on both. The app is deployed the way a user
//! deploys it (`python -m flotilla deploy`), and uses the `flotilla/python` image (built when
//! missing, as `image build-base python` does).

use std::process::Command;
use std::time::{Duration, Instant};

use flotilla::Client;
use hdrhistogram::Histogram;

use super::procs::Cluster;
use crate::runtime::{images, Docker};

const APP: &str = "pybench";
const MODULE: &str = r#"import flotilla

app = flotilla.App("pybench")


@app.function(cpu=0.5, memory=256, min_containers=1, max_containers=1)
def noop():
    return None
"#;

/// The Python side: times `calls` of each operation after `warm` untimed ones, prints JSON
/// lists of milliseconds.
const PYTHON_SIDE: &str = r#"
import json, sys, time
import flotilla
endpoint, app, sandbox, calls, warm = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
client = flotilla.Client(endpoint)
f = flotilla.Function.lookup(app, "noop", client=client)
sb = flotilla.Sandbox.from_id(sandbox, client=client)
def remote():
    assert f.remote() is None
def exec_echo():
    p = sb.exec("echo", "hi")
    assert p.stdout.read() == "hi\n" and p.wait() == 0
def timed(op):
    for _ in range(warm):
        op()
    out = []
    for _ in range(calls):
        t = time.perf_counter()
        op()
        out.append((time.perf_counter() - t) * 1000.0)
    return out
print(json.dumps({"remote": timed(remote), "exec": timed(exec_echo),
                  "python": "%d.%d.%d" % sys.version_info[:3]}))
"#;

#[derive(Debug, clap::Args)]
pub struct PythonArgs {
    /// The Python to run the Python SDK with (the flotilla package installed there).
    #[arg(long, default_value = "python3")]
    python: String,
    /// Timed operations of each kind per round and SDK.
    #[arg(long, default_value_t = 200)]
    calls: usize,
    /// Rounds; the SDKs take turns.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// Latencies in microseconds.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

/// The Rust side of one round: `calls` timed operations of each kind after `warm` untimed.
async fn rust_round(
    client: &Client,
    sandbox: &flotilla::Sandbox,
    calls: usize,
    warm: usize,
    remote: &mut Histogram<u64>,
    exec: &mut Histogram<u64>,
) -> anyhow::Result<()> {
    let f = client.function(APP, "noop");
    for timed in [false, true] {
        let n = if timed { calls } else { warm };
        for _ in 0..n {
            let t = Instant::now();
            f.call(Vec::new()).await?;
            if timed {
                remote.saturating_record(t.elapsed().as_micros() as u64);
            }
        }
        for _ in 0..n {
            let t = Instant::now();
            let out = sandbox.exec(["echo", "hi"]).output().await?;
            anyhow::ensure!(out.stdout == b"hi\n" && out.exit_code == 0, "exec: {out:?}");
            if timed {
                exec.saturating_record(t.elapsed().as_micros() as u64);
            }
        }
    }
    Ok(())
}

/// The Python side of one round, recorded into the histograms; returns the Python version.
fn python_round(
    args: &PythonArgs,
    endpoint: &str,
    sandbox: &str,
    warm: usize,
    remote: &mut Histogram<u64>,
    exec: &mut Histogram<u64>,
) -> anyhow::Result<String> {
    let out = Command::new(&args.python)
        .args(["-c", PYTHON_SIDE, endpoint, APP, sandbox, &args.calls.to_string(), &warm.to_string()])
        .output()
        .map_err(|e| anyhow::anyhow!("running {}: {e}", args.python))?;
    anyhow::ensure!(out.status.success(), "the Python side failed: {}", String::from_utf8_lossy(&out.stderr));
    let figures: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    for (key, hist) in [("remote", remote), ("exec", exec)] {
        for ms in figures[key].as_array().into_iter().flatten().filter_map(|v| v.as_f64()) {
            hist.saturating_record((ms * 1000.0) as u64);
        }
    }
    Ok(figures["python"].as_str().unwrap_or("?").to_string())
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

pub async fn run(args: &PythonArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.calls > 0 && args.rounds > 0, "--calls and --rounds: at least 1");
    let docker = Docker::connect().await?;
    images::build_python(&docker, "flotilla/python", false, |s| eprintln!("  {s}")).await?;
    if !docker.image_exists("flotilla/busybox").await? {
        images::build_busybox(&docker, "flotilla/busybox", |s| eprintln!("  {s}")).await?;
    }
    let cluster = Cluster::flotilla(1, &[])?;
    let endpoint = cluster.endpoints[0].clone();
    let client = Client::connect(cluster.endpoints.clone()).await?;
    cluster.ready(&client).await?;

    let dir = tempfile::tempdir()?;
    let module = dir.path().join("pybench.py");
    std::fs::write(&module, MODULE)?;
    let deployed = Command::new(&args.python)
        .args(["-m", "flotilla", "deploy"])
        .arg(&module)
        .env("FLOTILLA_ENDPOINT", &endpoint)
        .env_remove("FLOTILLA_TOKEN")
        .output()
        .map_err(|e| anyhow::anyhow!("running {}: {e}", args.python))?;
    anyhow::ensure!(
        deployed.status.success(),
        "python -m flotilla deploy (is the package installed for {}?): {}",
        args.python,
        String::from_utf8_lossy(&deployed.stderr)
    );
    let mut sandbox = client.sandbox().image("flotilla/busybox").timeout(Duration::from_secs(3600)).create().await?;
    // The replica answers before anything is timed.
    let deadline = Instant::now() + Duration::from_secs(120);
    while client.function(APP, "noop").call(Vec::new()).await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "the Python function did not answer within 120 s");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let warm = (args.calls / 10).max(5);
    let (mut rust_remote, mut rust_exec, mut py_remote, mut py_exec) =
        (histogram(), histogram(), histogram(), histogram());
    let mut version = String::new();
    for _ in 0..args.rounds {
        rust_round(&client, &sandbox, args.calls, warm, &mut rust_remote, &mut rust_exec).await?;
        version = python_round(args, &endpoint, &sandbox.id, warm, &mut py_remote, &mut py_exec)?;
    }
    sandbox.terminate().await?;

    println!(
        "flotilla bench python: {} rounds of {} sequential operations per SDK (after {} untimed each), \
         one node, one caller, same machine; Python {version}",
        args.rounds, args.calls, warm
    );
    println!(
        "{:<34} {:>9} {:>9} {:>11} {:>11} {:>10} {:>16}",
        "operation", "rust p50", "rust p99", "python p50", "python p99", "ratio p50", "goal 1.5x+1ms"
    );
    for (label, rust, py) in [
        ("remote() of a warm Python fn", &rust_remote, &py_remote),
        ("sandbox exec echo hi (to exit)", &rust_exec, &py_exec),
    ] {
        let goal = 1.5 * ms(rust, 0.5) + 1.0;
        println!(
            "{label:<34} {:>7.2}ms {:>7.2}ms {:>9.2}ms {:>9.2}ms {:>10.2} {:>10.2}ms {}",
            ms(rust, 0.5),
            ms(rust, 0.99),
            ms(py, 0.5),
            ms(py, 0.99),
            ms(py, 0.5) / ms(rust, 0.5),
            goal,
            if ms(py, 0.5) <= goal { "met" } else { "NOT met" }
        );
    }
    Ok(())
}
