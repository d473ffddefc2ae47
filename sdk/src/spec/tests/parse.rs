//! Parsing: the contract example, defaults, the two `retries` forms, JSON
//! round trips, files and syntax errors.

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};

use super::super::{
    defaults, AppSpec, CatchUp, FunctionSpec, GpuRequest, Mode, Overlap, RetryPolicy, Schedule, SpecError,
};
use super::app_with;

const CONTRACT: &str = r#"
name = "etl"

[functions.tick]
image = "flotilla/busybox"
command = ["sh", "-c", "cat; date +%s"]   # exec mode: the input on stdin, the output is stdout
mode = "exec"                            # exec | worker
cpu = 0.5                                # cores
memory_mib = 256
gpu = "any:1"                            # MODEL:N or any:N; omit for none
min_containers = 0
max_containers = 4
buffer_containers = 0
scaledown_window_s = 60
concurrency = 1                          # inputs at once per container
timeout_s = 60
retries = 2                              # or { max = 2, initial_delay_ms = 1000, backoff = 2.0 }
env = { KEY = "value" }
schedule = { cron = "*/5 * * * *", timezone = "UTC" }   # or { period = "10s" }
overlap = "allow"                        # allow | skip | buffer_one
catch_up = "latest"                      # none | latest | all
catch_up_window_s = 3600
"#;

fn contract_expected() -> AppSpec {
    let tick = FunctionSpec {
        image: "flotilla/busybox".into(),
        command: vec!["sh".into(), "-c".into(), "cat; date +%s".into()],
        mode: Mode::Exec,
        cpu: 0.5,
        memory_mib: 256,
        gpu: Some(GpuRequest { model: None, count: 1 }),
        min_containers: 0,
        max_containers: 4,
        buffer_containers: 0,
        scaledown_window_s: 60,
        concurrency: 1,
        timeout_s: 60,
        retries: RetryPolicy { max: 2, initial_delay_ms: 1000, backoff: 2.0 },
        env: BTreeMap::from([("KEY".to_string(), "value".to_string())]),
        schedule: Some(Schedule::Cron { expr: "*/5 * * * *".into(), timezone: "UTC".into() }),
        overlap: Overlap::Allow,
        catch_up: CatchUp::Latest,
        catch_up_window_s: 3600,
        runs_kept: 1000,
        build: None,
        writable_rootfs: false,
        code: None,
    };
    AppSpec { name: "etl".into(), functions: BTreeMap::from([("tick".to_string(), tick)]) }
}

#[test]
fn contract_example_parses_to_the_expected_spec() {
    let spec = AppSpec::from_toml_str(CONTRACT).unwrap();
    assert_eq!(spec, contract_expected());
}

#[test]
fn contract_example_round_trips_through_json() {
    let spec = AppSpec::from_toml_str(CONTRACT).unwrap();
    let json = serde_json::to_string(&spec).unwrap();
    let back: AppSpec = serde_json::from_str(&json).unwrap();
    assert_eq!(back, spec);
    back.validate().unwrap();
    // The JSON form uses the TOML spellings for enums and tags schedules.
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    let tick = &value["functions"]["tick"];
    assert_eq!(tick["mode"], "exec");
    assert_eq!(tick["catch_up"], "latest");
    assert_eq!(tick["schedule"]["kind"], "cron");
    assert_eq!(tick["schedule"]["expr"], "*/5 * * * *");
}

#[test]
fn rich_spec_round_trips_through_json() {
    let text = app_with(
        r#"mode = "worker"
gpu = "H100:2"
overlap = "buffer_one"
catch_up = "all"
concurrency = 8
schedule = { period = "1h30m", anchor = 2026-01-01T00:00:00+01:00 }"#,
    );
    let spec = AppSpec::from_toml_str(&text).unwrap();
    let tick = &spec.functions["tick"];
    assert_eq!(tick.mode, Mode::Worker);
    assert_eq!(tick.overlap, Overlap::BufferOne);
    assert_eq!(tick.catch_up, CatchUp::All);
    assert_eq!(tick.gpu, Some(GpuRequest { model: Some("H100".into()), count: 2 }));
    assert_eq!(
        tick.schedule,
        Some(Schedule::Period {
            every_ms: 5_400_000,
            anchor: Some(Utc.with_ymd_and_hms(2025, 12, 31, 23, 0, 0).unwrap()),
        })
    );
    let json = serde_json::to_string_pretty(&spec).unwrap();
    assert!(json.contains("\"overlap\": \"buffer_one\""), "{json}");
    assert!(json.contains("\"anchor\": \"2025-12-31T23:00:00Z\""), "{json}");
    assert_eq!(serde_json::from_str::<AppSpec>(&json).unwrap(), spec);
}

