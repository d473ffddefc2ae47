//! The catalog register workload.
//!
//! Each key `reg-K` is a register kept in the replicated catalog as an app: a write deploys
//! app `reg-K` with the value in its function's environment (`env.V`), a read shows the app
//! (a linearizable read on whichever node answers). Every write's value is unique (client
//! and sequence number), and the app's version counts the writes applied, so the checker
//! sees both the value and how many writes came before it.
//!
//! Clients use the SDK as an application would: all node endpoints, the SDK's own retries,
//! short deadlines. A write that fails with anything but a refusal is recorded as unknown (it
//! may have committed); a read that fails is recorded as unknown and changes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla::{AppSpec, Client, ClientOptions, Error};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;

use crate::history::{Call, History, Ret, Versioned};

/// Name of the register's app for key number `k`.
pub fn key(k: usize) -> String {
    format!("reg-{k}")
}

/// Client options for workload clients: fail over quickly, give up within seconds.
pub fn client_options() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_secs(2),
        retry_for: Duration::from_secs(4),
        ..Default::default()
    }
}

/// Hard bound on one operation, retries included; past it the outcome is unknown.
const OP_DEADLINE: Duration = Duration::from_secs(8);

fn spec(key: &str, value: &str) -> AppSpec {
    AppSpec::from_toml_str(&format!(
        "name = \"{key}\"\n[functions.f]\nimage = \"flotilla/busybox\"\ncommand = [\"true\"]\nenv = {{ V = \"{value}\" }}\n"
    ))
    .expect("register spec is valid")
}

/// Whether a write error proves the write was not applied: the request was refused before
/// it reached the log. Everything else (unavailable, timeout, server error) may hide a commit.
fn definitely_failed(e: &Error) -> bool {
    matches!(e, Error::InvalidArgument(_) | Error::Spec(_) | Error::AlreadyExists(_) | Error::Unauthenticated(_))
}

/// Writes `value` to `key` through `client`.
pub async fn write(client: &Client, key: &str, value: &str) -> Ret {
    match tokio::time::timeout(OP_DEADLINE, client.deploy(spec(key, value))).await {
        Ok(Ok(app)) => Ret::Written { version: app.version },
        Ok(Err(e)) if definitely_failed(&e) => Ret::Failed { error: e.to_string() },
        Ok(Err(e)) => Ret::Unknown { error: e.to_string() },
        Err(_) => Ret::Unknown { error: format!("no answer within {OP_DEADLINE:?}") },
    }
}

/// Reads `key` through `client`.
pub async fn read(client: &Client, key: &str) -> Ret {
    match tokio::time::timeout(OP_DEADLINE, client.app(key)).await {
        Ok(Ok(app)) => {
            let value = app.spec.functions.get("f").and_then(|f| f.env.get("V")).cloned();
            match value {
                Some(value) => Ret::Read { seen: Some(Versioned { value, version: app.version }) },
                None => Ret::Failed { error: format!("{key} has no value in its spec: {:?}", app.spec) },
            }
        }
        Ok(Err(Error::NotFound(_))) => Ret::Read { seen: None },
        Ok(Err(e)) => Ret::Unknown { error: e.to_string() },
        Err(_) => Ret::Unknown { error: format!("no answer within {OP_DEADLINE:?}") },
    }
}

/// Runs one client until `stop` turns true: random reads and writes over `keys` keys.
pub async fn client(
    process: usize,
    endpoints: Vec<String>,
    keys: usize,
    seed: u64,
    history: Arc<History>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let client = Client::connect_with(&endpoints, client_options()).await?;
    let mut rng = StdRng::seed_from_u64(seed ^ (process as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut seq = 0u64;
    while !*stop.borrow() {
        let key = key(rng.random_range(0..keys));
        let invoked = Instant::now();
        let (call, ret) = if rng.random_bool(0.5) {
            seq += 1;
            let value = format!("c{process}-{seq}");
            let ret = write(&client, &key, &value).await;
            (Call::Write { key, value }, ret)
        } else {
            let ret = read(&client, &key).await;
            (Call::Read { key: key.clone() }, ret)
        };
        history.record(process, call, invoked, ret);
        // A short think time keeps the two CPUs for the nodes.
        let pause = Duration::from_millis(rng.random_range(5..40));
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => {}
        }
    }
    Ok(())
}

/// Reads every key through each node alone, recording the reads in the history as the
/// processes after the workload's; returns what each node answered.
pub async fn final_reads(
    nodes: &BTreeMap<u64, String>,
    keys: usize,
    first_process: usize,
    history: &History,
) -> anyhow::Result<crate::check::lost_writes::FinalReads> {
    let mut finals = crate::check::lost_writes::FinalReads::new();
    for (i, (id, endpoint)) in nodes.iter().enumerate() {
        let client = Client::connect_with([endpoint], client_options()).await?;
        for k in 0..keys {
            let key = key(k);
            let invoked = Instant::now();
            let ret = read(&client, &key).await;
            if let Ret::Read { seen } = &ret {
                finals.entry(key.clone()).or_default().insert(*id, seen.clone());
            } else {
                anyhow::bail!("final read of {key} through node {id} failed: {ret:?}");
            }
            history.record(first_process + i, Call::Read { key }, invoked, ret);
        }
    }
    Ok(finals)
}
