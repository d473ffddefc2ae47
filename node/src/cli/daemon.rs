//! `flotilla dev` and `flotilla node`: flags -> [`Config`].

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use crate::config::{parse_initial_cluster, parse_warm, tls_files, Config, ConfigError, FileConfig, Start};
use crate::data_dir::DataDir;
use crate::gpu::GpuSource;
use crate::logging::LogFormat;

/// `flotilla dev`: a single-node cluster with embedded storage, in the foreground.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// Where state is kept across restarts.
    #[arg(long, default_value = ".flotilla")]
    data_dir: PathBuf,
    /// Address of the gRPC services.
    #[arg(long, default_value = "127.0.0.1:7100")]
    listen: SocketAddr,
    /// Address of the HTTP endpoint (/healthz, /status, /metrics).
    #[arg(long, default_value = "127.0.0.1:7180")]
    http: SocketAddr,
    /// Keep N pre-started containers of IMAGE for fast sandbox starts (repeatable).
    #[arg(long = "warm-pool", value_parser = parse_warm)]
    warm_pool: Vec<(String, usize)>,
    /// Require API tokens from clients (off by default for dev; `flotilla token bootstrap`).
    #[arg(long)]
    auth: bool,
    /// GPUs to offer: `auto` (nvidia-smi), `none`, or `fake:MODEL:COUNT` for testing.
    #[arg(long, default_value = "auto")]
    gpus: GpuSource,
    /// Log lines on stderr: `text` for people, `json` (one object per line) for log shippers.
    #[arg(long, value_enum, default_value = "text", env = "FLOTILLA_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Seconds final calls, runs and ended sandboxes are kept before they are compacted away
    /// (default 604800, seven days).
    #[arg(long)]
    retention_s: Option<u64>,
    /// The container engine's address, e.g. unix:///run/other.sock (default: DOCKER_HOST, else
    /// unix:///var/run/docker.sock).
    #[arg(long)]
    docker_host: Option<String>,
}

impl DevArgs {
    pub fn config(&self) -> Result<Config, ConfigError> {
        // A dev node has no peers; with tokens on it still needs a secret so the node-to-node
        // service cannot be used to bypass them: one is made and kept in the data dir.
        let cluster_secret = if self.auth { Some(dev_secret(&self.data_dir)?) } else { None };
        Config {
            node_id: 1,
            data_dir: self.data_dir.clone(),
            listen: self.listen,
            advertise: self.listen.to_string(),
            http: Some(self.http),
            start: Start::Bootstrap,
            cluster_secret,
            raft: Default::default(),
            auth: self.auth,
            tls: None,
            warm_pool: self.warm_pool.iter().cloned().collect(),
            gpus: self.gpus.clone(),
            // One node: one copy of each snapshot.
            snapshots: crate::config::SnapshotOptions { replication_factor: 1, ..Default::default() },
            retention: crate::config::RetentionOptions {
                final_records_s: self.retention_s.unwrap_or(crate::config::DEFAULT_RETENTION_S),
            },
            docker_host: self.docker_host.clone(),
        }
        .validate()
    }
}

/// `flotilla node`: one member of a cluster.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// TOML file with any of these options (see config/node.toml); flags win.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where this node keeps its state. One process per data dir.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address of the gRPC services (Control, Worker, Peer).
    #[arg(long)]
    listen: Option<String>,
    /// Address peers and clients use to reach this node; defaults to --listen.
    #[arg(long)]
    advertise: Option<String>,
    /// Serve GET /healthz, /status and /metrics on this HOST:PORT.
    #[arg(long)]
    http: Option<String>,
    /// This node's id (1 or more). Inferred from --initial-cluster or the data dir if omitted.
    #[arg(long)]
    node_id: Option<u64>,
    /// Form a new one-node cluster.
    #[arg(long, conflicts_with_all = ["initial_cluster", "join"])]
    bootstrap: bool,
    /// Form a cluster of these nodes: `1=HOST:PORT,2=HOST:PORT,3=HOST:PORT`, the same on each.
    #[arg(long, conflicts_with = "join")]
    initial_cluster: Option<String>,
    /// Join the cluster that the node at HOST:PORT belongs to.
    #[arg(long)]
    join: Option<String>,
    /// File whose first line is the secret that authenticates node-to-node calls.
    #[arg(long)]
    cluster_secret_file: Option<PathBuf>,
    /// Keep N pre-started containers of IMAGE for fast sandbox starts (repeatable; adds to
    /// the config file's `[warm_pool]`).
    #[arg(long = "warm-pool", value_parser = parse_warm)]
    warm_pool: Vec<(String, usize)>,
    /// Serve clients without API tokens (auth is on by default for nodes).
    #[arg(long)]
    no_auth: bool,
    /// Copies of every snapshot, this node's included, before it is ready (default 2;
    /// overrides the config file's `[snapshots] replication_factor`).
    #[arg(long)]
    replication_factor: Option<usize>,
    /// TLS certificate (PEM) this node serves with; needs --tls-key and --tls-ca.
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// CA (PEM) that peers' certificates must chain to.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// GPUs to offer: `auto` (nvidia-smi; the default), `none`, or `fake:MODEL:COUNT` for testing.
    #[arg(long)]
    gpus: Option<GpuSource>,
    /// Log lines on stderr: `text` for people, `json` (one object per line) for log shippers.
    #[arg(long, value_enum, default_value = "text", env = "FLOTILLA_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Seconds final calls, runs and ended sandboxes are kept before they are compacted away
    /// (default 604800, seven days; overrides the config file's `[retention] final_records_s`).
    #[arg(long)]
    retention_s: Option<u64>,
    /// The container engine's address, e.g. unix:///run/other.sock (default: the config file's
    /// `docker_host`, else DOCKER_HOST, else unix:///var/run/docker.sock).
    #[arg(long)]
    docker_host: Option<String>,
}

