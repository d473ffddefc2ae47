//! Snapshot blobs: a content-addressed chunk store under the data dir ([`BlobStore`]),
//! transfers between nodes over the Peer service ([`transfer`]), and the replication,
//! repair and collection of copies ([`replicas`]).
//!
//! Blobs never go through Raft. The catalog names a snapshot's blob by its sha256 and lists
//! the nodes holding a verified copy; everything here keeps that list true.

mod replicas;
mod store;
pub mod transfer;

pub use replicas::{keep, obtain, replicate, targets, KeeperOptions, LocalCheck};
pub use store::{BlobError, BlobReader, BlobStore, BlobWriter, Manifest, Tee};