#[test]
fn omitted_keys_take_their_defaults() {
    let spec = AppSpec::from_toml_str(&app_with("")).unwrap();
    let expected = FunctionSpec::new("flotilla/busybox", vec!["true".into()]);
    assert_eq!(spec.functions["tick"], expected);
    assert_eq!(expected.cpu, 0.5);
    assert_eq!(expected.memory_mib, 256);
    assert_eq!(expected.max_containers, 4);
    assert_eq!(expected.retries, RetryPolicy { max: 0, initial_delay_ms: 1000, backoff: 2.0 });
    assert_eq!(expected.catch_up, CatchUp::None);
    assert_eq!(expected.catch_up_window_s, 3600);
    assert_eq!(expected.overlap, Overlap::Allow);
}

#[test]
fn retries_accepts_both_forms() {
    let cases: &[(&str, RetryPolicy)] = &[
        ("retries = 3", RetryPolicy { max: 3, initial_delay_ms: 1000, backoff: 2.0 }),
        ("retries = 0", RetryPolicy { max: 0, initial_delay_ms: 1000, backoff: 2.0 }),
        (
            "retries = { max = 2, initial_delay_ms = 250, backoff = 1.5 }",
            RetryPolicy { max: 2, initial_delay_ms: 250, backoff: 1.5 },
        ),
        ("retries = { max = 5 }", RetryPolicy { max: 5, initial_delay_ms: 1000, backoff: 2.0 }),
        ("retries = { backoff = 1 }", RetryPolicy { max: 0, initial_delay_ms: 1000, backoff: 1.0 }),
        (
            "[functions.tick.retries]\nmax = 4\ninitial_delay_ms = 0",
            RetryPolicy { max: 4, initial_delay_ms: 0, backoff: 2.0 },
        ),
    ];
    for (line, expected) in cases {
        let spec = AppSpec::from_toml_str(&app_with(line)).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(&spec.functions["tick"].retries, expected, "{line}");
    }
}

