//! Chaos tests for Flotilla: real `flotilla node` processes, broken on purpose, with every
//! client operation recorded and the cluster's promises checked over the record.
//!
//! A run ([`run::run`]) starts a three-node cluster on loopback addresses 127.0.0.2–4
//! ([`cluster`]), runs workload clients through the SDK that record a history of invocations
//! and results ([`workload`], [`history`]), and lets a seeded nemesis ([`nemesis`]) kill
//! (SIGKILL and restart), pause (SIGSTOP/SIGCONT), isolate, one-way drop and slow down nodes,
//! the leader among them, with iptables rules in a chain of its own ([`net`]). The faults are
//! then healed and the cluster must recover completely (the liveness phase). Finally one
//! checker per invariant reads the record ([`check`]).
//!
//! Everything is bounded: fault steps by count and time, every client call by a deadline,
//! every wait by a timeout. Everything is cleaned up: node processes are killed and the
//! firewall chain removed on drop, also when a run fails; leftovers of an interrupted run are
//! removed when the next one starts. The seed is printed; `FLOTILLA_CHAOS_SEED` replays it
//! ([`profile`]).
//!
//! The black-box twin of this crate is `scripts/compose-chaos`, which breaks the
//! docker-compose cluster with `docker network disconnect`, `docker kill` and `docker pause`.

pub mod check;
pub mod cluster;
pub mod history;
pub mod nemesis;
pub mod net;
pub mod profile;
pub mod run;
pub mod workload;
