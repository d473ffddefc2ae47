//! `flotilla cluster …`

use clap::Subcommand;
use flotilla::Client;

use super::output::{print, Format};

mod force;

#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Leader, term, and every node's role and status.
    Status,
    /// Add a running node: learner until caught up, then voter.
    AddNode {
        /// The new node's id (its --node-id).
        id: u64,
        /// The node's advertised HOST:PORT.
        addr: String,
    },
    /// Remove a node from the cluster.
    RemoveNode {
        /// The node's id.
        id: u64,
        /// Unsafe recovery of a cluster that lost its quorum for good (refused while it has
        /// one): the most up-to-date surviving node rewrites its membership without ID and
        /// restarts. Writes acknowledged only by the removed node can be lost.
        #[arg(long)]
        force: bool,
    },
}

impl ClusterCmd {
    pub async fn run(&self, client: &Client, format: Format) -> anyhow::Result<()> {
        match self {
            ClusterCmd::Status => {
                let status = client.cluster_status().await?;
                print(format, &status, |s| {
                    let leader = s.leader.map_or("none".to_string(), |l| l.to_string());
                    println!("leader {leader}  term {}  (answered by node {})", s.term, s.answered_by);
                    println!("ID   ADDRESS                  ROLE      STATUS");
                    for n in &s.nodes {
                        println!("{:<4} {:<24} {:<9} {}", n.id, n.addr, n.role, n.status);
                        for g in &n.gpus {
                            let holder = g.leased_to.as_deref().unwrap_or("free");
                            println!("       gpu {} {:<10} {holder}", g.index, g.model);
                        }
                    }
                })
            }
            ClusterCmd::AddNode { id, addr } => {
                let m = client.add_node(*id, addr).await?;
                print(format, &m, |m| println!("voters {:?}  learners {:?}", m.voters, m.learners))
            }
            ClusterCmd::RemoveNode { id, force: true } => {
                let m = force::remove(client, *id).await?;
                print(format, &m, |m| println!("voters {:?}  learners {:?}", m.voters, m.learners))
            }
            ClusterCmd::RemoveNode { id, force: false } => {
                let m = client.remove_node(*id).await?;
                print(format, &m, |m| println!("voters {:?}  learners {:?}", m.voters, m.learners))
            }
        }
    }
}