/// The dev node's own cluster secret, made on first use in `data_dir/cluster_secret` (0600).
fn dev_secret(data_dir: &std::path::Path) -> Result<String, ConfigError> {
    let path = data_dir.join("cluster_secret");
    if path.is_file() {
        return Config::read_secret(&path);
    }
    let io = |e: std::io::Error| missing("data-dir", &format!("{}: {e}", path.display()));
    std::fs::create_dir_all(data_dir).map_err(io)?;
    let secret = uuid::Uuid::new_v4().simple().to_string();
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).map_err(io)?;
    writeln!(file, "{secret}").map_err(io)?;
    Ok(secret)
}

/// Resolves `HOST:PORT` (a name or an IP) to the address to bind.
fn resolve(field: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    use std::net::ToSocketAddrs;
    text.to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| missing(field, &format!("{text:?} is not a HOST:PORT this machine can bind")))
}

fn missing(field: &str, message: &str) -> ConfigError {
    ConfigError { field: field.into(), message: message.into() }
}

impl NodeArgs {
    pub fn config(&self) -> Result<Config, ConfigError> {
        let file = match &self.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let data_dir = self
            .data_dir
            .clone()
            .or(file.data_dir)
            .ok_or_else(|| missing("data-dir", "is required (flag or config file)"))?;
        let listen_text = self
            .listen
            .clone()
            .or(file.listen)
            .ok_or_else(|| missing("listen", "is required (flag or config file)"))?;
        let listen = resolve("listen", &listen_text)?;
        let http = match self.http.clone().or(file.http) {
            Some(h) => Some(resolve("http", &h)?),
            None => None,
        };
        let advertise = self.advertise.clone().or(file.advertise).unwrap_or_else(|| listen.to_string());

        let initial = self.initial_cluster.clone().or(file.initial_cluster);
        let join = self.join.clone().or(file.join);
        let start = if self.bootstrap || file.bootstrap == Some(true) {
            if initial.is_some() || join.is_some() {
                return Err(missing("bootstrap", "cannot be combined with initial-cluster or join"));
            }
            Start::Bootstrap
        } else if let Some(initial) = initial {
            if join.is_some() {
                return Err(missing("join", "cannot be combined with initial-cluster"));
            }
            Start::InitialCluster(parse_initial_cluster(&initial)?)
        } else if let Some(join) = join {
            Start::Join(join)
        } else {
            Start::Wait
        };

        let node_id = match self.node_id.or(file.node_id) {
            Some(id) => id,
            None => match (&start, DataDir::recorded_node_id(&data_dir)) {
                (_, Some(id)) => id,
                (Start::InitialCluster(members), None) => {
                    members.iter().find(|(_, addr)| **addr == advertise).map(|(id, _)| *id).ok_or_else(|| {
                        missing("node-id", "is required: --initial-cluster lists no node at --advertise")
                    })?
                }
                (Start::Bootstrap, None) => 1,
                _ => return Err(missing("node-id", "is required to join a cluster")),
            },
        };
        let cluster_secret = match self.cluster_secret_file.clone().or(file.cluster_secret_file) {
            Some(path) => Some(Config::read_secret(&path)?),
            // From the environment (e.g. docker-compose), never from argv where `ps` shows it.
            None => {
                std::env::var("FLOTILLA_CLUSTER_SECRET").ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
            }
        };
        let mut snapshots = file.snapshots;
        if let Some(rf) = self.replication_factor {
            snapshots.replication_factor = rf;
        }
        let mut retention = file.retention;
        if let Some(s) = self.retention_s {
            retention.final_records_s = s;
        }
        let mut warm_pool = file.warm_pool;
        warm_pool.extend(self.warm_pool.iter().cloned());
        let auth = !self.no_auth && file.auth.unwrap_or(true);
        let gpus = match (&self.gpus, file.gpus) {
            (Some(g), _) => g.clone(),
            (None, Some(g)) => g.parse().map_err(|e: String| missing("gpus", &e))?,
            (None, None) => GpuSource::Auto,
        };
        let tls = tls_files(
            self.tls_cert.clone().or(file.tls_cert),
            self.tls_key.clone().or(file.tls_key),
            self.tls_ca.clone().or(file.tls_ca),
        )?;
        Config {
            node_id,
            data_dir,
            listen,
            advertise,
            http,
            start,
            cluster_secret,
            raft: file.raft,
            auth,
            tls,
            warm_pool,
            gpus,
            snapshots,
            retention,
            docker_host: self.docker_host.clone().or(file.docker_host),
        }
        .validate()
    }
}
