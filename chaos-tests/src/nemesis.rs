//! The nemesis: a seeded sequence of faults, each held for a while and then healed.
//!
//! Every step draws a fault, a target and a hold time from the run's seed, so a run replays
//! the same plan with `FLOTILLA_CHAOS_SEED`. Leader-targeted faults pick their node when they
//! strike (the current leader), and the log says which node that was. One fault is in force
//! at a time, with a quiet gap after each, and the number of steps and the time are bounded
//! by the profile. Every step is printed with its time, so a failure can be read against the
//! history.

use std::time::{Duration, Instant};

use anyhow::Result;
use rand::rngs::StdRng;
use rand::Rng;

use crate::cluster::{node_ip, Cluster};
use crate::net::Firewall;

/// Who a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Node(u64),
    /// Whoever leads when the fault strikes.
    Leader,
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
    /// Drop packets from one node to another only.
    OneWay { from: Target, to: u64 },
    /// Drop a share of the packets on every link of the node: slow links.
    Slow { node: Target, share: f64 },
}

/// One planned step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub fault: Fault,
    /// How long the fault stays.
    pub hold: Duration,
    /// Quiet time after healing it.
    pub gap: Duration,
}

/// Draws `count` steps for a cluster of `nodes` nodes.
pub fn plan(rng: &mut StdRng, nodes: u64, count: usize, max_hold: Duration) -> Vec<Step> {
    (0..count)
        .map(|_| {
            let node = |rng: &mut StdRng| {
                if rng.random_bool(0.4) {
                    Target::Leader
                } else {
                    Target::Node(rng.random_range(1..=nodes))
                }
            };
            let fault = match rng.random_range(0..5) {
                0 => Fault::Kill(node(rng)),
                1 => Fault::Pause(node(rng)),
                2 => Fault::Isolate(node(rng)),
                3 => Fault::OneWay { from: node(rng), to: rng.random_range(1..=nodes) },
                _ => Fault::Slow { node: node(rng), share: rng.random_range(0.2..0.6) },
            };
            let hold = Duration::from_millis(rng.random_range(1000..=max_hold.as_millis().max(1000) as u64));
            let gap = Duration::from_millis(rng.random_range(500..2000));
            Step { fault, hold, gap }
        })
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
}

impl Nemesis<'_> {
    fn say(&mut self, what: String) {
        let line = format!("[{:7.2}s] {what}", self.start.elapsed().as_secs_f64());
        eprintln!("nemesis {line}");
        self.log.push(line);
    }

    fn resolve(&self, t: Target, leader: Option<u64>) -> Option<u64> {
        match t {
            Target::Node(id) => Some(id),
            Target::Leader => leader,
        }
    }

    /// Strikes `fault`; `leader` is the current leader, if one is known.
    pub fn strike(&mut self, fault: Fault, leader: Option<u64>) -> Result<()> {
        let target = match fault {
            Fault::Kill(t) | Fault::Pause(t) | Fault::Isolate(t) => t,
            Fault::OneWay { from, .. } => from,
            Fault::Slow { node, .. } => node,
        };
        let Some(id) = self.resolve(target, leader) else {
            self.say(format!("{fault:?}: no leader to hit"));
            return Ok(());
        };
        let who = if target == Target::Leader { format!("node {id} (leader)") } else { format!("node {id}") };
        let others: Vec<u64> = self.cluster.nodes.keys().copied().filter(|o| *o != id).collect();
        match fault {
            Fault::Kill(_) => {
                self.say(format!("SIGKILL {who}"));
                self.cluster.node(id).kill();
            }
            Fault::Pause(_) => {
                self.say(format!("SIGSTOP {who}"));
                self.cluster.node(id).pause();
            }
            Fault::Isolate(_) => {
                self.say(format!("isolate {who} from {others:?}"));
                for o in others {
                    self.firewall.cut(&node_ip(id), &node_ip(o))?;
                }
            }
            Fault::OneWay { to, .. } if to == id => self.say(format!("drop {who} -> itself: nothing to do")),
            Fault::OneWay { to, .. } => {
                self.say(format!("drop packets {who} -> node {to}"));
                self.firewall.drop_one_way(&node_ip(id), &node_ip(to))?;
            }
            Fault::Slow { share, .. } => {
                self.say(format!("slow links of {who} (drop {:.0}% of packets)", share * 100.0));
                for o in others {
                    self.firewall.slow(&node_ip(id), &node_ip(o), share)?;
                }
            }
        }
        Ok(())
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
}
