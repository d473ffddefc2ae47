//! Crash consistency of the log store at its file seam: a seeded search over crash points.
//!
//! Each seed runs a random workload of appends (several in flight, group-committed), votes,
//! committed ids, truncations and purges (with a tiny compaction threshold, so purges rewrite
//! the file) against [`LogStore`] on the simulated disk of `sim_fs.rs`, which loses power at
//! an operation chosen by the seed. The disk as a restarted machine finds it (synced bytes
//! plus a random, possibly torn, prefix of the unsynced ones) must then open, and hold every
//! acknowledged entry, the last acknowledged vote and purge point, and a committed id that
//! points into the log. Three crashes follow each other per seed, so a store opened after a
//! torn tail is cut also keeps taking writes correctly.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use openraft::storage::RaftLogStorage;
use openraft::testing::{blank_ent, log_id};
use openraft::{LogId, RaftLogReader, Vote};

use super::log::LogStore;
use super::sim_fs::{Rng, SimFs};
use crate::NodeId;

const SEEDS: u64 = 400;
const ROUNDS: usize = 3;

/// What the store acknowledged, i.e. what must survive.
#[derive(Debug, Default, Clone)]
struct Acked {
    entries: BTreeMap<u64, LogId<NodeId>>,
    vote: Option<Vote<NodeId>>,
    purged: Option<LogId<NodeId>>,
    /// The last committed id given to the store (Raft never truncates at or below it).
    committed: Option<LogId<NodeId>>,
}

type Pending = tokio::sync::oneshot::Receiver<(Vec<LogId<NodeId>>, bool)>;

/// Waits for the in-flight appends and records the acknowledged ones.
async fn settle(pending: &mut Vec<Pending>, acked: &mut Acked) {
    for rx in pending.drain(..) {
        if let Ok((ids, true)) = rx.await {
            for id in ids {
                acked.entries.insert(id.index, id);
            }
        }
    }
}

/// One round: a random workload until the disk dies or the steps run out.
async fn workload(store: &mut LogStore, rng: &mut Rng, acked: &mut Acked) {
    let mut pending = Vec::new();
    let last_term = acked.entries.values().chain(&acked.purged).map(|id| id.leader_id.term).max();
    let mut term = acked.vote.map(|v| v.leader_id.term).max(last_term).unwrap_or(0) + 1;
    let mut next = acked.entries.keys().next_back().copied().or(acked.purged.map(|p| p.index)).map_or(1, |i| i + 1);
    for _ in 0..rng.below(60) + 1 {
        let ok = match rng.below(10) {
            0..=5 => {
                let ids: Vec<_> = (0..rng.below(4) + 1).map(|k| log_id(term, 1, next + k)).collect();
                next += ids.len() as u64;
                let (tx, rx) = tokio::sync::oneshot::channel();
                let entries: Vec<_> = ids.iter().map(|id| blank_ent(id.leader_id.term, 1, id.index)).collect();
                let done = Box::new(move |r: std::io::Result<()>| {
                    let _ = tx.send((ids, r.is_ok()));
                });
                let ok = store.append_then(entries, done).await.is_ok();
                pending.push(rx);
                ok
            }
            6 => {
                settle(&mut pending, acked).await;
                let vote = Vote::new(term, 1 + rng.below(3));
                let ok = store.save_vote(&vote).await.is_ok();
                if ok {
                    acked.vote = Some(vote);
                }
                ok
            }
            7 => {
                settle(&mut pending, acked).await;
                let later: Vec<_> =
                    acked.entries.values().filter(|&&id| Some(id) >= acked.committed).copied().collect();
                let committed = later.get(rng.below(later.len() as u64) as usize).copied().or(acked.committed);
                acked.committed = committed;
                store.save_committed(committed).await.is_ok()
            }
            8 => {
                // A new leader's log replaces a suffix: truncate, then append in a higher term.
                settle(&mut pending, acked).await;
                let uncommitted: Vec<u64> =
                    acked.entries.values().filter(|&&id| Some(id) > acked.committed).map(|id| id.index).collect();
                let Some(&from) = uncommitted.get(rng.below(uncommitted.len() as u64) as usize) else {
                    continue;
                };
                // Once asked for, the cut may happen even if the call fails: the entries from
                // `from` on need not survive either way.
                let ok = store.truncate(acked.entries[&from]).await.is_ok();
                acked.entries.split_off(&from);
                next = from;
                term += 1;
                ok
            }
            _ => {
                settle(&mut pending, acked).await;
                // openraft purges only what is applied, so committed.
                let applied: Vec<_> =
                    acked.entries.values().filter(|&&id| Some(id) <= acked.committed).copied().collect();
                let Some(&upto) = applied.get(rng.below(applied.len() as u64) as usize) else {
                    continue;
                };
                let ok = store.purge(upto).await.is_ok();
                if ok {
                    acked.purged = Some(upto);
                    acked.entries = acked.entries.split_off(&(upto.index + 1));
                }
                ok
            }
        };
        if !ok {
            break;
        }
    }
    settle(&mut pending, acked).await;
}

