//! openraft's own storage conformance suite, run against the sled store, plus our restart and
//! data-version checks.

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;

use super::{open, LogStore, OpenError, StateMachineStore, DATA_VERSION};
use crate::{codec, NodeId, TypeConfig};

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for SledBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, sm) = open(dir.path()).expect("open store");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(SledBuilder).expect("storage suite");
}

#[test]
fn refuses_unknown_data_version() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        let meta = db.open_tree("meta").unwrap();
        meta.insert(super::DATA_VERSION_KEY, codec::encode(&(DATA_VERSION + 1)).unwrap()).unwrap();
        db.flush().unwrap();
    }
    match open(dir.path()) {
        Err(OpenError::Version { found, .. }) => assert_eq!(found, DATA_VERSION + 1),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("opened a store of an unknown version"),
    }
}
