//! Starting and stopping a node.
//!
//! A node whose container engine does not answer at start still runs as a control-plane
//! member (Raft, the API, its GPU inventory) with no capacity, so nothing is placed on it; it
//! says so in its log.
//!
//! Start-up, in order: lock the data dir, open the Raft store, start Raft, bind the gRPC
//! port and serve Control, Worker and Peer, then join the cluster the way the config says
//! (bootstrap, initial cluster, join, or resume from the data dir), announce the node's
//! capacity in the catalog, start probing peers, and start the Scheduler (idle unless this
//! node leads; see `schedule::scheduler`).
//!
//! Shutdown on SIGTERM or Ctrl-C, in order: stop background tasks (function replicas drain
//! and are removed), stop Raft (it stops
//! replicating and voting; the log is already durable), stop serving, then release the data
//! dir. Sandbox containers are left running: they belong to the catalog, not to this
//! process, and the next start of the node adopts them (see `sandbox::reconciler`).

use std::sync::Arc;
use std::time::Duration;

use flotilla_proto::control::bootstrap_server::BootstrapServer;
use flotilla_proto::control::control_server::ControlServer;
use flotilla_proto::peer::peer_server::PeerServer;
use flotilla_proto::peer::{ForwardRequest, PingRequest};
use flotilla_proto::worker::worker_server::WorkerServer;
use flotilla_raft::network::{ClusterSecret, PeerNetwork, PeerPool};
use flotilla_raft::{codec, store, Command, Node, Proposal, Raft};
use openraft::SnapshotPolicy;
use tokio::sync::watch;
use tonic::service::interceptor::InterceptedService;
use tracing::{info, warn, Instrument};

use crate::auth;
use crate::blobs::{BlobStore, KeeperOptions};
use crate::cluster::{self, Cluster, Liveness};
use crate::config::{Config, Start};
use crate::data_dir::DataDir;
use crate::function::{self, FunctionHost};
use crate::grpc::{self, BootstrapService, ControlService, PeerService, WorkerService};
use crate::resources::Resources;
use crate::runtime::Docker;
use crate::sandbox::pool::WarmPool;
use crate::sandbox::SandboxHost;

/// Runs a node until SIGTERM or Ctrl-C.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let span = tracing::info_span!("node", id = config.node_id);
    run_inner(config).instrument(span).await
}

