//! Linearizability of the catalog registers: a Wing–Gong search with Lowe's memoization.
//!
//! Linearizability is compositional, so each key is checked on its own. The model is a
//! *versioned register*: the state is the last value written and the number of writes
//! applied so far (the app's version). A write sets the value and adds one to the version,
//! and an acknowledged write must have returned that version or a later one (a retried
//! deploy that was already applied answers with the app as it is now, R1 in
//! docs/reliability.md); a read must return the state exactly. Checking versions, not only
//! values, catches a write applied twice.
//!
//! The search (Wing & Gong 1993, with the cache of Lowe 2017 "Testing for linearizability")
//! walks the call and return events in time order. At a call it tries to linearize that
//! operation now; at a return of an operation not yet linearized it backtracks. The cache of
//! (linearized set, state) pairs already explored keeps it polynomial in practice. An
//! operation whose outcome is unknown returns at infinity, so it may take effect at any point
//! after its call, or (being last) never matter; a definite failure and a read that did not
//! answer are left out, since they had no effect.
//!
//! Two reductions keep histories with many timeouts tractable. Values no read ever returned
//! are one value to the search (no read can tell them apart). And writes with an unknown
//! outcome whose value no read returned are interchangeable once called (same effect, no
//! return to respect), so the search only ever linearizes the earliest-called of them next,
//! instead of trying each.

use std::collections::HashSet;

use super::Violation;
use crate::history::{Call, Op, Ret, Versioned};

/// Upper bound on search steps per key, so a pathological history cannot hang a run.
pub const MAX_STEPS: u64 = 20_000_000;

/// Checks every key's history. One violation per key that is not linearizable, or whose
/// search ran past [`MAX_STEPS`] (reported too: an unchecked history is not a pass).
pub fn check(ops: &[Op]) -> Vec<Violation> {
    let mut keys: Vec<&str> = ops.iter().map(|o| o.call.key()).collect();
    keys.sort_unstable();
    keys.dedup();
    keys.into_iter()
        .filter_map(|key| {
            let of_key: Vec<&Op> = ops.iter().filter(|o| o.call.key() == key).collect();
            check_key(&of_key).err().map(|detail| Violation::new("linearizable", format!("key {key}: {detail}")))
        })
        .collect()
}

/// The register state: value (interned) and version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct State {
    value: Option<u32>,
    version: u64,
}

/// One operation prepared for the search.
struct Prepared<'a> {
    op: &'a Op,
    /// The written value, interned, for writes.
    writes: Option<u32>,
    /// What a read saw, interned, for reads.
    saw: Option<State>,
    /// An unknown-outcome write of a value no read returned (see the module doc).
    interchangeable: bool,
}

/// The interned id of every value no read returned.
const UNSEEN: u32 = 0;

/// One event of the time-ordered list the search walks.
#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
    /// For a call, the index of its return event.
    partner: usize,
}

/// Checks one key; `Err` says why it is not linearizable.
pub fn check_key(ops: &[&Op]) -> Result<(), String> {
    let read_values: HashSet<&str> = ops
        .iter()
        .filter_map(|o| match &o.ret {
            Ret::Read { seen: Some(v) } => Some(v.value.as_str()),
            _ => None,
        })
        .collect();
    let mut values: std::collections::HashMap<&str, u32> = std::collections::HashMap::new();
    let mut intern = |v: &'_ str| -> u32 {
        if !read_values.contains(v) {
            return UNSEEN;
        }
        let next = values.len() as u32 + 1;
        *values.entry(read_values.get(v).copied().unwrap_or_default()).or_insert(next)
    };
    let mut prepared = Vec::new();
    for op in ops {
        match (&op.call, &op.ret) {
            (_, Ret::Failed { .. }) | (Call::Read { .. }, Ret::Unknown { .. }) => {}
            (Call::Write { value, .. }, Ret::Written { .. } | Ret::Unknown { .. }) => {
                let writes = intern(value);
                let interchangeable = writes == UNSEEN && matches!(op.ret, Ret::Unknown { .. });
                prepared.push(Prepared { op, writes: Some(writes), saw: None, interchangeable })
            }
            (Call::Read { .. }, Ret::Read { seen }) => {
                let saw = match seen {
                    None => State { value: None, version: 0 },
                    Some(Versioned { value, version }) => State { value: Some(intern(value)), version: *version },
                };
                prepared.push(Prepared { op, writes: None, saw: Some(saw), interchangeable: false })
            }
            (call, ret) => return Err(format!("malformed operation: {call:?} returned {ret:?}")),
        }
    }
    search(&prepared)
}

/// The model's transition, or `None` if `p` cannot happen in state `s`.
fn step(s: State, p: &Prepared) -> Option<State> {
    match (p.writes, p.saw) {
        (Some(v), _) => {
            let next = State { value: Some(v), version: s.version + 1 };
            match p.op.ret {
                Ret::Written { version } if version < next.version => None,
                _ => Some(next),
            }
        }
        (None, Some(saw)) => (saw == s).then_some(s),
        (None, None) => Some(s),
    }
}

