//! openraft's own storage conformance suite, run against the store, plus our restart and
//! data-version checks.

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;

use super::{open, LogStore, OpenError, StateMachineStore, DATA_VERSION};
use crate::{codec, NodeId, TypeConfig};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, sm) = open(dir.path()).expect("open store");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).expect("storage suite");
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

/// Data dirs of earlier releases (version 4 kept the log in sled, version 5 lacks this wave's
/// catalog fields) are refused with a message naming both versions, never read as corrupt or
/// misread.
#[test]
fn older_data_versions_are_refused_by_name() {
    for old in [4u32, 5] {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            db.open_tree("meta").unwrap().insert(super::DATA_VERSION_KEY, codec::encode(&old).unwrap()).unwrap();
            db.flush().unwrap();
        }
        // sled's flusher thread may hold the directory's lock for a moment after the drop.
        let mut opened = open(dir.path());
        for _ in 0..100 {
            match &opened {
                Err(e) if e.to_string().contains("could not acquire lock") => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    opened = open(dir.path());
                }
                _ => break,
            }
        }
        match opened {
            Err(e @ OpenError::Version { found, .. }) => {
                assert_eq!(found, old);
                let message = e.to_string();
                assert!(message.contains(&format!("data version {old}")), "{message}");
                assert!(message.contains(&format!("reads version {DATA_VERSION}")), "{message}");
            }
            Err(e) => panic!("version {old}: {e}"),
            Ok(_) => panic!("version {old} opened"),
        }
    }
}

/// An unsafe recovery's membership entry lands after the last entry, with the vote, survives a
/// reopen, and a term that is not above every term the log has seen is refused.
#[tokio::test]
async fn a_forced_membership_entry_is_the_last_entry_after_reopen() {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::storage::RaftLogStorage;
    use openraft::testing::{blank_ent, log_id};
    use openraft::{EntryPayload, Membership, RaftLogReader, Vote};

    use super::ForceError;
    use crate::Node;

    let dir = tempfile::tempdir().unwrap();
    let membership =
        Membership::new(vec![BTreeSet::from([1])], BTreeMap::from([(1, Node::new("127.0.0.1:7000".to_string()))]));
    {
        let (mut log, _sm) = open(dir.path()).unwrap();
        log.save_vote(&Vote::new(4, 5)).await.unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let entries = (1..=3).map(|i| blank_ent::<TypeConfig>(3, 5, i));
        log.append_then(entries, Box::new(move |r| tx.send(r).unwrap())).await.unwrap();
        rx.await.unwrap().unwrap();
        assert_eq!(log.position(), (4, 3, 3));
        assert!(matches!(log.force_membership(4, 1, membership.clone()), Err(ForceError::StaleTerm { .. })));
        let forced = log.force_membership(5, 1, membership.clone()).unwrap();
        assert_eq!(forced.log_id, log_id(5, 1, 4));
    }
    let (mut log, _sm) = open(dir.path()).unwrap();
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(5, 1)));
    let entries = log.try_get_log_entries(..).await.unwrap();
    let last = entries.last().unwrap();
    assert_eq!(last.log_id, log_id(5, 1, 4));
    assert!(matches!(&last.payload, EntryPayload::Membership(m) if *m == membership));
}
