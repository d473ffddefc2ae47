//! Property tests of the node's edge: nothing a client or an operator types makes the
//! validators or flag parsers panic, and what they accept is within the documented bounds.

use std::collections::HashMap;

use flotilla_proto::control as pb;
use flotilla_proto::worker::ExecStart;
use proptest::prelude::*;

use crate::config::{parse_initial_cluster, parse_warm};
use crate::sandbox::validate;

fn any_spec() -> impl Strategy<Value = pb::SandboxSpec> {
    (
        "\\PC{0,40}",
        prop::collection::vec("\\PC{0,20}", 0..4),
        prop::collection::hash_map("\\PC{0,8}", "\\PC{0,8}", 0..3),
        prop::option::of("\\PC{0,20}"),
        any::<f64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<bool>(),
        "\\PC{0,8}",
    )
        .prop_map(
            |(image, command, env, workdir, cpu, memory_mib, timeout_s, idle_timeout_s, block_network, runtime)| {
                pb::SandboxSpec {
                    image,
                    command,
                    env,
                    workdir,
                    cpu,
                    memory_mib,
                    timeout_s,
                    idle_timeout_s,
                    block_network,
                    runtime,
                    tags: HashMap::new(),
                    ..Default::default()
                }
            },
        )
}

proptest! {
    #[test]
    fn sandbox_validation_never_panics_and_bounds_what_it_accepts(spec in any_spec(), name in prop::option::of("\\PC{0,70}")) {
        let req = pb::CreateSandboxRequest { spec: Some(spec), name, wait_running: false, request_id: String::new() };
        if let Ok((_, s)) = validate::sandbox(&req) {
            prop_assert!(s.cpu > 0.0 && s.cpu <= 64.0);
            prop_assert!((16..=1_048_576).contains(&s.memory_mib));
            prop_assert!(s.timeout_s <= validate::MAX_TIMEOUT_S);
            prop_assert!(s.runtime == "runc" || s.runtime == "runsc");
        }
    }

    #[test]
    fn exec_validation_never_panics(
        sandbox_id in "\\PC{0,20}",
        exec_id in "\\PC{0,140}",
        command in prop::collection::vec("\\PC{0,30}", 0..5),
        timeout_s in any::<u64>(),
        workdir in prop::option::of("\\PC{0,20}"),
    ) {
        let start = ExecStart { sandbox_id, exec_id, command, timeout_s, workdir, ..Default::default() };
        if let Ok(r) = validate::exec(&start) {
            prop_assert!(!r.command.is_empty() && r.timeout_s <= validate::MAX_TIMEOUT_S);
        }
    }

    #[test]
    fn flag_parsers_never_panic(text in "\\PC{0,60}") {
        let _ = parse_initial_cluster(&text);
        let _ = parse_warm(&text);
    }
}
