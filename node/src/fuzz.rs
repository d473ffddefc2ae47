//! Property tests of the node's edge: nothing a client or an operator types makes the
//! validators or flag parsers panic, and the validators accept exactly the valid requests.
//!
//! The validator properties draw a valid request (every field in its accepted range, optional
//! fields set or not) and, for about half the cases, break exactly one field in a targeted
//! way (just past a bound, far past it, a malformed value). A valid request must be accepted
//! with its values kept (or the documented defaults) and within the documented bounds; a
//! broken one must be refused with an error naming the broken field. [`both_branches`]
//! counts both outcomes over the run and fails unless each is at least a quarter of the
//! cases, so neither branch can silently stop being exercised.

use std::cell::Cell;
use std::collections::HashMap;

use flotilla_proto::control as pb;
use flotilla_proto::worker::ExecStart;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::config::{parse_initial_cluster, parse_warm};
use crate::error::NodeError;
use crate::sandbox::validate::{self, MAX_TIMEOUT_S};

/// Runs `test` over the cases `strategy` draws; `test` says whether the case was accepted.
/// Fails unless accepted and refused cases are each at least a quarter of the run.
fn both_branches<S: Strategy>(what: &str, strategy: S, test: impl Fn(S::Value) -> Result<bool, TestCaseError>) {
    let (accepted, refused) = (Cell::new(0usize), Cell::new(0usize));
    let mut runner = TestRunner::new(Config { failure_persistence: None, ..Config::default() });
    runner
        .run(&strategy, |case| {
            let count = if test(case)? { &accepted } else { &refused };
            count.set(count.get() + 1);
            Ok(())
        })
        .unwrap();
    let (accepted, refused) = (accepted.get(), refused.get());
    let cases = accepted + refused;
    eprintln!("{what}: {accepted} accepted, {refused} refused of {cases} cases");
    assert!(accepted * 4 >= cases && refused * 4 >= cases, "{what}: a branch is starved");
}

/// Checks the outcome of a drawn case: `broken` names the field a broken case broke.
fn outcome<T>(result: Result<T, NodeError>, broken: Option<&str>) -> Result<Option<T>, TestCaseError> {
    match (result, broken) {
        (Ok(v), None) => Ok(Some(v)),
        (Err(NodeError::InvalidArgument { field, .. }), Some(want)) if field.starts_with(want) => Ok(None),
        (Err(e), Some(want)) => Err(TestCaseError::fail(format!("refused, but not for {want}: {e:?}"))),
        (Ok(_), Some(want)) => Err(TestCaseError::fail(format!("accepted though {want} is broken"))),
        (Err(e), None) => Err(TestCaseError::fail(format!("valid, but refused: {e:?}"))),
    }
}

/// Up to two environment variables with valid names.
fn valid_env() -> impl Strategy<Value = HashMap<String, String>> {
    prop::collection::hash_map("[A-Za-z_][A-Za-z0-9_]{0,8}", "\\PC{0,8}", 0..3)
}

/// A valid create request: resources 0 (the default) or in range, optional fields drawn.
fn valid_sandbox() -> impl Strategy<Value = pb::CreateSandboxRequest> {
    (
        ("[a-z][a-z0-9._/-]{0,30}", prop::collection::vec("[a-z0-9 ./-]{1,20}", 0..4), valid_env()),
        (
            prop::option::of("/[a-z/]{0,12}"),
            prop_oneof![Just(0.0), Just(64.0), 0.01f64..=64.0],
            prop_oneof![Just(0u64), within(16, 1_048_576)],
        ),
        (
            within(0, MAX_TIMEOUT_S),
            within(0, MAX_TIMEOUT_S),
            any::<bool>(),
            prop::sample::select(vec!["", "runc", "runsc"]),
        ),
        (
            prop_oneof![Just(0u64), within(validate::MIN_SNAPSHOT_EVERY_S, MAX_TIMEOUT_S)],
            prop::option::of((1u32..=16).prop_map(|n| format!("any:{n}"))),
        ),
        prop::option::of("[a-rt-zA-Z0-9_.][A-Za-z0-9_.-]{0,40}"),
    )
        .prop_map(
            |(
                (image, command, env),
                (workdir, cpu, memory_mib),
                (timeout_s, idle_timeout_s, block_network, runtime),
                (snapshot_every_s, gpu),
                name,
            )| {
                let spec = pb::SandboxSpec {
                    image,
                    command,
                    env,
                    workdir,
                    cpu,
                    memory_mib,
                    timeout_s,
                    idle_timeout_s,
                    block_network,
                    runtime: runtime.to_string(),
                    snapshot_every_s,
                    gpu,
                    tags: HashMap::from([("team".to_string(), "ci".to_string())]),
                    ..Default::default()
                };
                pb::CreateSandboxRequest { spec: Some(spec), name, wait_running: false, request_id: String::new() }
            },
        )
}

