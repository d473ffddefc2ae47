//! `flotilla snapshot ls|show|rm`, and `sandbox snapshot` with a progress bar.

use clap::Subcommand;
use flotilla::{Client, SnapshotInfo};
use indicatif::{ProgressBar, ProgressStyle};

use super::output::{print, rfc3339, Format};

#[derive(Debug, Subcommand)]
pub enum SnapshotCmd {
    /// List snapshots (kind, size, sha256, replica nodes, state).
    Ls {
        /// Only this sandbox's.
        #[arg(long)]
        sandbox: Option<String>,
    },
    /// Show one snapshot.
    Show {
        /// The snapshot's id (sn-…).
        id: String,
    },
    /// Remove a snapshot; its blobs are then collected on every node.
    Rm {
        /// The snapshot's id (sn-…).
        id: String,
    },
}

fn replicas(s: &SnapshotInfo) -> String {
    s.replicas.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(",")
}

fn print_snapshot(s: &SnapshotInfo) {
    println!("{}  {}  {}  sandbox {}  image {}", s.id, s.kind, s.state, s.sandbox, s.image);
    if let Some(p) = &s.path {
        println!("  path {p}");
    }
    println!("  size {} bytes, sha256 {}", s.size_bytes, s.sha256);
    println!("  taken on node {}, replicas on nodes {}", s.node, replicas(s));
    println!("  created {}", rfc3339(s.created_at_ms));
    if let Some(reason) = &s.reason {
        println!("  failed: {reason}");
    }
}

impl SnapshotCmd {
    pub async fn run(&self, client: &Client, format: Format) -> anyhow::Result<()> {
        match self {
            SnapshotCmd::Ls { sandbox } => {
                let list = client.list_snapshots(sandbox.as_deref()).await?;
                print(format, &list, |list| {
                    println!(
                        "{:<20} {:<6} {:<8} {:>12} {:<12} {:<20} SHA256",
                        "ID", "KIND", "STATE", "SIZE", "REPLICAS", "SANDBOX"
                    );
                    for s in list {
                        println!(
                            "{:<20} {:<6} {:<8} {:>12} {:<12} {:<20} {}",
                            s.id,
                            s.kind,
                            s.state,
                            s.size_bytes,
                            replicas(s),
                            s.sandbox,
                            s.sha256.get(..16).unwrap_or("")
                        );
                    }
                })
            }
            SnapshotCmd::Show { id } => print(format, &client.snapshot_info(id).await?, print_snapshot),
            SnapshotCmd::Rm { id } => {
                print(format, &client.remove_snapshot(id).await?, |s| println!("removed {}", s.id))
            }
        }
    }
}

/// `sandbox snapshot`: takes it, showing progress on stderr when it is a terminal.
pub async fn take(client: &Client, id: &str, kind: &str, path: Option<&str>, format: Format) -> anyhow::Result<()> {
    let sb = client.sandbox_from_id(id).await?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg:<24} {bytes}/{total_bytes} ({bytes_per_sec})")
            .expect("a valid progress template"),
    );
    bar.set_message("snapshot");
    let shown = bar.clone();
    let result = sb
        .snapshot(kind, path, move |p| {
            shown.set_message(p.phase.clone());
            shown.set_length(p.total_bytes.max(p.done_bytes));
            shown.set_position(p.done_bytes);
        })
        .await;
    bar.finish_and_clear();
    let (snap, timings) = result?;
    print(format, &snap, |s| {
        println!("{}", s.id);
        eprintln!(
            "{} bytes, stored in {:.2} s, replicated to nodes {} in {:.2} s",
            s.size_bytes,
            timings.store_s,
            replicas(s),
            timings.replicate_s
        );
    })
}
