//! The Worker service: the data plane of the node that hosts a workload.

use flotilla_proto::worker::worker_server::Worker;
use flotilla_proto::worker::{NodeInfoReply, NodeInfoRequest};
use tonic::{Request, Response, Status};

use crate::resources::Resources;

/// Serves what this node is and offers.
pub struct WorkerService {
    pub node_id: u64,
    pub addr: String,
    pub resources: Resources,
}

#[tonic::async_trait]
impl Worker for WorkerService {
    async fn node_info(&self, _: Request<NodeInfoRequest>) -> Result<Response<NodeInfoReply>, Status> {
        Ok(Response::new(NodeInfoReply {
            node_id: self.node_id,
            addr: self.addr.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            cpus: self.resources.cpus,
            memory_mib: self.resources.memory_mib,
        }))
    }
}
