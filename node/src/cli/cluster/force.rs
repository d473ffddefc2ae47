//! `flotilla cluster remove-node ID --force`: the client's half of the unsafe recovery (the
//! node's half, and why it is safe enough, is in the node's `cluster::recovery`).
//!
//! 1. Ask every member the cluster names (through the given endpoints, then each member's
//!    address) to check: any refusal stops everything (the cluster has a quorum, or node ID
//!    itself answered); a member that does not answer is skipped and said so.
//! 2. Choose the survivor with the most up-to-date log among the remaining voters, and a term
//!    above every term any survivor reported; that node rewrites its membership and restarts.
//! 3. Wait until a leader is elected with the new membership, and print it; or, when the
//!    members that answered are not a quorum of it either, say so at once (remove the next
//!    one the same way).

use std::time::Duration;

use anyhow::{anyhow, bail};
use flotilla::{Client, Error, Membership};

/// How long a member that does not answer is retried before it is taken as gone.
const MEMBER_RETRY: Duration = Duration::from_secs(1);
/// How long to wait for a leader with the new membership after the rewrite.
const ELECTED_WITHIN: Duration = Duration::from_secs(60);

pub async fn remove(client: &Client, id: u64) -> anyhow::Result<Membership> {
    let first = client.force_remove_node(id, 0).await?;
    let mut positions = vec![first.clone()];
    for (&node, addr) in &first.addrs {
        if node == first.node_id {
            continue;
        }
        match client.member(addr, MEMBER_RETRY).await?.force_remove_node(id, 0).await {
            Ok(p) => positions.push(p),
            Err(Error::Unavailable(e)) if node == id => eprintln!("node {id} at {addr} does not answer ({e})"),
            Err(Error::Unavailable(e)) => eprintln!("node {node} at {addr} does not answer ({e}): skipped"),
            Err(e) => return Err(anyhow!("node {node} at {addr}: {e}")),
        }
    }
    let chosen = positions
        .iter()
        .filter(|p| first.voters.contains(&p.node_id))
        .max_by_key(|p| (p.last_log_term, p.last_log_index))
        .ok_or_else(|| anyhow!("no voter that remains after removing node {id} answers; nothing changed"))?;
    let term = positions.iter().map(|p| p.vote_term.max(p.last_log_term)).max().unwrap_or(0) + 1;
    let addr = &first.addrs[&chosen.node_id];
    eprintln!(
        "node {} (the most up-to-date survivor, last log entry {} of term {}) rewrites its membership to voters {:?} \
         and restarts",
        chosen.node_id, chosen.last_log_index, chosen.last_log_term, chosen.voters
    );
    // One attempt: the node restarts right after it answers, so the answer can be cut off,
    // and a repeat of the same request would be refused once it has restarted.
    let node = client.member(addr, Duration::ZERO).await?;
    match node.force_remove_node(id, term).await {
        Ok(_) | Err(Error::Unavailable(_)) => {}
        Err(e) => bail!("node {} at {addr}: {e}", chosen.node_id),
    }
    let answering = chosen.voters.iter().filter(|v| positions.iter().any(|p| p.node_id == **v)).count();
    if answering * 2 <= chosen.voters.len() {
        eprintln!(
            "voters {:?} still lack a quorum: remove the voters that are gone for good with --force too",
            chosen.voters
        );
        return Ok(Membership { voters: chosen.voters.clone(), learners: chosen.learners.clone() });
    }
    let node = client.member(addr, MEMBER_RETRY).await?;
    let deadline = tokio::time::Instant::now() + ELECTED_WITHIN;
    loop {
        if let Ok(s) = node.cluster_status().await {
            if s.leader.is_some() && s.nodes.iter().all(|n| n.id != id) {
                let (learners, voters) = s.nodes.iter().partition::<Vec<_>, _>(|n| n.role == "learner");
                let ids = |nodes: Vec<&flotilla::NodeInfo>| nodes.iter().map(|n| n.id).collect();
                return Ok(Membership { voters: ids(voters), learners: ids(learners) });
            }
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "node {} rewrote its membership, but no leader was elected within {ELECTED_WITHIN:?}; check \
                 `flotilla cluster status` on it (more voters may be gone: remove them with --force too)",
                chosen.node_id
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
