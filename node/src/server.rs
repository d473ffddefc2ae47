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
use flotilla_proto::images::images_server::ImagesServer;
use flotilla_proto::observe::observe_server::ObserveServer;
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
use crate::grpc::{self, BootstrapService, ControlService, ImagesService, PeerService, WorkerService};
use crate::resources::Resources;
use crate::runtime::Docker;
use crate::sandbox::pool::WarmPool;
use crate::sandbox::SandboxHost;
use crate::workers::Workers;

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
    let engine = Docker::host(config.docker_host.as_deref());
    let (docker, workloads) = match Docker::connect_to(&engine).await {
        Ok(d) => (d.with_work_disks(data_dir.disks()).await, true),
        Err(e) => {
            tracing::error!(error = %e, "no container engine: this node joins the control plane only and runs no workloads");
            (Docker::offline(&engine)?, false)
        }
    };
    info!(data_dir = %config.data_dir.display(), "opening the raft store");
    let (log_store, state_machine) = store::open(&data_dir.raft())?;
    let (recovery, mut rewrites) = cluster::recovery::Recovery::new(log_store.clone());
    let view = state_machine.view();

    let mut secret =
        ClusterSecret::new(config.cluster_secret.clone()).with_cluster(data_dir.cluster_id(&config.start)?);
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
        metrics: crate::metrics::Metrics::default(),
        recovery: recovery.clone(),
        images: Default::default(),
    };
    let mut resources = Resources::detect(&config.gpus);
    if !workloads {
        resources.cpus = 0;
        resources.memory_mib = 0;
    }
    // Pulls (explicit and on demand) use the cluster's registry logins.
    let docker = docker.with_logins(crate::runtime::Logins::new({
        let view = cluster.view.clone();
        move |registry: &str| {
            view.read(|c| {
                c.registry_logins.get(registry).map(|l| crate::runtime::Credentials {
                    username: l.username.clone(),
                    password: l.password.0.clone(),
                })
            })
        }
    }));
    let blobs = BlobStore::open(&data_dir.blobs())
        .map_err(|e| anyhow::anyhow!("blob store {}: {e}", data_dir.blobs().display()))?;
    // Images neither the engine nor a registry has come from a peer that has them.
    let docker = docker.with_image_source(crate::runtime::ImageSource::new({
        let (cluster, blobs) = (cluster.clone(), blobs.clone());
        let fetches = Arc::new(crate::blobs::image::Fetches::default());
        move |docker, image| {
            let (cluster, blobs, fetches) = (cluster.clone(), blobs.clone(), fetches.clone());
            Box::pin(
                async move { crate::blobs::image::fetch_from_peers(&fetches, &cluster, &blobs, &docker, &image).await },
            )
        }
    }));
    let pool = WarmPool::new(docker.clone(), instance.clone(), config.warm_pool.clone());
    let sn = &config.snapshots;
    let functions =
        FunctionHost::new(docker.clone(), cluster.clone(), instance.clone(), blobs.clone(), sn.replication_factor);
    let keeper = KeeperOptions {
        replication_factor: sn.replication_factor,
        scrub_every: Duration::from_secs(sn.scrub_every_s),
        gc_grace: Duration::from_secs(sn.gc_grace_s),
    };
    let lease = Duration::from_millis(sn.fence_lease_ms);
    let kept_logs = crate::sandbox::kept_logs::KeptLogs::new(data_dir.sandbox_logs());
    let host = SandboxHost::new(docker, cluster.clone(), instance, pool, blobs.clone(), keeper.clone(), kept_logs);

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("listen {}: {e}", config.listen))?;
    let mut workers = Workers::default();
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
        // One span per request, with its request id (see `request_id`).
        .layer(crate::request_id::RequestSpans::new())
        .add_service(auth::Guarded::new(
            ControlServer::new(ControlService { cluster: cluster.clone(), functions: functions.clone() })
                .max_decoding_message_size(16 << 20),
            cluster.clone(),
            config.auth,
        ))
        .add_service(auth::Guarded::new(
            WorkerServer::new(WorkerService::new(host.clone(), functions.clone(), resources.clone()))
                .max_decoding_message_size(64 << 20),
            cluster.clone(),
            config.auth,
        ))
        .add_service(auth::Guarded::new(
            ObserveServer::new(grpc::ObserveService { host: host.clone(), functions: functions.clone() }),
            cluster.clone(),
            config.auth,
        ))
        .add_service(auth::Guarded::new(
            ImagesServer::new(ImagesService { cluster: cluster.clone(), docker: host.docker.clone() })
                .max_decoding_message_size(64 << 20),
            cluster.clone(),
            config.auth,
        ))
        .add_service(BootstrapServer::new(BootstrapService { cluster: cluster.clone() }))
        .add_service(InterceptedService::new(
            PeerServer::new(PeerService {
                cluster: cluster.clone(),
                blobs: blobs.clone(),
                docker: host.docker.clone(),
                exports: Default::default(),
            })
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

    let fires = crate::schedule::Stats::new(cluster.metrics.clone());
    if let Some(addr) = config.http {
        let listener = crate::http::bind(addr).await?;
        info!(%addr, "serving HTTP /healthz, /status and /metrics");
        let serve = crate::http::serve(listener, cluster.clone(), fires.clone(), config.auth, workers.shutdown());
        workers.spawn("http", serve);
    }
    start_membership(&config, &cluster, &mut workers).await?;
    let (removed_tx, removed_rx) = tokio::sync::oneshot::channel();
    let liveness = cluster::liveness::run(cluster.clone(), workers.shutdown());
    workers.spawn("liveness", async move {
        if let Some(removed) = liveness.await {
            let _ = removed_tx.send(removed);
        }
    });
    workers.spawn("register", register(cluster.clone(), resources.clone(), workers.shutdown()));
    workers.spawn("blob-keeper", crate::blobs::keep(cluster.clone(), blobs, keeper, workers.shutdown()));
    workers.spawn("failover", crate::sandbox::failover::run(cluster.clone(), lease, workers.shutdown()));
    workers.spawn("leader-events", cluster::events::watch_leadership(cluster.clone(), workers.shutdown()));
    if workloads {
        workers.spawn("fence", crate::sandbox::fence::run(host.clone(), lease, workers.shutdown()));
        let inventory =
            cluster::images::refresh(cluster.images.clone(), cluster.id, host.docker.clone(), workers.shutdown());
        workers.spawn("image-inventory", inventory);
        workers.spawn("sandbox-reconciler", crate::sandbox::reconciler::run(host, workers.shutdown()));
        workers.spawn("call-executor", function::executor::run(functions.clone(), workers.shutdown()));
        workers.spawn("replica-reconciler", function::reconciler::run(functions.clone(), workers.shutdown()));
    }
    workers.spawn("autoscaler", function::autoscaler::run(functions, workers.shutdown()));
    workers.spawn("scheduler", crate::schedule::scheduler::run(cluster.clone(), fires, workers.shutdown()));
    let retention = Duration::from_secs(config.retention.final_records_s);
    workers.spawn("retention", cluster::retention::run(cluster.clone(), retention, workers.shutdown()));
    println!(
        "flotilla node {} ready: endpoint {}://{} (data dir {})",
        config.node_id,
        if config.tls.is_some() { "https" } else { "http" },
        config.advertise,
        config.data_dir.display()
    );

    // A node removed from the cluster has nothing left to serve: it says so and exits. So does
    // a node whose critical worker failed (a refused join). An unsafe recovery (`remove-node
    // --force`) rewrites the log once Raft has stopped, then restarts the node (see
    // `cluster::recovery`).
    let mut failed = None;
    let mut rewrite = None;
    let removed = tokio::select! {
        signal = wait_for_signal() => {
            signal?;
            None
        }
        Ok(removed) = removed_rx => Some(removed),
        error = workers.failed() => {
            failed = Some(error);
            None
        }
        Some(r) = rewrites.recv() => {
            info!("forced membership change requested: stopping to rewrite the raft log, then restarting");
            rewrite = Some(r);
            None
        }
    };
    if let Some(r) = removed {
        tracing::error!(
            leader = ?r.by_leader,
            term = r.term,
            "this node was removed from the cluster (the leader's membership no longer has it): shutting down"
        );
    }
    info!("shutting down: stopping background workers (function replicas drain)");
    workers.join(function::reconciler::SHUTDOWN_DRAIN + Duration::from_secs(2)).await;
    info!("shutting down: stopping raft");
    if let Err(e) = raft.shutdown().await {
        warn!(error = %e, "raft did not stop cleanly");
    }
    let restart = rewrite.map(|r| recovery.write(config.node_id, r)).is_some();
    info!("shutting down: closing the gRPC server");
    let _ = stop_serving_tx.send(true);
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(Err(e))) => warn!(error = %e, "gRPC server failed"),
        Err(_) => warn!("gRPC server did not stop within 5s"),
        _ => {}
    }
    drop(data_dir);
    info!("stopped");
    if let Some(error) = failed {
        return Err(error);
    }
    if restart {
        return restart_self();
    }
    match removed {
        Some(_) => Err(anyhow::anyhow!(
            "node {} was removed from the cluster (its membership no longer lists it); it stopped. To \
             bring it back, start it with an empty --data-dir and add it again",
            config.node_id
        )),
        None => Ok(()),
    }
}

