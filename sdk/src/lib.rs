//! The Flotilla client SDK.
//!
//! ```no_run
//! # async fn demo() -> Result<(), flotilla::Error> {
//! let client = flotilla::Client::connect(["http://127.0.0.1:7100"]).await?;
//! let app = client.deploy(flotilla::AppSpec::from_toml_file("app.toml")?).await?;
//! println!("{} is at version {}", app.name, app.version);
//! # Ok(()) }
//! ```
//!
//! [`Client`] talks gRPC to any node of a cluster. Nodes forward writes to the Raft leader
//! and serve linearizable reads, so any endpoint works; replies name the leader and the
//! client follows it to save a forwarding hop. When a
//! node is down or the cluster is between leaders it tries the next endpoint, then the whole
//! list again with a short backoff. Only failures that mean "not served" are retried
//! (unavailable: node down, no leader yet). Reads are side-effect free; a deploy carries a
//! request id so a retry of the same deploy is applied once (the catalog remembers the
//! request ids of each app's latest 64 deploys); stop is idempotent; a retried `remove_node` whose first attempt
//! committed answers that the node is not a member.
//! Every failure is one [`Error`] whose variant says what the caller can do about it.

mod app;
mod client;
mod cluster;
mod error;
mod exec;
mod function;
pub mod image;
mod observe;
mod sandbox;
mod schedule;
mod snapshot;
pub mod spec;
mod token;
pub mod worker;

pub use app::{AppInfo, StoredBlob};
pub use client::{Client, ClientOptions};
pub use cluster::{ClusterStatus, GpuInfo, Membership, NodeInfo};
pub use error::{Error, Result};
pub use exec::{ExecBuilder, ExecEvent, ExecProcess, ExecResult};
pub use function::{Function, FunctionCall, FunctionLoad, PendingReplica, ReplicaInfo};
pub use image::{BuiltImage, ImageInfo, NodeOutcome, Removed};
pub use observe::{Event, EventFilter, LogLine};
pub use sandbox::{Sandbox, SandboxBuilder, SandboxInfo};
pub use schedule::{CallRecord, RunsFilter, ScheduleInfo};
pub use snapshot::{SnapshotInfo, SnapshotProgress, SnapshotTimings};
pub use spec::AppSpec;
pub use token::{NewToken, TokenInfo};