async fn run_inner(config: Config) -> anyhow::Result<()> {
    let data_dir = DataDir::open(&config.data_dir, config.node_id)?;
    let instance = data_dir.instance_id()?;
    info!("connecting to the container engine");
    // Without an engine the node still serves the cluster (a Raft member, the API, its GPU
    // inventory) but offers no capacity, so nothing is placed on it.
    let (docker, workloads) = match Docker::connect().await {
        Ok(d) => (d, true),
        Err(e) => {
            tracing::error!(error = %e, "no container engine: this node joins the control plane only and runs no workloads");
            (Docker::offline()?, false)
        }
    };
    info!(data_dir = %config.data_dir.display(), "opening the raft store");
    let (log_store, state_machine) = store::open(&data_dir.raft())?;
    let view = state_machine.view();

    let mut secret = ClusterSecret::new(config.cluster_secret.clone());
    if !config.listen.ip().is_unspecified() {
        // Peers see this node's connections come from the address it serves on (firewall
        // rules and partitions between loopback addresses depend on it).
        secret = secret.with_source_ip(config.listen.ip());
    }
    let mut server_tls = None;
    if let Some(tls) = &config.tls {
        let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()));
        let identity = tonic::transport::Identity::from_pem(read(&tls.cert)?, read(&tls.key)?);
        server_tls = Some(tonic::transport::ServerTlsConfig::new().identity(identity));
        secret = secret.with_tls_ca(read(&tls.ca)?);
        info!("TLS on for clients and peers");
    }
    let raft_config = openraft::Config {
        cluster_name: "flotilla".into(),
        heartbeat_interval: config.raft.heartbeat_ms,
        election_timeout_min: config.raft.election_timeout_min_ms,
        election_timeout_max: config.raft.election_timeout_max_ms,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(config.raft.snapshot_every),
        max_in_snapshot_log_to_keep: config.raft.logs_kept_after_snapshot,
        // Snapshots are small (the catalog); send them in 4 MiB chunks.
        snapshot_max_chunk_size: 4 << 20,
        install_snapshot_timeout: 2000,
        ..Default::default()
    }
    .validate()?;
    let raft =
        Raft::new(config.node_id, Arc::new(raft_config), PeerNetwork::new(secret.clone()), log_store, state_machine)
            .await?;

    let cluster = Cluster {
        id: config.node_id,
        addr: config.advertise.clone(),
        raft: raft.clone(),
        view,
        peers: PeerPool::new(secret.clone()),
        liveness: Liveness::default(),
        load: Default::default(),
        placement_lock: Default::default(),
        batcher: Cluster::batcher_for(&raft, config.node_id),
    };
    let mut resources = Resources::detect(&config.gpus);
    if !workloads {
        resources.cpus = 0;
        resources.memory_mib = 0;
    }
    let pool = WarmPool::new(docker.clone(), instance.clone(), config.warm_pool.clone());
    let functions = FunctionHost::new(docker.clone(), cluster.clone(), instance.clone());
    let blobs = BlobStore::open(&data_dir.blobs())
        .map_err(|e| anyhow::anyhow!("blob store {}: {e}", data_dir.blobs().display()))?;
    let sn = &config.snapshots;
    let keeper = KeeperOptions {
        replication_factor: sn.replication_factor,
        scrub_every: Duration::from_secs(sn.scrub_every_s),
        gc_grace: Duration::from_secs(sn.gc_grace_s),
    };
    let lease = Duration::from_millis(sn.fence_lease_ms);
    let host = SandboxHost::new(docker, cluster.clone(), instance, pool, blobs.clone(), keeper.clone());

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("listen {}: {e}", config.listen))?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    // The server stops on its own signal, after Raft: peers keep getting answers (errors)
    // while this node's Raft winds down.
    let (stop_serving_tx, stop_serving_rx) = watch::channel(false);
    // Windows sized for megabyte messages (snapshot blobs, archives), which h2's default
    // 64 KiB windows would cut into many round trips.
    let mut builder = tonic::transport::Server::builder()
        .initial_stream_window_size(flotilla_raft::network::BULK_STREAM_WINDOW)
        .initial_connection_window_size(flotilla_raft::network::BULK_CONNECTION_WINDOW);
    if let Some(tls) = server_tls {
        builder = builder.tls_config(tls)?;
    }
    let server = builder
        .add_service(InterceptedService::new(
            ControlServer::new(ControlService { cluster: cluster.clone(), functions: functions.clone() })
                .max_decoding_message_size(16 << 20),
            auth::interceptor(cluster.view.clone(), config.auth),
        ))
        .add_service(InterceptedService::new(
            WorkerServer::new(WorkerService::new(host.clone(), functions.clone(), resources.clone()))
                .max_decoding_message_size(64 << 20),
            auth::interceptor(cluster.view.clone(), config.auth),
        ))
        .add_service(BootstrapServer::new(BootstrapService { cluster: cluster.clone() }))
        .add_service(InterceptedService::new(
            PeerServer::new(PeerService { cluster: cluster.clone(), blobs: blobs.clone() })
                .max_decoding_message_size(64 << 20),
            grpc::authenticate(secret.clone()),
        ))
        // No Nagle: small Raft and client messages must not wait for delayed ACKs.
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            {
                let mut rx = stop_serving_rx;
                async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                }
            },
        );
    let server = tokio::spawn(server.in_current_span());
    info!(listen = %config.listen, advertise = %config.advertise, auth = config.auth, "serving Control, Worker and Peer");

    let fires = crate::schedule::Stats::default();
    if let Some(addr) = config.http {
        let listener = crate::http::bind(addr).await?;
        info!(%addr, "serving HTTP /healthz and /status");
        let serve = crate::http::serve(listener, cluster.clone(), fires.clone(), shutdown_rx.clone());
        tokio::spawn(serve.in_current_span());
    }
    start_membership(&config, &cluster, shutdown_rx.clone()).await?;
    tokio::spawn(cluster::liveness::run(cluster.clone(), shutdown_rx.clone()).in_current_span());
    tokio::spawn(register(cluster.clone(), resources.clone(), shutdown_rx.clone()).in_current_span());
    tokio::spawn(crate::blobs::keep(cluster.clone(), blobs, keeper, shutdown_rx.clone()).in_current_span());
    tokio::spawn(crate::sandbox::failover::run(cluster.clone(), lease, shutdown_rx.clone()).in_current_span());
    let replicas = workloads.then(|| {
        tokio::spawn(crate::sandbox::fence::run(host.clone(), lease, shutdown_rx.clone()).in_current_span());
        tokio::spawn(crate::sandbox::reconciler::run(host, shutdown_rx.clone()).in_current_span());
        tokio::spawn(function::executor::run(functions.clone(), shutdown_rx.clone()).in_current_span());
        tokio::spawn(function::reconciler::run(functions.clone(), shutdown_rx.clone()).in_current_span())
    });
    tokio::spawn(function::autoscaler::run(functions, shutdown_rx.clone()).in_current_span());
    tokio::spawn(crate::schedule::scheduler::run(cluster.clone(), fires, shutdown_rx.clone()).in_current_span());
    println!(
        "flotilla node {} ready: endpoint {}://{} (data dir {})",
        config.node_id,
        if config.tls.is_some() { "https" } else { "http" },
        config.advertise,
        config.data_dir.display()
    );

    wait_for_signal().await?;
    info!("shutting down: stopping background tasks");
    let _ = shutdown_tx.send(true);
    if let Some(replicas) = replicas {
        info!("shutting down: draining function replicas");
        let _ = tokio::time::timeout(function::reconciler::SHUTDOWN_DRAIN + Duration::from_secs(2), replicas).await;
    }
    info!("shutting down: stopping raft");
    if let Err(e) = raft.shutdown().await {
        warn!(error = %e, "raft did not stop cleanly");
    }
    info!("shutting down: closing the gRPC server");
    let _ = stop_serving_tx.send(true);
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(Err(e))) => warn!(error = %e, "gRPC server failed"),
        Err(_) => warn!("gRPC server did not stop within 5s"),
        _ => {}
    }
    drop(data_dir);
    info!("stopped");
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

