//! Migrations of the on-disk format, one function per version step. A store opened at an
//! older [`super::DATA_VERSION`] is brought forward in place before anything reads it.
//!
//! Only the persisted snapshot holds encoded catalog records; log entries hold `Command`s,
//! whose encoding has not changed.

use std::collections::{BTreeMap, VecDeque};

use serde::Deserialize;

use super::state_machine::{StoredSnapshot, SNAPSHOT};
use crate::catalog::{App, AppState, Catalog, NodeRecord, Sandbox, Token};
use crate::{codec, NodeId};

/// A failed migration: the store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Sled(#[from] sled::Error),
    #[error(transparent)]
    Codec(#[from] codec::CodecError),
}

/// An app as version 1 stored it: only the last deploy's request id was remembered.
#[derive(Deserialize)]
struct AppV1 {
    name: String,
    version: u64,
    state: AppState,
    functions: Vec<String>,
    spec_json: String,
    deployed_at_ms: i64,
    updated_at_ms: i64,
    last_request_id: String,
}

/// The catalog as version 1 stored it.
#[derive(Deserialize)]
struct CatalogV1 {
    apps: BTreeMap<String, AppV1>,
    nodes: BTreeMap<NodeId, NodeRecord>,
    sandboxes: BTreeMap<String, Sandbox>,
    tokens: BTreeMap<String, Token>,
}

/// Version 1 to 2: apps remember the request ids of their latest deploys (R1 in
/// docs/reliability.md); a migrated app starts with its last one.
pub(super) fn v1_to_v2(meta: &sled::Tree) -> Result<(), MigrateError> {
    let Some(bytes) = meta.get(SNAPSHOT)? else { return Ok(()) };
    let mut stored: StoredSnapshot = codec::decode(&bytes)?;
    let old: CatalogV1 = codec::decode(&stored.data)?;
    let apps = old
        .apps
        .into_iter()
        .map(|(name, a)| {
            let app = App {
                name: a.name,
                version: a.version,
                state: a.state,
                functions: a.functions,
                spec_json: a.spec_json,
                deployed_at_ms: a.deployed_at_ms,
                updated_at_ms: a.updated_at_ms,
                recent_requests: VecDeque::from([a.last_request_id]),
            };
            (name, app)
        })
        .collect();
    let catalog = Catalog { apps, nodes: old.nodes, sandboxes: old.sandboxes, tokens: old.tokens };
    stored.data = codec::encode(&catalog)?;
    meta.insert(SNAPSHOT, codec::encode(&stored)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde::Serialize;

    use super::*;
    use crate::store::{open, DATA_VERSION_KEY};

    /// Version 1's app, for writing a version 1 store.
    #[derive(Serialize)]
    struct WriteAppV1<'a> {
        name: &'a str,
        version: u64,
        state: AppState,
        functions: Vec<String>,
        spec_json: &'a str,
        deployed_at_ms: i64,
        updated_at_ms: i64,
        last_request_id: &'a str,
    }

    #[derive(Serialize)]
    struct WriteCatalogV1<'a> {
        apps: BTreeMap<String, WriteAppV1<'a>>,
        nodes: BTreeMap<NodeId, NodeRecord>,
        sandboxes: BTreeMap<String, Sandbox>,
        tokens: BTreeMap<String, Token>,
    }

    #[tokio::test]
    async fn a_version_1_store_opens_with_its_apps_and_their_last_request() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            let meta = db.open_tree("meta").unwrap();
            let app = WriteAppV1 {
                name: "etl",
                version: 3,
                state: AppState::Deployed,
                functions: vec!["tick".into()],
                spec_json: "{}",
                deployed_at_ms: 1,
                updated_at_ms: 2,
                last_request_id: "r3",
            };
            let v1 = WriteCatalogV1 {
                apps: BTreeMap::from([("etl".to_string(), app)]),
                nodes: BTreeMap::new(),
                sandboxes: BTreeMap::new(),
                tokens: BTreeMap::new(),
            };
            let stored = StoredSnapshot { meta: openraft::SnapshotMeta::default(), data: codec::encode(&v1).unwrap() };
            meta.insert(SNAPSHOT, codec::encode(&stored).unwrap()).unwrap();
            meta.insert(DATA_VERSION_KEY, codec::encode(&1u32).unwrap()).unwrap();
            db.flush().unwrap();
        }
        let (_log, sm) = open(dir.path()).unwrap();
        let app = sm.view().read(|c| c.apps["etl"].clone());
        assert_eq!((app.version, app.updated_at_ms), (3, 2));
        assert_eq!(app.recent_requests, VecDeque::from(["r3".to_string()]));
    }
}
