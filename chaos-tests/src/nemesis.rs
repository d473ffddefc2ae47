//! The nemesis: a seeded sequence of faults, each held for a while and then healed.
//!
//! Every step draws a fault, a target and a hold time from the run's seed, so a run replays
//! the same plan with `FLOTILLA_CHAOS_SEED`. Leader- and follower-targeted faults pick their
//! node when they strike (the current leader, or a node that does not lead), and the log says
//! which node that was. One fault is in force at a time, with a quiet gap after each, and the
//! number of steps and the time are bounded by the profile. Every step is printed with its
//! time, so a failure can be read against the history.
//!
//! **Coverage.** A plan opens with one *required* step for every fault [`Kind`] against the
//! leader and one against a follower, in seeded order and with short holds, so every run
//! injects every kind on both roles; random steps follow while the safety phase lasts. An
//! injection counts only once its effect is seen: the killed process was reaped with
//! SIGKILL, the paused one is in state `T` in `/proc`, every iptables rule of the fault is
//! in the chain (`iptables -C`). [`Nemesis::injected`] holds those counts by kind and role,
//! and [`missing`] names the pairs a run never injected.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::cluster::{node_ip, Cluster};
use crate::net::Firewall;

/// Who a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Node(u64),
    /// Whoever leads when the fault strikes.
    Leader,
    /// A node that does not lead when the fault strikes: the `n`-th of them (modulo their
    /// number).
    Follower(u64),
}

/// One fault.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// SIGKILL; restarted on its data dir when healed.
    Kill(Target),
    /// SIGSTOP; SIGCONT when healed.
    Pause(Target),
    /// Cut every link between the node and the others.
    Isolate(Target),
    /// Drop packets from one node to another only (another node than `to` when `to` is the
    /// node struck).
    OneWay { from: Target, to: u64 },
    /// Drop a share of the packets on every link of the node: slow links.
    Slow { node: Target, share: f64 },
}

/// A fault's kind, whatever its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Kill,
    Pause,
    Isolate,
    OneWay,
    Slow,
}

/// Every kind, for coverage.
pub const KINDS: [Kind; 5] = [Kind::Kill, Kind::Pause, Kind::Isolate, Kind::OneWay, Kind::Slow];

/// The role of the node a fault struck, when it struck.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Leader,
    Follower,
}

impl Fault {
    pub fn kind(&self) -> Kind {
        match self {
            Fault::Kill(_) => Kind::Kill,
            Fault::Pause(_) => Kind::Pause,
            Fault::Isolate(_) => Kind::Isolate,
            Fault::OneWay { .. } => Kind::OneWay,
            Fault::Slow { .. } => Kind::Slow,
        }
    }

    pub fn target(&self) -> Target {
        match *self {
            Fault::Kill(t) | Fault::Pause(t) | Fault::Isolate(t) => t,
            Fault::OneWay { from, .. } => from,
            Fault::Slow { node, .. } => node,
        }
    }
}

/// One planned step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub fault: Fault,
    /// How long the fault stays.
    pub hold: Duration,
    /// Quiet time after healing it.
    pub gap: Duration,
    /// One of the coverage steps that open the plan: run whatever the time.
    pub required: bool,
}

/// The longest hold of a required step, so the ten of them fit in the safety phase.
pub const REQUIRED_MAX_HOLD: Duration = Duration::from_secs(3);

/// A fault of `kind` against `target`.
fn fault(rng: &mut StdRng, kind: Kind, target: Target, nodes: u64) -> Fault {
    match kind {
        Kind::Kill => Fault::Kill(target),
        Kind::Pause => Fault::Pause(target),
        Kind::Isolate => Fault::Isolate(target),
        Kind::OneWay => Fault::OneWay { from: target, to: rng.random_range(1..=nodes) },
        Kind::Slow => Fault::Slow { node: target, share: rng.random_range(0.2..0.6) },
    }
}