#[test]
fn schedule_forms() {
    let cases: &[(&str, Schedule)] = &[
        (
            r#"schedule = { cron = "0 9 * * MON-FRI" }"#,
            Schedule::Cron { expr: "0 9 * * MON-FRI".into(), timezone: defaults::TIMEZONE.into() },
        ),
        (
            r#"schedule = { cron = "0 9 * * *", timezone = "Europe/Berlin" }"#,
            Schedule::Cron { expr: "0 9 * * *".into(), timezone: "Europe/Berlin".into() },
        ),
        (r#"schedule = { period = "10s" }"#, Schedule::Period { every_ms: 10_000, anchor: None }),
        (r#"schedule = { period = "1500ms" }"#, Schedule::Period { every_ms: 1_500, anchor: None }),
        (
            r#"schedule = { period = "2d", anchor = "2026-03-01T12:00:00Z" }"#,
            Schedule::Period {
                every_ms: 172_800_000,
                anchor: Some(Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()),
            },
        ),
    ];
    for (line, expected) in cases {
        let spec = AppSpec::from_toml_str(&app_with(line)).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(spec.functions["tick"].schedule.as_ref(), Some(expected), "{line}");
    }
}

#[test]
fn gpu_request_parses_and_displays() {
    for (text, model, count) in [
        ("any:1", None, 1),
        ("ANY:4", None, 4),
        ("H100:2", Some("H100"), 2),
        ("a10g_24gb-x:16", Some("a10g_24gb-x"), 16),
    ] {
        let gpu: GpuRequest = text.parse().unwrap();
        assert_eq!(gpu, GpuRequest { model: model.map(String::from), count });
    }
    assert_eq!(GpuRequest { model: None, count: 1 }.to_string(), "any:1");
    assert_eq!(GpuRequest { model: Some("H100".into()), count: 2 }.to_string(), "H100:2");
    for bad in ["H100", ":1", "H100:", "H100:x", "H 100:1", "H100:-1", "H100:1:2"] {
        assert!(bad.parse::<GpuRequest>().is_err(), "{bad}");
    }
}

#[test]
fn durations_parse_and_format() {
    use super::super::{format_duration_ms, parse_duration_ms};
    let cases = [
        ("500ms", 500),
        ("10s", 10_000),
        ("5m", 300_000),
        ("1h", 3_600_000),
        ("1h30m", 5_400_000),
        ("2d", 172_800_000),
        ("1d2h3m4s5ms", 93_784_005),
        ("90s", 90_000),
    ];
    for (text, ms) in cases {
        assert_eq!(parse_duration_ms(text), Ok(ms), "{text}");
    }
    for bad in ["", "10", "s", "1.5h", "-1s", "1 h", "30m1h", "1h1h", "1w", "10S", "99999999999999999999d"] {
        assert!(parse_duration_ms(bad).is_err(), "{bad:?} should be rejected");
    }
    assert_eq!(format_duration_ms(0), "0s");
    assert_eq!(format_duration_ms(5_400_000), "1h30m");
    assert_eq!(format_duration_ms(93_784_005), "1d2h3m4s5ms");
    for ms in [1, 999, 1_000, 61_001, 86_400_000, u64::MAX] {
        assert_eq!(parse_duration_ms(&format_duration_ms(ms)), Ok(ms));
    }
}

#[test]
fn toml_file_is_read_and_missing_file_is_an_io_error() {
    let dir = std::env::temp_dir().join(format!("flotilla-spec-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("app.toml");
    std::fs::write(&file, CONTRACT).unwrap();
    assert_eq!(AppSpec::from_toml_file(&file).unwrap(), contract_expected());
    std::fs::remove_dir_all(&dir).unwrap();
    match AppSpec::from_toml_file(&file) {
        Err(e @ SpecError::Io { .. }) => assert!(e.to_string().starts_with("cannot read "), "{e}"),
        other => panic!("expected Io, got {other:?}"),
    }
}

#[test]
fn toml_syntax_error_is_reported_as_syntax() {
    match AppSpec::from_toml_str("name = \"etl\"\n[functions.tick\n") {
        Err(e @ SpecError::Syntax(_)) => {
            assert!(e.to_string().starts_with("invalid TOML: "), "{e}");
            assert!(e.to_string().contains("line 2"), "{e}");
        }
        other => panic!("expected Syntax, got {other:?}"),
    }
}

#[test]
fn validate_checks_specs_built_in_code() {
    let mut spec = contract_expected();
    spec.validate().unwrap();
    spec.functions.get_mut("tick").unwrap().min_containers = 9;
    let err = spec.validate().unwrap_err();
    assert_eq!(err.path(), Some("functions.tick.max_containers"));
    assert_eq!(err.to_string(), "functions.tick.max_containers: must be >= min_containers (9)");
}

#[test]
fn an_image_table_is_built_at_deploy_and_its_context_follows_the_spec_file() {
    let text = "name = \"b\"\n[functions.f]\nimage = { context = \"ctx\" }\ncommand = [\"true\"]\n";
    let spec = AppSpec::from_toml_str(text).unwrap();
    let f = &spec.functions["f"];
    assert_eq!(f.image, "");
    let build = f.build.clone().unwrap();
    assert_eq!((build.dockerfile.as_str(), build.context.as_str()), ("Dockerfile", "ctx"));
    let dir = std::env::temp_dir().join(format!("flotilla-spec-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("app.toml"), text).unwrap();
    let from_file = AppSpec::from_toml_file(dir.join("app.toml")).unwrap();
    let context = from_file.functions["f"].build.clone().unwrap().context;
    assert_eq!(context, dir.join("ctx").display().to_string());
    std::fs::remove_dir_all(&dir).unwrap();
    // A plain image has no build, and its JSON form is unchanged (no `build` key).
    let plain = AppSpec::from_toml_str(CONTRACT).unwrap();
    assert!(plain.functions.values().all(|f| f.build.is_none()));
    assert!(!serde_json::to_string(&plain).unwrap().contains("build"));
}