fn search(ops: &[Prepared]) -> Result<(), String> {
    let n = ops.len();
    // Time-ordered events; at equal times calls come first, so touching operations count as
    // concurrent (the checker never reports an order the clock cannot prove).
    let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, p) in ops.iter().enumerate() {
        order.push((p.op.invoke_us, false, i));
        order.push((p.op.complete_us.unwrap_or(u64::MAX), true, i));
    }
    order.sort_unstable();
    let mut events: Vec<Event> = order.iter().map(|&(_, ret, op)| Event { op, is_call: !ret, partner: 0 }).collect();
    let mut call_at = vec![0; n];
    for (i, e) in events.iter().enumerate() {
        if e.is_call {
            call_at[e.op] = i;
        }
    }
    for i in 0..events.len() {
        if !events[i].is_call {
            let c = call_at[events[i].op];
            events[c].partner = i;
        }
    }
    // A doubly linked list over the events; index `len` is the head sentinel.
    let head = events.len();
    let mut next: Vec<usize> = (1..=events.len() + 1).collect();
    let mut prev: Vec<usize> = Vec::with_capacity(events.len() + 1);
    prev.push(head);
    prev.extend(0..events.len().saturating_sub(1));
    prev.push(events.len().saturating_sub(1));
    next[head] = if events.is_empty() { head } else { 0 };
    if let Some(last) = events.len().checked_sub(1) {
        next[last] = head;
    }
    let lift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, i: usize| {
        let (p, nx) = (prev[i], next[i]);
        next[p] = nx;
        prev[nx] = p;
    };
    let unlift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, i: usize| {
        let (p, nx) = (prev[i], next[i]);
        next[p] = i;
        prev[nx] = i;
    };

    // Interchangeable writes in call order; only `free[next_free]` may be linearized next.
    let mut free: Vec<usize> = (0..n).filter(|i| ops[*i].interchangeable).collect();
    free.sort_by_key(|i| call_at[*i]);
    let mut next_free = 0;
    let mut linearized = vec![0u64; n.div_ceil(64)];
    let mut cache: HashSet<(Vec<u64>, State)> = HashSet::new();
    let mut stack: Vec<(usize, State)> = Vec::new();
    let mut state = State { value: None, version: 0 };
    let mut entry = next[head];
    let mut steps = 0u64;
    // The deepest point reached, for the report.
    let mut deepest = (0usize, None::<usize>);
    while next[head] != head {
        steps += 1;
        if steps > MAX_STEPS {
            return Err(format!("search gave up after {MAX_STEPS} steps over {n} operations (inconclusive)"));
        }
        let e = events[entry];
        if e.is_call {
            if ops[e.op].interchangeable && free.get(next_free) != Some(&e.op) {
                entry = next[entry];
                continue;
            }
            if let Some(s) = step(state, &ops[e.op]) {
                linearized[e.op / 64] |= 1 << (e.op % 64);
                if cache.insert((linearized.clone(), s)) {
                    next_free += usize::from(ops[e.op].interchangeable);
                    stack.push((entry, state));
                    state = s;
                    lift(&mut next, &mut prev, entry);
                    lift(&mut next, &mut prev, e.partner);
                    entry = next[head];
                    continue;
                }
                linearized[e.op / 64] &= !(1 << (e.op % 64));
            }
            entry = next[entry];
        } else {
            if stack.len() >= deepest.0 {
                deepest = (stack.len(), Some(e.op));
            }
            let Some((call, s)) = stack.pop() else {
                return Err(not_linearizable(ops, deepest));
            };
            state = s;
            let op = events[call].op;
            next_free -= usize::from(ops[op].interchangeable);
            linearized[op / 64] &= !(1 << (op % 64));
            unlift(&mut next, &mut prev, events[call].partner);
            unlift(&mut next, &mut prev, call);
            entry = next[call];
        }
    }
    Ok(())
}

