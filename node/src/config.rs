//! The node's configuration: one typed struct with defaults in code, read from an optional
//! TOML file (`--config`, sample in `config/node.toml`) and overridden by command-line flags,
//! then checked by [`Config::validate`] before anything starts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use flotilla_raft::NodeId;
use serde::Deserialize;

/// How a node finds its cluster the first time it starts. Ignored once the data dir holds
/// Raft state: a restarted node resumes with the membership it had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Form a new one-node cluster.
    Bootstrap,
    /// Form a cluster of exactly these nodes (id -> peer address); every member is started
    /// with the same list.
    InitialCluster(BTreeMap<NodeId, String>),
    /// Ask the cluster at this address to add us (learner, then voter).
    Join(String),
    /// Wait to be added by `flotilla cluster add-node`.
    Wait,
}

/// Raft timing and log compaction.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftOptions {
    /// Leader heartbeat period, ms. openraft also uses it as the AppendEntries timeout, so it
    /// must not be too small for a loaded machine.
    pub heartbeat_ms: u64,
    /// A follower that hears no leader for a random time in [min, max] ms starts an election.
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot (and compact the log) after this many entries since the last one.
    pub snapshot_every: u64,
    /// Entries kept in the log behind the snapshot, so slightly lagging followers catch up
    /// from the log instead of a snapshot.
    pub logs_kept_after_snapshot: u64,
}

impl Default for RaftOptions {
    fn default() -> Self {
        Self {
            heartbeat_ms: 100,
            election_timeout_min_ms: 600,
            election_timeout_max_ms: 1200,
            snapshot_every: 5000,
            logs_kept_after_snapshot: 1000,
        }
    }
}

/// Snapshot copies, their upkeep, and the failover lease (`[snapshots]` in the file).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotOptions {
    /// Copies of every snapshot (this node's included) before it is ready; a cluster with
    /// fewer nodes keeps one per node.
    pub replication_factor: usize,
    /// Seconds between checks of this node's copies (repair from another replica when bad)
    /// and collections of blobs no snapshot references.
    pub scrub_every_s: u64,
    /// Blobs younger than this many seconds are never collected (they may belong to a
    /// snapshot still being taken or received).
    pub gc_grace_s: u64,
    /// A node that reaches no quorum for this long fences itself (stops its sandboxes); the
    /// leader restores a silent node's sandboxes elsewhere only after this plus a margin, ms.
    pub fence_lease_ms: u64,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        Self { replication_factor: 2, scrub_every_s: 300, gc_grace_s: 600, fence_lease_ms: 3000 }
    }
}

/// How long final records stay in the catalog (`[retention]` in the file).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionOptions {
    /// Final calls and schedule runs, ended sandboxes and failed snapshots are compacted away
    /// this many seconds after they ended (the leader's setting applies); `--retention-s`.
    pub final_records_s: u64,
}

/// Seven days.
pub const DEFAULT_RETENTION_S: u64 = 7 * 24 * 3600;

impl Default for RetentionOptions {
    fn default() -> Self {
        Self { final_records_s: DEFAULT_RETENTION_S }
    }
}

/// The node's configuration, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub node_id: NodeId,
    /// Holds the Raft store and everything else the node keeps. One process per data dir.
    pub data_dir: PathBuf,
    /// Where the gRPC services (Control, Worker, Peer) listen.
    pub listen: SocketAddr,
    /// The address peers and clients use to reach this node (`host:port`).
    pub advertise: String,
    /// Where the HTTP health/status endpoint listens; `None` serves none.
    pub http: Option<SocketAddr>,
    pub start: Start,
    /// Shared secret that authenticates Peer calls; `None` leaves peers unauthenticated.
    pub cluster_secret: Option<String>,
    pub raft: RaftOptions,
    /// Whether clients must present an API token (see `auth`).
    pub auth: bool,
    /// TLS for every service and for calls to peers; `None` serves plaintext.
    pub tls: Option<TlsFiles>,
    /// Pre-started containers to keep per image (the warm pool), e.g. `flotilla/busybox` = 4.
    pub warm_pool: BTreeMap<String, usize>,
    /// Where this node's GPU inventory comes from.
    pub gpus: crate::gpu::GpuSource,
    pub snapshots: SnapshotOptions,
    pub retention: RetentionOptions,
    /// The container engine's address (`unix://…`, `tcp://…`); `None`: `DOCKER_HOST`, else
    /// `unix:///var/run/docker.sock`.
    pub docker_host: Option<String>,
}