/// Brings a node with no Raft state into its cluster; a node with state just resumes.
async fn start_membership(config: &Config, cluster: &Cluster, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    if cluster.raft.is_initialized().await? {
        info!("resuming with the membership stored in the data dir");
        return Ok(());
    }
    match &config.start {
        Start::Bootstrap => {
            info!("bootstrapping a one-node cluster");
            let members = [(config.node_id, Node::new(config.advertise.clone()))]
                .into_iter()
                .collect::<std::collections::BTreeMap<_, _>>();
            cluster.raft.initialize(members).await?;
        }
        Start::InitialCluster(members) => {
            info!(?members, "forming the initial cluster");
            let members: std::collections::BTreeMap<_, _> =
                members.iter().map(|(id, addr)| (*id, Node::new(addr.clone()))).collect();
            // Every member initializes with the same set; openraft accepts that.
            if let Err(e) = cluster.raft.initialize(members).await {
                info!(error = %e, "initialize skipped");
            }
        }
        Start::Join(addr) => {
            let (cluster, addr) = (cluster.clone(), addr.clone());
            tokio::spawn(join(cluster, addr, shutdown).in_current_span());
        }
        Start::Wait => info!("waiting to be added with `flotilla cluster add-node`"),
    }
    Ok(())
}

/// How long a joining node keeps asking before it gives up and exits.
const JOIN_FOR: Duration = Duration::from_secs(120);

/// Asks the cluster at `seed` to add this node: finds the leader through the seed's Peer
/// `Ping`, then forwards an AddNode proposal to it, retrying until accepted. A wrong cluster
/// secret is fatal: the process exits with a message saying so.
async fn join(cluster: Cluster, seed: String, mut shutdown: watch::Receiver<bool>) {
    let deadline = tokio::time::Instant::now() + JOIN_FOR;
    let proposal = Proposal::AddNode { id: cluster.id, addr: cluster.addr.clone() };
    let bytes = codec::encode(&proposal).expect("proposal encodes");
    loop {
        let result = async {
            let mut seed_client =
                cluster.peers.get(&seed).map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
            let mut ping = tonic::Request::new(PingRequest { from: cluster.id, leading: false });
            ping.set_timeout(Duration::from_secs(2));
            let ping = seed_client.ping(ping).await?.into_inner();
            let leader = if ping.leader_addr.is_empty() { seed.clone() } else { ping.leader_addr };
            let mut leader_client =
                cluster.peers.get(&leader).map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
            let mut req = tonic::Request::new(ForwardRequest { proposal: bytes.clone() });
            req.set_timeout(Duration::from_secs(60));
            leader_client.forward(req).await
        }
        .await;
        match result {
            Ok(_) => {
                info!(%seed, "joined the cluster");
                return;
            }
            Err(status) if status.code() == tonic::Code::Unauthenticated => {
                eprintln!("error: join refused by {seed}: {} (check --cluster-secret-file)", status.message());
                std::process::exit(1);
            }
            Err(status) if tokio::time::Instant::now() >= deadline => {
                eprintln!("error: could not join the cluster at {seed} within {JOIN_FOR:?}: {}", status.message());
                std::process::exit(1);
            }
            Err(status) => warn!(%seed, error = %status.message(), "join not accepted yet; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Announces this node's capacity in the catalog once a leader accepts it.
async fn register(cluster: Cluster, resources: Resources, mut shutdown: watch::Receiver<bool>) {
    loop {
        let cmd = Command::RegisterNode {
            id: cluster.id,
            addr: cluster.addr.clone(),
            cpus: resources.cpus,
            memory_mib: resources.memory_mib,
            gpus: resources.gpus.clone(),
            at_ms: 0,
        };
        // Only members can propose; a joining node waits until it is one.
        if cluster.group().addrs.contains_key(&cluster.id) {
            match cluster.write(cmd).await {
                Ok(_) => {
                    info!(cpus = resources.cpus, memory_mib = resources.memory_mib, "registered in the catalog");
                    return;
                }
                Err(e) => tracing::debug!(error = %e, "registration not accepted yet; retrying"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = shutdown.changed() => return,
        }
    }
}