/// Draws the plan for a cluster of `nodes` nodes: the required steps (every kind against
/// the leader and against a follower, in seeded order), then random steps up to `count` in
/// all.
pub fn plan(rng: &mut StdRng, nodes: u64, count: usize, max_hold: Duration) -> Vec<Step> {
    let millis = |rng: &mut StdRng, lo: u64, hi: Duration| {
        Duration::from_millis(rng.random_range(lo..=hi.as_millis().max(lo as u128) as u64))
    };
    let mut pairs: Vec<(Kind, Role)> = KINDS.iter().flat_map(|k| [(*k, Role::Leader), (*k, Role::Follower)]).collect();
    pairs.shuffle(rng);
    let mut steps: Vec<Step> = pairs
        .into_iter()
        .map(|(kind, role)| {
            let target = match role {
                Role::Leader => Target::Leader,
                Role::Follower => Target::Follower(rng.random_range(0..nodes)),
            };
            let fault = fault(rng, kind, target, nodes);
            let hold = millis(rng, 1000, REQUIRED_MAX_HOLD.min(max_hold));
            let gap = Duration::from_millis(rng.random_range(500..1500));
            Step { fault, hold, gap, required: true }
        })
        .collect();
    while steps.len() < count {
        let target = if rng.random_bool(0.4) { Target::Leader } else { Target::Node(rng.random_range(1..=nodes)) };
        let kind = KINDS[rng.random_range(0..KINDS.len())];
        let fault = fault(rng, kind, target, nodes);
        let hold = millis(rng, 1000, max_hold);
        let gap = Duration::from_millis(rng.random_range(500..2000));
        steps.push(Step { fault, hold, gap, required: false });
    }
    steps
}

/// The (kind, role) pairs `injected` lacks.
pub fn missing(injected: &BTreeMap<(Kind, Role), usize>) -> Vec<(Kind, Role)> {
    KINDS
        .iter()
        .flat_map(|k| [(*k, Role::Leader), (*k, Role::Follower)])
        .filter(|p| injected.get(p).copied().unwrap_or(0) == 0)
        .collect()
}

/// Applies faults to a cluster and heals them.
pub struct Nemesis<'a> {
    pub cluster: &'a mut Cluster,
    pub firewall: &'a mut Firewall,
    /// When the run started, for the log.
    pub start: Instant,
    /// Every step as it happened, for the report.
    pub log: Vec<String>,
    /// Faults whose effect was seen, by kind and by the role of the node struck.
    pub injected: BTreeMap<(Kind, Role), usize>,
}

