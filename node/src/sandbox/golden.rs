//! Golden-script tests of the sandbox floor's decisions, in toydb's style: each file under
//! `golden/<runner>/` is a script of events and checks, and the output each block produces is
//! kept in the file under `---`. A test fails with a diff when a decision changes;
//! `UPDATE_GOLDENFILES=1 cargo test -p flotilla-node --bin flotilla golden` rewrites the
//! outputs, to be read and checked in.
//!
//! Nothing here needs a cluster or an engine: the runners drive the pure decisions
//! ([`failover::Watch`], [`failover::plan`], [`fence::Contact`], [`fence::Fence`],
//! [`fence::lift_plan`]) over plain data and a simulated clock.
//!
//! **failover** commands (this node is node 1):
//! - `lease MS`: the fencing lease; the leader's watch starts again.
//! - `leading yes|no`: whether this node leads from now on.
//! - `alive N…` / `silent N…`: nodes that answer probes from now on / that stop answering.
//! - `sandbox ID node=N [restore] [snapshot=SNAP] [final]`: a sandbox record.
//! - `pending SNAP node=N`: a snapshot node N is taking.
//! - `run MS`: checks every 250 ms for MS; prints each change of judgement and each decision
//!   (a move is then applied: the sandbox goes to the lowest-numbered live node, one generation
//!   up; a failed snapshot is no longer pending).
//! - `stall MS`: this process stops for MS (no checks, nobody heard).
//!
//! **fence** commands (this node is `me`, node 1 unless set):
//! - `voters N…`, `me N`, `leader N|none`, `reach N…` (two-way contact within the lease),
//!   `leader-contact yes|no`, `hosted SB…`, `mine SB…`, `caught-up yes|no`: the inputs.
//! - `check`: one check; prints the contact judgement and what the node does.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::error::Error;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use flotilla_raft::NodeId;
use goldenscript::{Command, Runner};

use super::failover::{self, Candidate, Observed, Watch, CHECK_EVERY};
use super::fence::{self, Contact, Fence, Step};

type Res = Result<String, Box<dyn Error>>;

fn ids<T: std::str::FromStr>(cmd: &Command) -> Result<Vec<T>, Box<dyn Error>>
where
    T::Err: Error + 'static,
{
    cmd.args.iter().filter(|a| a.key.is_none()).map(|a| Ok(a.value.parse::<T>()?)).collect()
}

fn key<'a>(cmd: &'a Command, name: &str) -> Option<&'a str> {
    cmd.args.iter().find(|a| a.key.as_deref() == Some(name)).map(|a| a.value.as_str())
}

fn flag(cmd: &Command, name: &str) -> bool {
    cmd.args.iter().any(|a| a.key.is_none() && a.value == name)
}

fn yes(cmd: &Command) -> Result<bool, Box<dyn Error>> {
    match cmd.args.first().map(|a| a.value.as_str()) {
        Some("yes") => Ok(true),
        Some("no") => Ok(false),
        other => Err(format!("{}: want yes or no, got {other:?}", cmd.name).into()),
    }
}

/// Failover as the leader (node 1) runs it, on a simulated clock.
struct FailoverRunner {
    start: Instant,
    now_ms: u64,
    watch: Watch,
    leading: bool,
    judging: Option<bool>,
    alive: BTreeSet<NodeId>,
    heard_ms: BTreeMap<NodeId, u64>,
    observed: Observed,
}

const ME: NodeId = 1;

impl FailoverRunner {
    fn new() -> Self {
        let start = Instant::now();
        Self {
            start,
            now_ms: 0,
            watch: Watch::new(Duration::from_millis(3000), start),
            leading: false,
            judging: None,
            alive: BTreeSet::new(),
            heard_ms: BTreeMap::new(),
            observed: Observed::default(),
        }
    }

    fn now(&self) -> Instant {
        self.start + Duration::from_millis(self.now_ms)
    }

    fn check(&mut self, out: &mut String) {
        for &n in &self.alive {
            self.heard_ms.insert(n, self.now_ms);
        }
        let judging = self.watch.may_judge(self.now(), self.leading);
        if self.judging != Some(judging) {
            let _ = writeln!(out, "t={}ms judging: {}", self.now_ms, if judging { "yes" } else { "no" });
            self.judging = Some(judging);
        }
        if !judging {
            return;
        }
        let silent_for = self.watch.silent_for().as_millis() as u64;
        let (now, heard) = (self.now_ms, &self.heard_ms);
        let dead = |n: NodeId| n != ME && heard.get(&n).is_none_or(|t| now - t >= silent_for);
        let plan = failover::plan(&self.observed, dead);
        let to = std::iter::once(ME).chain(self.alive.iter().copied()).min().unwrap_or(ME);
        for (id, reason) in plan.abandoned {
            let _ = writeln!(out, "t={}ms snapshot {id} failed: {reason}", self.now_ms);
            self.observed.pending.retain(|(p, _)| *p != id);
        }
        for (sb, snapshot) in plan.moves {
            let _ = writeln!(
                out,
                "t={}ms move {} from node {} to node {to} as generation {} (snapshot {snapshot})",
                self.now_ms,
                sb.id,
                sb.node,
                sb.generation + 1
            );
            if let Some(s) = self.observed.sandboxes.iter_mut().find(|s| s.id == sb.id) {
                s.node = to;
                s.generation += 1;
            }
        }
    }
}

