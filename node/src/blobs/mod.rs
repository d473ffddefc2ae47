//! Snapshot blobs and code blobs: a content-addressed chunk store under the data dir
//! ([`BlobStore`]), transfers between nodes over the Peer service ([`transfer`]), the
//! replication, repair and collection of copies ([`replicas`]), and the code clients upload
//! for their apps' functions ([`code`]).
//!
//! Blobs never go through Raft. The catalog names a snapshot's blob by its sha256 and lists
//! the nodes holding a verified copy; everything here keeps that list true.

pub mod code;
pub mod image;
mod replicas;
mod store;
pub mod transfer;

pub use replicas::{keep, obtain, replicate, targets, KeeperOptions, LocalCheck};
pub use store::{BlobError, BlobReader, BlobStore, BlobWriter, Manifest, Tee};
