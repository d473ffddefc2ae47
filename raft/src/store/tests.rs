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

/// A snapshot built from an older state that finishes after a newer one was installed from
/// the leader must not replace it on disk (the chaos run with seed 1795695978675937082: after a
/// SIGKILL the node found its log purged past its snapshot and openraft panicked at start).
#[tokio::test]
async fn an_older_snapshot_never_replaces_a_newer_one_on_disk() {
    use openraft::storage::RaftStateMachine;
    use openraft::{CommittedLeaderId, LogId, SnapshotMeta};

    use super::state_machine::StoredSnapshot;
    use crate::catalog::Catalog;

    let at = |index| Some(LogId::new(CommittedLeaderId::new(2, 1), index));
    let meta = |index, id: &str| SnapshotMeta { last_log_id: at(index), snapshot_id: id.into(), ..Default::default() };
    let catalog = codec::encode(&Catalog::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm) = open(dir.path()).unwrap();
    sm.install_snapshot(&meta(899, "installed"), Box::new(std::io::Cursor::new(catalog.clone()))).await.unwrap();
    let built_earlier = StoredSnapshot { meta: meta(599, "built"), data: catalog };
    sm.persist(&built_earlier).await.unwrap();
    let on_disk = sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!((on_disk.meta.snapshot_id.as_str(), on_disk.meta.last_log_id), ("installed", at(899)));
}