/// PEM files for TLS. The node serves with `cert`/`key` and trusts peers whose certificates
/// chain to `ca`; the certificate must name the node's advertised host (DNS or IP SAN).
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// The `--config` file. Every key is optional; flags win over the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub node_id: Option<NodeId>,
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub advertise: Option<String>,
    pub http: Option<String>,
    pub bootstrap: Option<bool>,
    pub initial_cluster: Option<String>,
    pub join: Option<String>,
    pub cluster_secret_file: Option<PathBuf>,
    /// Require client API tokens (default true for `flotilla node`).
    pub auth: Option<bool>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
    #[serde(default)]
    pub raft: RaftOptions,
    /// Image -> number of pre-started containers.
    #[serde(default)]
    pub warm_pool: BTreeMap<String, usize>,
    /// `auto`, `none` or `fake:MODEL:COUNT`.
    pub gpus: Option<String>,
    #[serde(default)]
    pub snapshots: SnapshotOptions,
    #[serde(default)]
    pub retention: RetentionOptions,
    /// The container engine's address, like `DOCKER_HOST`.
    pub docker_host: Option<String>,
}

/// Most pre-started containers one image may keep on a node.
pub const MAX_WARM_PER_IMAGE: usize = 64;

/// Builds the TLS settings from the three optional paths: all or none.
pub fn tls_files(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
) -> Result<Option<TlsFiles>, ConfigError> {
    match (cert, key, ca) {
        (None, None, None) => Ok(None),
        (Some(cert), Some(key), Some(ca)) => Ok(Some(TlsFiles { cert, key, ca })),
        _ => Err(err("tls-cert", "TLS needs --tls-cert, --tls-key and --tls-ca together")),
    }
}

/// Parses `IMAGE=N` for `--warm-pool`.
pub fn parse_warm(s: &str) -> Result<(String, usize), String> {
    let (image, n) = s.rsplit_once('=').ok_or_else(|| format!("{s:?} is not IMAGE=COUNT"))?;
    let n = n.parse().map_err(|_| format!("{n:?} is not a count"))?;
    Ok((image.to_string(), n))
}

/// A configuration problem, naming the option.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

fn err(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError { field: field.to_string(), message: message.into() }
}

impl FileConfig {
    /// Reads a config file; unknown keys are errors.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| err("config", format!("{}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| err("config", format!("{}: {}", path.display(), e.message())))
    }
}

/// Parses `1=host:port,2=host:port`.
pub fn parse_initial_cluster(s: &str) -> Result<BTreeMap<NodeId, String>, ConfigError> {
    let mut members = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) =
            part.split_once('=').ok_or_else(|| err("initial-cluster", format!("{part:?} is not ID=HOST:PORT")))?;
        let id: NodeId =
            id.trim().parse().map_err(|_| err("initial-cluster", format!("{id:?} is not a node id (a number)")))?;
        check_host_port("initial-cluster", addr.trim())?;
        if members.insert(id, addr.trim().to_string()).is_some() {
            return Err(err("initial-cluster", format!("node id {id} appears twice")));
        }
    }
    if members.is_empty() {
        return Err(err("initial-cluster", "lists no nodes"));
    }
    Ok(members)
}

fn check_host_port(field: &str, addr: &str) -> Result<(), ConfigError> {
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| err(field, format!("{addr:?} is not HOST:PORT")))?;
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(err(field, format!("{addr:?} is not HOST:PORT")));
    }
    Ok(())
}