impl Runner for FailoverRunner {
    fn run(&mut self, cmd: &Command) -> Res {
        let mut out = String::new();
        match cmd.name.as_str() {
            "lease" => {
                let ms: u64 = ids(cmd)?.first().copied().ok_or("lease MS")?;
                self.watch = Watch::new(Duration::from_millis(ms), self.now());
                self.judging = None;
            }
            "leading" => self.leading = yes(cmd)?,
            "alive" => self.alive.extend(ids::<NodeId>(cmd)?),
            "silent" => {
                for n in ids::<NodeId>(cmd)? {
                    self.alive.remove(&n);
                }
            }
            "sandbox" => {
                let id = cmd.args.first().ok_or("sandbox ID")?.value.clone();
                self.observed.sandboxes.retain(|s| s.id != id);
                if !flag(cmd, "final") {
                    self.observed.sandboxes.push(Candidate {
                        id,
                        node: key(cmd, "node").ok_or("node=N")?.parse()?,
                        generation: 1,
                        cpu: 1.0,
                        memory_mib: 512,
                        restore_on_failure: flag(cmd, "restore"),
                        ready_snapshot: key(cmd, "snapshot").map(str::to_string),
                    });
                }
            }
            "pending" => {
                let id = cmd.args.first().ok_or("pending SNAP")?.value.clone();
                self.observed.pending.push((id, key(cmd, "node").ok_or("node=N")?.parse()?));
            }
            "run" => {
                let ms: u64 = ids(cmd)?.first().copied().ok_or("run MS")?;
                let end = self.now_ms + ms;
                while self.now_ms + CHECK_EVERY.as_millis() as u64 <= end {
                    self.now_ms += CHECK_EVERY.as_millis() as u64;
                    self.check(&mut out);
                }
                self.now_ms = end;
            }
            "stall" => self.now_ms += ids::<u64>(cmd)?.first().copied().ok_or("stall MS")?,
            other => return Err(format!("unknown command {other}").into()),
        }
        Ok(out)
    }
}

/// The fence of one node, one check at a time.
struct FenceRunner {
    contact: Contact,
    fence: Fence,
    hosted: Vec<String>,
    mine: HashSet<String>,
    caught_up: bool,
}

impl Runner for FenceRunner {
    fn run(&mut self, cmd: &Command) -> Res {
        let c = &mut self.contact;
        match cmd.name.as_str() {
            "voters" => c.voters = ids(cmd)?,
            "me" => c.me = ids(cmd)?.first().copied().ok_or("me N")?,
            "leader" => {
                c.leader = cmd.args.first().filter(|a| a.value != "none").map(|a| a.value.parse()).transpose()?
            }
            "reach" => c.two_way = ids(cmd)?.into_iter().collect(),
            "leader-contact" => c.leader_contact = yes(cmd)?,
            "hosted" => self.hosted = cmd.args.iter().map(|a| a.value.clone()).collect(),
            "mine" => self.mine = cmd.args.iter().map(|a| a.value.clone()).collect(),
            "caught-up" => self.caught_up = yes(cmd)?,
            "check" => {
                let quorum = self.contact.has_quorum();
                let mut out = format!("contact: {}\n", if quorum { "yes" } else { "no" });
                match self.fence.check(quorum) {
                    Step::Freeze => {
                        let _ = writeln!(out, "fence: freeze {}", self.hosted.join(" "));
                    }
                    Step::TryLift if !self.caught_up => out.push_str("fence stays: not caught up with the leader\n"),
                    Step::TryLift => {
                        let after_loss = self.fence.lifted();
                        let _ = writeln!(
                            out,
                            "fence lifted ({})",
                            if after_loss { "after a loss of contact: warning" } else { "after start: info" }
                        );
                        for (id, thaw) in fence::lift_plan(&self.hosted, &self.mine) {
                            let _ = writeln!(out, "  {id}: {}", if thaw { "thaw" } else { "stop (moved)" });
                        }
                    }
                    Step::Stay => {
                        let _ = writeln!(out, "{}", if self.fence.fenced { "stays fenced" } else { "serving" });
                    }
                }
                return Ok(out);
            }
            other => return Err(format!("unknown command {other}").into()),
        }
        Ok(String::new())
    }
}

/// Runs every script in `golden/<dir>/` with a fresh runner each.
fn run_dir<R: Runner>(dir: &str, runner: impl Fn() -> R) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/sandbox/golden").join(dir);
    let mut paths: Vec<_> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no scripts in {}", root.display());
    for path in paths {
        goldenscript::run(&mut runner(), &path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

#[test]
fn failover_scripts() {
    run_dir("failover", FailoverRunner::new);
}

#[test]
fn fence_scripts() {
    run_dir("fence", || FenceRunner {
        contact: Contact { me: 1, ..Contact::default() },
        fence: Fence::at_start(),
        hosted: Vec::new(),
        mine: HashSet::new(),
        caught_up: true,
    })
}
