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
//! list again with a short backoff, for requests that are safe to repeat (all of them today:
//! reads are side-effect free and every write is idempotent, a deploy through its request id).
//! Every failure is one [`Error`] whose variant says what the caller can do about it.

mod app;
mod client;
mod cluster;
mod error;
pub mod spec;

pub use app::AppInfo;
pub use client::{Client, ClientOptions};
pub use cluster::{ClusterStatus, GpuInfo, Membership, NodeInfo};
pub use error::{Error, Result};
pub use spec::AppSpec;