impl Nemesis<'_> {
    pub fn new<'a>(cluster: &'a mut Cluster, firewall: &'a mut Firewall, start: Instant) -> Nemesis<'a> {
        Nemesis { cluster, firewall, start, log: Vec::new(), injected: BTreeMap::new() }
    }

    fn say(&mut self, what: String) {
        let line = format!("[{:7.2}s] {what}", self.start.elapsed().as_secs_f64());
        eprintln!("nemesis {line}");
        self.log.push(line);
    }

    fn resolve(&self, t: Target, leader: Option<u64>) -> Option<u64> {
        match t {
            Target::Node(id) => Some(id),
            Target::Leader => leader,
            Target::Follower(n) => {
                let leader = leader?;
                let others: Vec<u64> = self.cluster.nodes.keys().copied().filter(|o| *o != leader).collect();
                others.get(usize::try_from(n).ok()? % others.len().max(1)).copied()
            }
        }
    }

    /// Strikes `fault`; `leader` is the current leader, if one is known. Returns whether its
    /// effect was seen (and then counts it).
    pub fn strike(&mut self, fault: Fault, leader: Option<u64>) -> Result<bool> {
        let Some(id) = self.resolve(fault.target(), leader) else {
            self.say(format!("{fault:?}: no leader known, nothing struck"));
            return Ok(false);
        };
        let role = leader.map(|l| if l == id { Role::Leader } else { Role::Follower });
        let who = match role {
            Some(Role::Leader) => format!("node {id} (leader)"),
            Some(Role::Follower) => format!("node {id} (follower)"),
            None => format!("node {id}"),
        };
        let others: Vec<u64> = self.cluster.nodes.keys().copied().filter(|o| *o != id).collect();
        let seen = match fault {
            Fault::Kill(_) => {
                self.say(format!("SIGKILL {who}"));
                self.cluster.node(id).kill()
            }
            Fault::Pause(_) => {
                self.say(format!("SIGSTOP {who}"));
                self.cluster.node(id).pause()
            }
            Fault::Isolate(_) => {
                self.say(format!("isolate {who} from {others:?}"));
                let mut all = true;
                for o in others {
                    all &= self.firewall.cut(&node_ip(id), &node_ip(o))?;
                }
                all
            }
            Fault::OneWay { to, .. } => {
                let to = if to == id { others[usize::try_from(to).unwrap_or(0) % others.len()] } else { to };
                self.say(format!("drop packets {who} -> node {to}"));
                self.firewall.drop_one_way(&node_ip(id), &node_ip(to))?
            }
            Fault::Slow { share, .. } => {
                self.say(format!("slow links of {who} (drop {:.0}% of packets)", share * 100.0));
                let mut all = true;
                for o in others {
                    all &= self.firewall.slow(&node_ip(id), &node_ip(o), share)?;
                }
                all
            }
        };
        match (seen, role) {
            (true, Some(role)) => *self.injected.entry((fault.kind(), role)).or_default() += 1,
            (true, None) => self.say(format!("{:?} took effect, role of node {id} unknown: not counted", fault.kind())),
            (false, _) => self.say(format!("{:?} on node {id}: no effect seen, not counted", fault.kind())),
        }
        Ok(seen && role.is_some())
    }

    /// Removes every network rule, resumes paused nodes and restarts killed ones.
    pub fn heal(&mut self) -> Result<()> {
        let rules = self.firewall.active();
        let paused: Vec<u64> = self.cluster.nodes.values().filter(|n| n.is_paused()).map(|n| n.id).collect();
        let dead: Vec<u64> = self.cluster.nodes.values().filter(|n| !n.is_running()).map(|n| n.id).collect();
        if rules + paused.len() + dead.len() > 0 {
            self.say(format!("heal: {rules} rules removed, resume {paused:?}, restart {dead:?}"));
        }
        self.firewall.heal()?;
        self.cluster.heal()
    }

    /// The injected counts as one line: `kill leader 1, kill follower 2, …`.
    pub fn summary(injected: &BTreeMap<(Kind, Role), usize>) -> String {
        let name = |k: Kind| match k {
            Kind::Kill => "kill",
            Kind::Pause => "pause",
            Kind::Isolate => "isolate",
            Kind::OneWay => "one-way",
            Kind::Slow => "slow",
        };
        KINDS
            .iter()
            .flat_map(|k| [(*k, Role::Leader), (*k, Role::Follower)])
            .map(|(k, r)| {
                let role = if r == Role::Leader { "leader" } else { "follower" };
                format!("{} {role} {}", name(k), injected.get(&(k, r)).copied().unwrap_or(0))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn a_seed_replays_the_same_plan() {
        let a = plan(&mut StdRng::seed_from_u64(7), 3, 20, Duration::from_secs(4));
        let b = plan(&mut StdRng::seed_from_u64(7), 3, 20, Duration::from_secs(4));
        assert_eq!(a, b);
        assert_ne!(a, plan(&mut StdRng::seed_from_u64(8), 3, 20, Duration::from_secs(4)));
        assert!(a.iter().all(|s| s.hold >= Duration::from_secs(1) && s.hold <= Duration::from_secs(4)));
    }

    #[test]
    fn every_plan_opens_with_every_kind_against_leader_and_follower() {
        let profile = crate::profile::Profile::short(0);
        for seed in 0..200 {
            let steps = plan(&mut StdRng::seed_from_u64(seed), 3, profile.max_steps, profile.max_hold);
            let required: Vec<&Step> = steps.iter().take_while(|s| s.required).collect();
            assert_eq!(required.len(), 2 * KINDS.len(), "seed {seed}");
            let mut covered = BTreeMap::new();
            for s in &required {
                let role = match s.fault.target() {
                    Target::Leader => Role::Leader,
                    Target::Follower(_) => Role::Follower,
                    Target::Node(_) => panic!("seed {seed}: a required step names a fixed node"),
                };
                *covered.entry((s.fault.kind(), role)).or_insert(0) += 1;
            }
            assert!(missing(&covered).is_empty(), "seed {seed}: {covered:?}");
            // The required steps fit in the safety phase, with room for the leader waits.
            let time: Duration = required.iter().map(|s| s.hold + s.gap).sum();
            assert!(time + Duration::from_secs(5) <= profile.safety, "seed {seed}: {time:?}");
            assert_eq!(steps.len(), profile.max_steps);
        }
    }

    #[test]
    fn missing_names_the_pairs_never_injected() {
        let mut injected: BTreeMap<(Kind, Role), usize> =
            KINDS.iter().flat_map(|k| [((*k, Role::Leader), 1), ((*k, Role::Follower), 2)]).collect();
        assert!(missing(&injected).is_empty());
        injected.insert((Kind::Slow, Role::Leader), 0);
        injected.remove(&(Kind::Pause, Role::Follower));
        assert_eq!(missing(&injected), vec![(Kind::Pause, Role::Follower), (Kind::Slow, Role::Leader)]);
    }
}
