//! Function load: inputs running and waiting per function, on this node and, from Ping
//! replies, on every peer. The autoscaler on the leader sums it over live nodes. Nothing
//! here goes through Raft: load changes every millisecond; only the replica count it leads
//! to is committed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flotilla_proto::peer::FunctionLoad;
use flotilla_raft::NodeId;

use super::FnKey;

/// A peer's report older than this is ignored (the peer is probably down).
const REPORT_TTL: Duration = Duration::from_secs(3);

/// Inputs of one function.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Running on a replica.
    pub running: u32,
    /// Waiting for a free replica (synchronous calls only; durable ones wait in the catalog).
    pub waiting: u32,
}

/// A peer's last report and when it came.
type Report = (Instant, Vec<FunctionLoad>);

/// This node's counters and its peers' last reports. Cheap to clone.
#[derive(Clone, Default)]
pub struct Load {
    local: Arc<Mutex<HashMap<FnKey, Counts>>>,
    peers: Arc<Mutex<HashMap<NodeId, Report>>>,
}

/// Counts one input as running or waiting for as long as it lives.
pub struct Guard {
    load: Load,
    key: FnKey,
    waiting: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.load.change(&self.key, self.waiting, false);
    }
}

impl Load {
    /// Counts an input of `key` as running until the guard drops.
    pub fn running(&self, key: &FnKey) -> Guard {
        self.change(key, false, true);
        Guard { load: self.clone(), key: key.clone(), waiting: false }
    }

    /// Counts an input of `key` as waiting until the guard drops.
    pub fn waiting(&self, key: &FnKey) -> Guard {
        self.change(key, true, true);
        Guard { load: self.clone(), key: key.clone(), waiting: true }
    }

    fn change(&self, key: &FnKey, waiting: bool, up: bool) {
        let mut local = self.local.lock().expect("load lock");
        let c = local.entry(key.clone()).or_default();
        let field = if waiting { &mut c.waiting } else { &mut c.running };
        *field = if up { *field + 1 } else { field.saturating_sub(1) };
        if *c == Counts::default() {
            local.remove(key);
        }
    }

    /// This node's load, for Ping replies.
    pub fn report(&self) -> Vec<FunctionLoad> {
        let local = self.local.lock().expect("load lock");
        local
            .iter()
            .map(|((app, function), c)| FunctionLoad {
                app: app.clone(),
                function: function.clone(),
                running: c.running,
                waiting: c.waiting,
            })
            .collect()
    }

    /// Records a peer's report from its Ping reply.
    pub fn record_peer(&self, node: NodeId, report: Vec<FunctionLoad>) {
        self.peers.lock().expect("load lock").insert(node, (Instant::now(), report));
    }

    /// The load of every function summed over this node and the peers for which `include`
    /// holds and whose report is fresh.
    pub fn cluster(&self, me: NodeId, include: impl Fn(NodeId) -> bool) -> HashMap<FnKey, Counts> {
        let mut total: HashMap<FnKey, Counts> = self.local.lock().expect("load lock").clone();
        for (node, (at, report)) in self.peers.lock().expect("load lock").iter() {
            if *node == me || at.elapsed() > REPORT_TTL || !include(*node) {
                continue;
            }
            for l in report {
                let c = total.entry((l.app.clone(), l.function.clone())).or_default();
                c.running += l.running;
                c.waiting += l.waiting;
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(f: &str) -> FnKey {
        ("app".into(), f.into())
    }

    #[test]
    fn guards_count_while_they_live() {
        let load = Load::default();
        let a = load.running(&key("f"));
        let b = load.waiting(&key("f"));
        let c = load.waiting(&key("f"));
        assert_eq!(load.cluster(1, |_| true)[&key("f")], Counts { running: 1, waiting: 2 });
        drop((a, b, c));
        assert!(load.report().is_empty());
    }

    #[test]
    fn peers_are_summed_unless_excluded() {
        let load = Load::default();
        let _g = load.running(&key("f"));
        let report = |running| vec![FunctionLoad { app: "app".into(), function: "f".into(), running, waiting: 1 }];
        load.record_peer(2, report(3));
        load.record_peer(3, report(5));
        assert_eq!(load.cluster(1, |_| true)[&key("f")], Counts { running: 9, waiting: 2 });
        assert_eq!(load.cluster(1, |n| n != 3)[&key("f")], Counts { running: 4, waiting: 1 });
    }
}