/// One targeted way to break a create request, and the field the error must name.
type Break<R> = (fn(&mut R, &str), String, &'static str);

/// A breakage that needs no drawn value.
fn fixed<R: std::fmt::Debug>(apply: fn(&mut R, &str), field: &'static str) -> Just<Break<R>> {
    Just((apply, String::new(), field))
}

/// Values in `min..=max`, the bounds themselves often.
fn within(min: u64, max: u64) -> impl Strategy<Value = u64> {
    prop_oneof![Just(min), Just(max), min..=max]
}

/// Values past `max`: just past it, a little past it, or anywhere up to `u64::MAX`.
fn past(max: u64) -> impl Strategy<Value = u64> {
    prop_oneof![Just(max + 1), max + 1..=max.saturating_mul(2), max + 1..=u64::MAX]
}

type Sb = Break<pb::CreateSandboxRequest>;

fn break_sandbox() -> impl Strategy<Value = Sb> {
    fn s(r: &mut pb::CreateSandboxRequest) -> &mut pb::SandboxSpec {
        r.spec.as_mut().expect("drawn with a spec")
    }
    prop_oneof![
        prop::sample::select(vec!["", " ", "flotilla/ busybox", "a\tb"])
            .prop_map(|v| -> Sb { (|r, v| s(r).image = v.into(), v.into(), "spec.image") }),
        prop::sample::select(vec!["-1", "64.5", "1e300", "NaN", "inf", "-0.001"])
            .prop_map(|v| -> Sb { (|r, v| s(r).cpu = v.parse().unwrap(), v.into(), "spec.cpu") }),
        prop_oneof![1u64..16, past(1_048_576)]
            .prop_map(|v| -> Sb { (|r, v| s(r).memory_mib = v.parse().unwrap(), v.to_string(), "spec.memory_mib") }),
        past(MAX_TIMEOUT_S)
            .prop_map(|v| -> Sb { (|r, v| s(r).timeout_s = v.parse().unwrap(), v.to_string(), "spec.timeout_s") }),
        past(MAX_TIMEOUT_S).prop_map(|v| -> Sb {
            (|r, v| s(r).idle_timeout_s = v.parse().unwrap(), v.to_string(), "spec.idle_timeout_s")
        }),
        prop::sample::select(vec!["kata", "RUNC", "runsc "])
            .prop_map(|v| -> Sb { (|r, v| s(r).runtime = v.into(), v.into(), "spec.runtime") }),
        "[0-9-][A-Z0-9]{0,6}".prop_map(|v| -> Sb { (|r, v| _ = s(r).env.insert(v.into(), "x".into()), v, "spec.env") }),
        "[a-z.][a-z/]{0,8}".prop_map(|v| -> Sb { (|r, v| s(r).workdir = Some(v.into()), v, "spec.workdir") }),
        (1u64..validate::MIN_SNAPSHOT_EVERY_S).prop_map(|v| -> Sb {
            (|r, v| s(r).snapshot_every_s = v.parse().unwrap(), v.to_string(), "spec.snapshot_every_s")
        }),
        prop::sample::select(vec!["any:0", "any:17", "H100", "any:x"])
            .prop_map(|v| -> Sb { (|r, v| s(r).gpu = Some(v.into()), v.into(), "spec.gpu") }),
        prop::sample::select(vec!["snap".to_string(), "sn-".repeat(30)])
            .prop_map(|v| -> Sb { (|r, v| s(r).from_snapshot = Some(v.into()), v, "spec.from_snapshot") }),
        fixed::<pb::CreateSandboxRequest>(|r, _| s(r).command.push("a\0b".into()), "spec.command"),
        prop::sample::select(vec!["sb-1".to_string(), String::new(), "a b".into(), "x".repeat(64)])
            .prop_map(|v| -> Sb { (|r, v| r.name = Some(v.into()), v, "name") }),
    ]
}

/// A valid exec start, and one targeted way to break it.
fn valid_exec() -> impl Strategy<Value = ExecStart> {
    (
        "sb-[0-9a-f]{1,16}",
        "[a-z0-9-]{1,128}",
        prop::collection::vec("[a-z0-9 ./-]{1,20}", 1..4),
        valid_env(),
        within(0, MAX_TIMEOUT_S),
        prop::option::of("/[a-z/]{0,12}"),
    )
        .prop_map(|(sandbox_id, exec_id, command, env, timeout_s, workdir)| ExecStart {
            sandbox_id,
            exec_id,
            command,
            env,
            timeout_s,
            workdir,
            ..Default::default()
        })
}

type Ex = Break<ExecStart>;

fn break_exec() -> impl Strategy<Value = Ex> {
    prop_oneof![
        fixed::<ExecStart>(|r, _| r.sandbox_id.clear(), "sandbox_id"),
        prop::sample::select(vec![String::new(), "e".repeat(129)])
            .prop_map(|v| -> Ex { (|r, v| r.exec_id = v.into(), v, "exec_id") }),
        fixed::<ExecStart>(|r, _| r.command.clear(), "command"),
        fixed::<ExecStart>(|r, _| r.command[0].clear(), "command"),
        past(MAX_TIMEOUT_S)
            .prop_map(|v| -> Ex { (|r, v| r.timeout_s = v.parse().unwrap(), v.to_string(), "timeout_s") }),
        "[0-9-][A-Z0-9]{0,6}".prop_map(|v| -> Ex { (|r, v| _ = r.env.insert(v.into(), "x".into()), v, "env") }),
        "[a-z.][a-z/]{0,8}".prop_map(|v| -> Ex { (|r, v| r.workdir = Some(v.into()), v, "workdir") }),
    ]
}

#[test]
fn sandbox_validation_accepts_exactly_the_valid_requests() {
    both_branches("sandbox validation", (valid_sandbox(), prop::option::of(break_sandbox())), |(mut req, broken)| {
        if let Some((apply, value, _)) = &broken {
            apply(&mut req, value);
        }
        let Some((name, s)) = outcome(validate::sandbox(&req), broken.as_ref().map(|b| b.2))? else { return Ok(false) };
        let asked = req.spec.as_ref().expect("drawn with a spec");
        prop_assert!(s.cpu > 0.0 && s.cpu <= 64.0);
        prop_assert!((16..=1_048_576).contains(&s.memory_mib));
        prop_assert!(s.timeout_s <= MAX_TIMEOUT_S && s.idle_timeout_s <= MAX_TIMEOUT_S);
        prop_assert!(s.runtime == "runc" || s.runtime == "runsc");
        let cpu = if asked.cpu == 0.0 { validate::DEFAULT_CPU } else { asked.cpu };
        let memory = if asked.memory_mib == 0 { validate::DEFAULT_MEMORY_MIB } else { asked.memory_mib };
        prop_assert_eq!((s.cpu, s.memory_mib, s.timeout_s), (cpu, memory, asked.timeout_s));
        prop_assert_eq!(name, req.name.clone());
        Ok(true)
    });
}

#[test]
fn exec_validation_accepts_exactly_the_valid_requests() {
    both_branches("exec validation", (valid_exec(), prop::option::of(break_exec())), |(mut start, broken)| {
        if let Some((apply, value, _)) = &broken {
            apply(&mut start, value);
        }
        let Some(r) = outcome(validate::exec(&start), broken.as_ref().map(|b| b.2))? else { return Ok(false) };
        prop_assert!(!r.command.is_empty() && r.timeout_s <= MAX_TIMEOUT_S);
        prop_assert_eq!((&r.command, r.timeout_s), (&start.command, start.timeout_s));
        Ok(true)
    });
}

proptest! {
    #[test]
    fn flag_parsers_never_panic(text in "\\PC{0,60}") {
        let _ = parse_initial_cluster(&text);
        let _ = parse_warm(&text);
    }
}