fn not_linearizable(ops: &[Prepared], (depth, stuck): (usize, Option<usize>)) -> String {
    let stuck = stuck.map(|i| ops[i].op);
    format!(
        "not linearizable: at most {depth} of {} operations could be ordered; no order fits {}",
        ops.len(),
        stuck.map_or("?".to_string(), |op| format!(
            "{:?} -> {:?} (client {}, {}..{:?} us)",
            op.call, op.ret, op.process, op.invoke_us, op.complete_us
        ))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(p: usize, v: &str, t: (u64, u64), version: Option<u64>) -> Op {
        Op {
            process: p,
            call: Call::Write { key: "k".into(), value: v.into() },
            invoke_us: t.0,
            complete_us: version.map(|_| t.1),
            ret: match version {
                Some(version) => Ret::Written { version },
                None => Ret::Unknown { error: "timeout".into() },
            },
        }
    }

    fn r(p: usize, seen: Option<(&str, u64)>, t: (u64, u64)) -> Op {
        Op {
            process: p,
            call: Call::Read { key: "k".into() },
            invoke_us: t.0,
            complete_us: Some(t.1),
            ret: Ret::Read { seen: seen.map(|(v, n)| Versioned { value: v.into(), version: n }) },
        }
    }

    fn ok(ops: &[Op]) -> bool {
        check(ops).is_empty()
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let h = [r(0, None, (0, 1)), w(0, "a", (2, 3), Some(1)), r(1, Some(("a", 1)), (4, 5))];
        assert!(ok(&h));
    }

    #[test]
    fn concurrent_writes_may_be_seen_in_either_order() {
        // a and b overlap; b got version 1 and a version 2, and a read after both sees a.
        let h = [w(0, "a", (0, 10), Some(2)), w(1, "b", (1, 9), Some(1)), r(2, Some(("a", 2)), (11, 12))];
        assert!(ok(&h));
    }

    #[test]
    fn a_stale_read_is_rejected() {
        // b was acknowledged before the read started, yet the read saw a.
        let h = [w(0, "a", (0, 1), Some(1)), w(0, "b", (2, 3), Some(2)), r(1, Some(("a", 1)), (4, 5))];
        let v = check(&h);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].detail.contains("not linearizable"), "{v:?}");
    }

    #[test]
    fn a_read_of_a_value_never_written_is_rejected() {
        assert!(!ok(&[r(0, Some(("ghost", 1)), (0, 1))]));
    }

    #[test]
    fn reads_going_back_in_time_are_rejected() {
        // Two reads in sequence, both during a long write: new then old is impossible.
        let h = [
            w(0, "a", (0, 1), Some(1)),
            w(1, "b", (2, 100), Some(2)),
            r(2, Some(("b", 2)), (10, 11)),
            r(2, Some(("a", 1)), (12, 13)),
        ];
        assert!(!ok(&h));
    }

    #[test]
    fn an_unknown_write_may_take_effect_late_or_never() {
        // The timed-out write of x shows up long after it was called...
        let late = [w(0, "x", (0, 0), None), r(1, None, (5, 6)), r(1, Some(("x", 1)), (50, 51))];
        assert!(ok(&late));
        // ...or never.
        let never = [w(0, "x", (0, 0), None), w(1, "y", (5, 6), Some(1)), r(1, Some(("y", 1)), (50, 51))];
        assert!(ok(&never));
    }

    #[test]
    fn a_write_applied_twice_is_rejected() {
        // The catalog answered a's retry with version 3 after b had made version 2, and a read
        // had seen a at version 1: one write took effect twice.
        let h = [
            w(0, "a", (0, 40), Some(3)),
            r(2, Some(("a", 1)), (5, 6)),
            w(1, "b", (10, 11), Some(2)),
            r(2, Some(("a", 3)), (50, 51)),
        ];
        assert!(!ok(&h));
    }

    #[test]
    fn many_timed_out_writes_check_quickly() {
        // 60 writes time out during a partition and are never seen; the clients go on.
        let mut ops: Vec<Op> = (0..60).map(|i| w(i % 4, &format!("lost{i}"), (1000 + i as u64, 0), None)).collect();
        let mut version = 0;
        for i in 0..400u64 {
            let t = 2000 + i * 10;
            if i % 2 == 0 {
                version += 1;
                ops.push(w(4, &format!("v{i}"), (t, t + 5), Some(version)));
            } else {
                ops.push(r(5, Some((&format!("v{}", i - 1), version)), (t, t + 5)));
            }
        }
        // Some of the lost writes took effect (the versions jump), some never did.
        for op in ops.iter_mut().skip(60) {
            match &mut op.ret {
                Ret::Written { version } => *version += 7,
                Ret::Read { seen: Some(v) } => v.version += 7,
                _ => {}
            }
        }
        assert!(ok(&ops), "{:?}", check(&ops));
        // A read of more versions than the writes could make is still caught.
        if let Ret::Read { seen: Some(v) } = &mut ops[101].ret {
            v.version += 100;
        }
        assert!(!ok(&ops));
    }

    #[test]
    fn failed_ops_and_unanswered_reads_are_ignored() {
        let mut failed = w(0, "z", (0, 1), Some(1));
        failed.ret = Ret::Failed { error: "invalid".into() };
        let mut lost_read = r(1, None, (2, 3));
        lost_read.ret = Ret::Unknown { error: "timeout".into() };
        lost_read.complete_us = None;
        assert!(ok(&[failed, lost_read, r(2, None, (4, 5))]));
    }

    #[test]
    fn many_concurrent_clients_check_quickly() {
        // 8 clients, 400 operations each in overlapping windows: a linearizable history
        // produced by a sequential register with jittered timestamps.
        let mut ops = Vec::new();
        let (mut version, mut value) = (0u64, None::<String>);
        for i in 0..3200u64 {
            let p = (i % 8) as usize;
            let t = i * 10;
            if i % 3 == 0 {
                version += 1;
                value = Some(format!("v{i}"));
                ops.push(w(p, value.as_deref().unwrap(), (t.saturating_sub(35), t + 35), Some(version)));
            } else {
                ops.push(r(p, value.as_deref().map(|v| (v, version)), (t.saturating_sub(35), t + 35)));
            }
        }
        // Within MAX_STEPS, or the check reports the search as inconclusive.
        assert!(ok(&ops), "{:?}", check(&ops));
    }
}