/// Opens the store on the disk found after the power loss and checks it against `acked`;
/// returns the store and what it now holds.
async fn recover(disk: &SimFs, dir: &Path, acked: &Acked, seed: u64) -> (LogStore, Acked) {
    let mut store = LogStore::open(Arc::new(disk.clone()), dir, 256)
        .unwrap_or_else(|e| panic!("seed {seed}: the store does not open after a power loss: {e}"));
    let state = store.get_log_state().await.unwrap();
    let vote = store.read_vote().await.unwrap();
    assert_eq!(vote, acked.vote, "seed {seed}: not the last acknowledged vote");
    assert!(
        state.last_purged_log_id >= acked.purged,
        "seed {seed}: purge point {:?} older than the acknowledged {:?}",
        state.last_purged_log_id,
        acked.purged
    );
    let entries = store.try_get_log_entries(..).await.unwrap();
    let found: BTreeMap<u64, LogId<NodeId>> = entries.iter().map(|e| (e.log_id.index, e.log_id)).collect();
    for (index, id) in &acked.entries {
        if Some(*index) > state.last_purged_log_id.map(|p| p.index) {
            assert_eq!(found.get(index), Some(id), "seed {seed}: acknowledged entry {index} lost after a power loss");
        }
    }
    let first = state.last_purged_log_id.map_or(1, |p| p.index + 1);
    let indexes: Vec<u64> = found.keys().copied().collect();
    let expected: Vec<u64> = (first..first + indexes.len() as u64).collect();
    assert_eq!(indexes, expected, "seed {seed}: the log after a power loss is not contiguous from the purge point");
    assert_eq!(state.last_log_id, entries.last().map(|e| e.log_id).or(state.last_purged_log_id), "seed {seed}");
    let committed = store.read_committed().await.unwrap();
    if let Some(c) = committed {
        assert!(Some(c) <= state.last_log_id, "seed {seed}: committed {c} past the last log id");
        if let Some(id) = found.get(&c.index) {
            assert_eq!(*id, c, "seed {seed}: committed {c} names another entry");
        }
    }
    let now = Acked { entries: found, vote, purged: state.last_purged_log_id, committed };
    (store, now)
}

#[tokio::test]
async fn every_acknowledged_write_survives_power_loss() {
    let dir = Path::new("/sim/wal");
    let (mut torn_tails, mut synced) = (0, 0);
    for seed in 0..SEEDS {
        let mut rng = Rng::new(seed);
        let mut disk = SimFs::crashing_at(rng.below(400) + 1);
        let mut acked = Acked::default();
        let mut store = LogStore::open(Arc::new(disk.clone()), dir, 256).ok();
        for _ in 0..ROUNDS {
            // None: power was lost while the store opened; the next start must still open.
            if let Some(mut s) = store.take() {
                workload(&mut s, &mut rng, &mut acked).await;
            }
            disk.lose_power();
            synced += disk.synced_appends();
            let next = disk.after_power_loss(&mut rng);
            let (s, now) = recover(&next, dir, &acked, seed).await;
            torn_tails += u64::from(next.truncations() > 0);
            next.crash_after(rng.below(400) + 1);
            (disk, store, acked) = (next, Some(s), now);
        }
    }
    assert!(synced > 0, "the workloads never synced anything: the search tests nothing");
    println!("{SEEDS} seeds x {ROUNDS} power losses, {synced} bytes acknowledged, {torn_tails} opens cut a torn tail");
}