impl Config {
    /// Checks everything that can be checked before starting.
    pub fn validate(self) -> Result<Self, ConfigError> {
        if self.node_id == 0 {
            return Err(err("node-id", "must be 1 or more"));
        }
        check_host_port("advertise", &self.advertise)?;
        if self.advertise.starts_with("0.0.0.0:") || self.advertise.starts_with("[::]:") {
            return Err(err("advertise", "must be an address peers can reach, not a wildcard"));
        }
        match &self.start {
            Start::InitialCluster(members) => match members.get(&self.node_id) {
                None => return Err(err("initial-cluster", format!("does not list this node (id {})", self.node_id))),
                Some(addr) if *addr != self.advertise => {
                    return Err(err(
                        "initial-cluster",
                        format!("lists node {} at {addr}, but it advertises {}", self.node_id, self.advertise),
                    ))
                }
                Some(_) => {}
            },
            Start::Join(addr) => check_host_port("join", addr)?,
            Start::Bootstrap | Start::Wait => {}
        }
        if let Some(secret) = &self.cluster_secret {
            if !secret.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(err("cluster-secret-file", "the secret must be printable ASCII without spaces"));
            }
        }
        let r = &self.raft;
        if r.heartbeat_ms < 50 {
            return Err(err("raft.heartbeat_ms", "must be at least 50"));
        }
        if r.election_timeout_min_ms < 3 * r.heartbeat_ms {
            return Err(err("raft.election_timeout_min_ms", "must be at least 3 x raft.heartbeat_ms"));
        }
        if r.election_timeout_max_ms <= r.election_timeout_min_ms {
            return Err(err("raft.election_timeout_max_ms", "must be greater than raft.election_timeout_min_ms"));
        }
        if r.snapshot_every == 0 {
            return Err(err("raft.snapshot_every", "must be 1 or more"));
        }
        if self.auth && self.cluster_secret.is_none() {
            return Err(err(
                "cluster-secret-file",
                "client tokens are on, so a cluster secret is required (--cluster-secret-file or \
                 FLOTILLA_CLUSTER_SECRET): without one, anything that reaches the port can write through \
                 the node-to-node service and bypass tokens. Pass --no-auth for an open cluster.",
            ));
        }
        if let Some(tls) = &self.tls {
            for (field, path) in [("tls-cert", &tls.cert), ("tls-key", &tls.key), ("tls-ca", &tls.ca)] {
                if !path.is_file() || std::fs::File::open(path).is_err() {
                    return Err(err(field, format!("{} is not a readable file", path.display())));
                }
            }
        }
        let sn = &self.snapshots;
        if !(1..=7).contains(&sn.replication_factor) {
            return Err(err("snapshots.replication_factor", "must be 1 to 7"));
        }
        if sn.scrub_every_s == 0 {
            return Err(err("snapshots.scrub_every_s", "must be 1 or more"));
        }
        if sn.fence_lease_ms < 1000 {
            return Err(err("snapshots.fence_lease_ms", "must be at least 1000 (probes run every 500 ms)"));
        }
        if self.retention.final_records_s == 0 {
            return Err(err("retention-s", "must be at least 1 (retention.final_records_s in the config file)"));
        }
        for (image, &n) in &self.warm_pool {
            if image.is_empty() || n > MAX_WARM_PER_IMAGE {
                return Err(err("warm-pool", format!("{image:?}={n}: at most {MAX_WARM_PER_IMAGE} per image")));
            }
        }
        Ok(self)
    }

    /// Reads the cluster secret file: its first line, trimmed.
    pub fn read_secret(path: &Path) -> Result<String, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err("cluster-secret-file", format!("{}: {e}", path.display())))?;
        let secret = text.lines().next().unwrap_or("").trim().to_string();
        if secret.is_empty() {
            return Err(err("cluster-secret-file", format!("{} is empty", path.display())));
        }
        Ok(secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Config {
        Config {
            node_id: 1,
            data_dir: "d".into(),
            listen: "127.0.0.1:7100".parse().unwrap(),
            advertise: "127.0.0.1:7100".into(),
            http: None,
            start: Start::Bootstrap,
            cluster_secret: Some("s3cret".into()),
            raft: RaftOptions::default(),
            auth: true,
            tls: None,
            warm_pool: BTreeMap::new(),
            gpus: Default::default(),
            snapshots: SnapshotOptions::default(),
            retention: RetentionOptions::default(),
            docker_host: None,
        }
    }

    fn field_of(c: Config) -> String {
        c.validate().expect_err("should be rejected").field
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(base().validate().unwrap(), base());
    }

    #[test]
    fn tokens_without_a_cluster_secret_are_refused() {
        let mut c = base();
        c.cluster_secret = None;
        assert_eq!(field_of(c), "cluster-secret-file");
        let mut open = base();
        open.cluster_secret = None;
        open.auth = false;
        assert!(open.validate().is_ok());
    }

    #[test]
    fn initial_cluster_parses_and_rejects() {
        let m = parse_initial_cluster("1=127.0.0.1:7101, 2=127.0.0.2:7102").unwrap();
        assert_eq!(m[&2], "127.0.0.2:7102");
        for bad in ["", "1", "x=a:1", "1=a", "1=a:0", "1=a:1,1=b:2", "1=:80"] {
            assert_eq!(parse_initial_cluster(bad).unwrap_err().field, "initial-cluster", "{bad:?}");
        }
    }

    #[test]
    fn rejected_configs_name_the_field() {
        type Case = (Box<dyn Fn(&mut Config)>, &'static str);
        let cases: Vec<Case> = vec![
            (Box::new(|c| c.node_id = 0), "node-id"),
            (Box::new(|c| c.advertise = "0.0.0.0:7100".into()), "advertise"),
            (Box::new(|c| c.advertise = "nohost".into()), "advertise"),
            (Box::new(|c| c.start = Start::Join("x".into())), "join"),
            (
                Box::new(|c| c.start = Start::InitialCluster(parse_initial_cluster("2=127.0.0.1:7101").unwrap())),
                "initial-cluster",
            ),
            (
                Box::new(|c| c.start = Start::InitialCluster(parse_initial_cluster("1=127.0.0.9:7100").unwrap())),
                "initial-cluster",
            ),
            (Box::new(|c| c.cluster_secret = Some("has space".into())), "cluster-secret-file"),
            (Box::new(|c| c.raft.heartbeat_ms = 10), "raft.heartbeat_ms"),
            (Box::new(|c| c.raft.election_timeout_min_ms = 100), "raft.election_timeout_min_ms"),
            (Box::new(|c| c.raft.election_timeout_max_ms = 600), "raft.election_timeout_max_ms"),
            (Box::new(|c| c.raft.snapshot_every = 0), "raft.snapshot_every"),
            (
                Box::new(|c| {
                    c.warm_pool.insert("flotilla/busybox".into(), 1000);
                }),
                "warm-pool",
            ),
            (Box::new(|c| c.snapshots.replication_factor = 0), "snapshots.replication_factor"),
            (Box::new(|c| c.snapshots.scrub_every_s = 0), "snapshots.scrub_every_s"),
            (Box::new(|c| c.snapshots.fence_lease_ms = 500), "snapshots.fence_lease_ms"),
        ];
        for (mutate, field) in cases {
            let mut c = base();
            mutate(&mut c);
            assert_eq!(field_of(c), field);
        }
    }

    #[test]
    fn file_config_rejects_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("node.toml");
        std::fs::write(&p, "node_id = 2\n[raft]\nheartbeat = 5\n").unwrap();
        let e = FileConfig::load(&p).unwrap_err();
        assert!(e.message.contains("heartbeat"), "{e}");
        std::fs::write(&p, "node_id = 2\n[raft]\nsnapshot_every = 7\n").unwrap();
        let f = FileConfig::load(&p).unwrap();
        assert_eq!((f.node_id, f.raft.snapshot_every, f.raft.heartbeat_ms), (Some(2), 7, 100));
    }

    #[test]
    fn the_sample_config_loads() {
        let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/node.toml");
        FileConfig::load(&sample).unwrap();
    }
}
