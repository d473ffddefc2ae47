//! Network faults between loopback addresses, with iptables rules in one chain of our own.
//!
//! The chain [`CHAIN`] is jumped to from `INPUT` (every packet between two local addresses
//! passes `INPUT` once, on `lo`). Faults are rules in it:
//! - a cut link drops packets from A to B and from B to A;
//! - a one-way drop drops only A to B (B's requests reach A, A's answers never return);
//! - a slow link drops a random share of A-to-B and B-to-A packets, so TCP retransmits
//!   after its 200 ms minimum timeout, again and again: a slow, jittery link.
//!
//! Slow links are not made with `tc netem`: this kernel has no queueing disciplines beyond
//! the defaults (`tc qdisc add dev lo root netem …` and `… prio` both fail with "Specified
//! qdisc kind is unknown", and there are no modules to load), so loss is the only way to
//! slow a link here.
//!
//! Rules only ever name the cluster's own addresses (never 127.0.0.1), so other processes on
//! the machine are untouched. [`Firewall::new`] removes what an earlier, interrupted run left
//! (the chain and the jump to it), and dropping the [`Firewall`] removes the jump, flushes and
//! deletes the chain, whether the run passed, failed or panicked.

use std::process::Command;

use anyhow::{bail, Context, Result};

/// Our chain. One cluster at a time uses it (see the lock in [`crate::cluster`]).
pub const CHAIN: &str = "FLOTILLA-CHAOS";

/// The chain and its rules; removed on drop.
pub struct Firewall {
    /// Rules in the chain now, as iptables arguments after `-A CHAIN`, for `heal` and reports.
    rules: Vec<Vec<String>>,
}

fn iptables(args: &[&str]) -> Result<()> {
    let out = Command::new("iptables").args(["-w", "5"]).args(args).output().context("run iptables")?;
    if !out.status.success() {
        bail!("iptables {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Removes the jump and the chain, ignoring what is already gone.
fn remove_chain() {
    while iptables(&["-D", "INPUT", "-j", CHAIN]).is_ok() {}
    let _ = iptables(&["-F", CHAIN]);
    let _ = iptables(&["-X", CHAIN]);
}

impl Firewall {
    /// Creates the (empty) chain and jumps to it from `INPUT`, after removing leftovers.
    pub fn new() -> Result<Self> {
        remove_chain();
        iptables(&["-N", CHAIN]).context("the chaos tests need root and iptables")?;
        iptables(&["-I", "INPUT", "-j", CHAIN])?;
        Ok(Self { rules: Vec::new() })
    }

    /// Appends `rule`; returns whether the chain then holds it (`iptables -C`).
    fn add(&mut self, rule: Vec<String>) -> Result<bool> {
        let mut args = vec!["-A", CHAIN];
        args.extend(rule.iter().map(String::as_str));
        iptables(&args)?;
        args[0] = "-C";
        let installed = iptables(&args).is_ok();
        self.rules.push(rule);
        Ok(installed)
    }

    fn drop_rule(from: &str, to: &str, share: Option<f64>) -> Vec<String> {
        let mut r = vec!["-s".to_string(), from.to_string(), "-d".to_string(), to.to_string()];
        if let Some(p) = share {
            r.extend(["-m", "statistic", "--mode", "random", "--probability"].map(str::to_string));
            r.push(format!("{p:.2}"));
        }
        r.extend(["-j".to_string(), "DROP".to_string()]);
        r
    }

    /// Drops every packet from `from` to `to` (one direction). Like the two below, returns
    /// whether every rule it added is in the chain.
    pub fn drop_one_way(&mut self, from: &str, to: &str) -> Result<bool> {
        self.add(Self::drop_rule(from, to, None))
    }

    /// Cuts the link between `a` and `b` both ways.
    pub fn cut(&mut self, a: &str, b: &str) -> Result<bool> {
        Ok(self.drop_one_way(a, b)? & self.drop_one_way(b, a)?)
    }

    /// Drops `share` (0..1) of the packets between `a` and `b`, both ways.
    pub fn slow(&mut self, a: &str, b: &str, share: f64) -> Result<bool> {
        Ok(self.add(Self::drop_rule(a, b, Some(share)))? & self.add(Self::drop_rule(b, a, Some(share)))?)
    }

    /// Removes every rule; the chain stays for the next fault.
    pub fn heal(&mut self) -> Result<()> {
        iptables(&["-F", CHAIN])?;
        self.rules.clear();
        Ok(())
    }

    /// How many rules are in force.
    pub fn active(&self) -> usize {
        self.rules.len()
    }
}

impl Drop for Firewall {
    fn drop(&mut self) {
        remove_chain();
    }
}