/// Re-executes this node's binary with the same arguments (same pid, same stdout and
/// stderr), so that Raft starts again from the rewritten log. Returns only on failure.
fn restart_self() -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    info!("restarting");
    // /proc/self/exe is the running binary even if its file was replaced since it started.
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new("/proc/self/exe");
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    let err = command.args(args).exec();
    Err(anyhow::anyhow!("could not restart the node after rewriting its membership ({err}); start it again"))
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
async fn start_membership(config: &Config, cluster: &Cluster, workers: &mut Workers) -> anyhow::Result<()> {
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
            workers.spawn_critical("join", join(cluster, addr, workers.shutdown()));
        }
        Start::Wait => info!("waiting to be added with `flotilla cluster add-node`"),
    }
    Ok(())
}

/// How long a joining node keeps asking before it gives up and exits.
const JOIN_FOR: Duration = Duration::from_secs(120);

/// Asks the cluster at `seed` to add this node: finds the leader through the seed's Peer
/// `Ping`, then forwards an AddNode proposal to it, retrying until accepted. A wrong cluster
/// secret, or no answer within [`JOIN_FOR`], is an error that stops the node.
async fn join(cluster: Cluster, seed: String, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + JOIN_FOR;
    let proposal = Proposal::AddNode { id: cluster.id, addr: cluster.addr.clone() };
    let bytes = codec::encode(&proposal).expect("proposal encodes");
    loop {
        let result = async {
            let mut seed_client =
                cluster.peers.get(&seed).map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
            let mut ping = tonic::Request::new(PingRequest { from: cluster.id, leading: false, adding: false });
            ping.set_timeout(Duration::from_secs(2));
            let ping = seed_client.ping(ping).await?.into_inner();
            // The seed's cluster is the one this node joins: its id, learnt here, lets the
            // leader's Raft messages in.
            cluster.peers.cluster_id().learn(&ping.cluster_id).map_err(|e| {
                tonic::Status::failed_precondition(format!(
                    "{}: this node is of cluster {}, the seed of cluster {}",
                    crate::grpc::OTHER_CLUSTER,
                    e.ours,
                    e.theirs
                ))
            })?;
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
                return Ok(());
            }
            Err(status) if status.code() == tonic::Code::Unauthenticated => {
                anyhow::bail!("join refused by {seed}: {} (check --cluster-secret-file)", status.message());
            }
            Err(status) if status.message().starts_with(crate::grpc::OTHER_CLUSTER) => {
                anyhow::bail!(
                    "join refused by {seed}: {} (this data dir belongs to another cluster)",
                    status.message()
                );
            }
            Err(status) if tokio::time::Instant::now() >= deadline => {
                anyhow::bail!("could not join the cluster at {seed} within {JOIN_FOR:?}: {}", status.message());
            }
            Err(status) => warn!(%seed, error = %status.message(), "join not accepted yet; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = shutdown.changed() => return Ok(()),
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
