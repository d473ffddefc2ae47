//! Every validation rule, rejected with the right field path.

use super::super::{AppSpec, GpuRequest, RetryPolicy, Schedule};
use super::{app_with, invalid_of};

/// (lines added to `[functions.tick]`, expected path, expected message fragment)
const FUNCTION_CASES: &[(&str, &str, &str)] = &[
    // image
    (r#"image = """#, "functions.tick.image", "must not be empty"),
    (r#"image = "busy box""#, "functions.tick.image", "whitespace"),
    (r#"image = "Flotilla/Busybox""#, "functions.tick.image", "path component \"Flotilla\""),
    (r#"image = "busybox:""#, "functions.tick.image", "tag"),
    (r#"image = "busybox:-x""#, "functions.tick.image", "tag"),
    (r#"image = "busybox@sha256:abc""#, "functions.tick.image", "digest"),
    (r#"image = "a//b""#, "functions.tick.image", "path component \"\""),
    (r#"image = "a..b""#, "functions.tick.image", "path component"),
    (r#"image = "bad_host:x:1/a""#, "functions.tick.image", "registry"),
    (r#"image = 5"#, "functions.tick.image", "invalid type"),
    (r#"image = { dockerfile = "Dockerfile" }"#, "functions.tick.image.context", "required"),
    (r#"image = { context = "" }"#, "functions.tick.image.context", "must not be empty"),
    (r#"image = { context = ".", dockerfile = "" }"#, "functions.tick.image.dockerfile", "must not be empty"),
    (r#"image = { context = ".", file = "x" }"#, "functions.tick.image.file", "unknown field"),
    // command
    (r#"command = []"#, "functions.tick.command", "must be a non-empty array"),
    (r#"command = ["", "x"]"#, "functions.tick.command[0]", "must not be empty"),
    ("command = [\"sh\", \"a\\u0000b\"]", "functions.tick.command[1]", "NUL"),
    (r#"command = "sh -c true""#, "functions.tick.command", "invalid type"),
    (r#"command = ["sh", 1]"#, "functions.tick.command[1]", "invalid type"),
    // mode, overlap, catch_up
    ("mode = 5", "functions.tick.mode", "invalid type: expected a string"),
    (r#"mode = "batch""#, "functions.tick.mode", "unknown variant `batch`"),
    (r#"overlap = "queue""#, "functions.tick.overlap", "unknown variant"),
    (r#"catch_up = "some""#, "functions.tick.catch_up", "unknown variant"),
    // cpu
    ("cpu = 0", "functions.tick.cpu", "must be a finite number > 0 and <= 256 (got 0)"),
    ("cpu = -1.5", "functions.tick.cpu", "(got -1.5)"),
    ("cpu = 256.5", "functions.tick.cpu", "<= 256"),
    ("cpu = nan", "functions.tick.cpu", "finite"),
    ("cpu = inf", "functions.tick.cpu", "finite"),
    (r#"cpu = "1""#, "functions.tick.cpu", "invalid type: string \"1\", expected a number"),
    // memory_mib
    ("memory_mib = 15", "functions.tick.memory_mib", "must be between 16 and 1048576 (got 15)"),
    ("memory_mib = 1048577", "functions.tick.memory_mib", "(got 1048577)"),
    ("memory_mib = -1", "functions.tick.memory_mib", "(got -1)"),
    ("memory_mib = 1.5", "functions.tick.memory_mib", "invalid type"),
    // gpu
    (r#"gpu = "H100""#, "functions.tick.gpu", "expected MODEL:N or any:N"),
    (r#"gpu = "any:0""#, "functions.tick.gpu", "GPU count must be between 1 and 16 (got 0)"),
    (r#"gpu = "H100:17""#, "functions.tick.gpu", "(got 17)"),
    (r#"gpu = "H.100:1""#, "functions.tick.gpu", "expected MODEL:N"),
    (r#"gpu = "H100:99999999999""#, "functions.tick.gpu", "GPU count"),
    // scaling
    ("min_containers = 2\nmax_containers = 1", "functions.tick.max_containers", "must be >= min_containers (2)"),
    ("min_containers = 5", "functions.tick.max_containers", "must be >= min_containers (5)"),
    ("max_containers = 0", "functions.tick.max_containers", "must be between 1 and 1000 (got 0)"),
    ("max_containers = 1001", "functions.tick.max_containers", "(got 1001)"),
    ("min_containers = -1", "functions.tick.min_containers", "(got -1)"),
    ("min_containers = 5000000000", "functions.tick.min_containers", "must be between 0 and 1000"),
    ("buffer_containers = 5", "functions.tick.buffer_containers", "must be <= max_containers (4)"),
    ("scaledown_window_s = 0", "functions.tick.scaledown_window_s", "must be >= 1 (got 0)"),
    ("concurrency = 0", "functions.tick.concurrency", "must be between 1 and 1000 (got 0)"),
    ("concurrency = 1001", "functions.tick.concurrency", "(got 1001)"),
    ("timeout_s = 0", "functions.tick.timeout_s", "must be between 1 and 86400 (got 0)"),
    ("timeout_s = 86401", "functions.tick.timeout_s", "(got 86401)"),
    // retries
    ("retries = { max = \"x\" }", "functions.tick.retries.max", "expected an integer"),
    ("retries = 11", "functions.tick.retries", "must be between 0 and 10 (got 11)"),
    ("retries = -1", "functions.tick.retries", "(got -1)"),
    ("retries = 1.5", "functions.tick.retries", "expected an integer or a table"),
    (r#"retries = "2""#, "functions.tick.retries", "expected an integer or a table"),
    ("retries = { max = 11 }", "functions.tick.retries.max", "must be between 0 and 10 (got 11)"),
    ("retries = { initial_delay_ms = 3600001 }", "functions.tick.retries.initial_delay_ms", "(got 3600001)"),
    ("retries = { backoff = 0.5 }", "functions.tick.retries.backoff", "must be a finite number >= 1.0 (got 0.5)"),
    ("retries = { backoff = inf }", "functions.tick.retries.backoff", "finite"),
    ("retries = { max = 1, jitter = true }", "functions.tick.retries.jitter", "unknown field"),
    // env
    (r#"env = { "1X" = "v" }"#, "functions.tick.env.1X", "invalid environment variable name"),
    (r#"env = { "A-B" = "v" }"#, "functions.tick.env.A-B", "invalid environment variable name"),
    (r#"env = { "A.B" = "v" }"#, "functions.tick.env.\"A.B\"", "invalid environment variable name"),
    (r#"env = { "" = "v" }"#, "functions.tick.env.\"\"", "invalid environment variable name"),
    ("env = { A = \"x\\u0000y\" }", "functions.tick.env.A", "NUL"),
    ("env = { A = 1 }", "functions.tick.env.A", "invalid type"),
    // schedule shape
    ("schedule = {}", "functions.tick.schedule", "exactly one of `cron` or `period`"),
    (r#"schedule = { cron = "* * * * *", period = "10s" }"#, "functions.tick.schedule", "not both"),
    (r#"schedule = { timezone = "UTC" }"#, "functions.tick.schedule", "exactly one"),
    (
        r#"schedule = { cron = "* * * * *", anchor = 2026-01-01T00:00:00Z }"#,
        "functions.tick.schedule.anchor",
        "only valid with `period`",
    ),
    (
        r#"schedule = { period = "10s", timezone = "UTC" }"#,
        "functions.tick.schedule.timezone",
        "only valid with `cron`",
    ),
    (r#"schedule = { cron = "* * * * *", tz = "UTC" }"#, "functions.tick.schedule.tz", "unknown field"),
    (r#"schedule = "*/5 * * * *""#, "functions.tick.schedule", "expected a table"),
    // cron text
    (r#"schedule = { cron = "" }"#, "functions.tick.schedule.cron", "invalid cron expression"),
    (r#"schedule = { cron = "every minute" }"#, "functions.tick.schedule.cron", "invalid cron expression"),
    (r#"schedule = { cron = "* * * *" }"#, "functions.tick.schedule.cron", "invalid cron expression"),
    (r#"schedule = { cron = "0 0 * * * * 2026" }"#, "functions.tick.schedule.cron", "invalid cron expression"),
    (r#"schedule = { cron = "60 * * * * *" }"#, "functions.tick.schedule.cron", "invalid cron expression"),
    (r#"schedule = { cron = "60 * * * *" }"#, "functions.tick.schedule.cron", "invalid cron expression"),
    (r#"schedule = { cron = "* 24 * * *" }"#, "functions.tick.schedule.cron", "invalid cron expression"),
    (r#"schedule = { cron = "* * * 13 *" }"#, "functions.tick.schedule.cron", "invalid cron expression"),
    (r#"schedule = { cron = "* * * * 8" }"#, "functions.tick.schedule.cron", "invalid cron expression"),
    (r#"schedule = { cron = "* * * * FUN" }"#, "functions.tick.schedule.cron", "invalid cron expression"),
    (r#"schedule = { cron = "0 0 30 2 *" }"#, "functions.tick.schedule.cron", "never fires"),
    // timezone
    (
        r#"schedule = { cron = "* * * * *", timezone = "Mars/Olympus" }"#,
        "functions.tick.schedule.timezone",
        "unknown time zone \"Mars/Olympus\"",
    ),
    (r#"schedule = { cron = "* * * * *", timezone = "" }"#, "functions.tick.schedule.timezone", "unknown time zone"),
    (
        r#"schedule = { cron = "* * * * *", timezone = "+02:00" }"#,
        "functions.tick.schedule.timezone",
        "unknown time zone",
    ),
    // period
    (r#"schedule = { period = "500ms" }"#, "functions.tick.schedule.period", "must be between 1s and 366d (got 500ms)"),
    (r#"schedule = { period = "0s" }"#, "functions.tick.schedule.period", "(got 0s)"),
    (r#"schedule = { period = "367d" }"#, "functions.tick.schedule.period", "(got 367d)"),
    (r#"schedule = { period = "10" }"#, "functions.tick.schedule.period", "invalid duration \"10\""),
    (r#"schedule = { period = "1.5h" }"#, "functions.tick.schedule.period", "invalid duration"),
    (r#"schedule = { period = "10 s" }"#, "functions.tick.schedule.period", "invalid duration"),
    (r#"schedule = { period = 10 }"#, "functions.tick.schedule.period", "invalid type"),
    (r#"schedule = { period = "10s", anchor = "yesterday" }"#, "functions.tick.schedule.anchor", "RFC 3339"),
    (
        r#"schedule = { period = "10s", anchor = 2026-01-01T00:00:00 }"#,
        "functions.tick.schedule.anchor",
        "with an offset",
    ),
    (r#"schedule = { period = "10s", anchor = 5 }"#, "functions.tick.schedule.anchor", "(got integer)"),
    // catch-up window
    ("catch_up_window_s = 604801", "functions.tick.catch_up_window_s", "must be between 0 and 604800 (got 604801)"),
    ("catch_up_window_s = -1", "functions.tick.catch_up_window_s", "(got -1)"),
    // unknown keys inside a function
    ("schedul = { cron = \"* * * * *\" }", "functions.tick.schedul", "unknown field, expected one of"),
    ("cpus = 1", "functions.tick.cpus", "unknown field"),
    (
        "[functions.tick.schedule]\ncron = \"* * * * *\"\nzone = \"UTC\"",
        "functions.tick.schedule.zone",
        "unknown field",
    ),
];

#[test]
fn function_rules_name_the_field() {
    for (lines, path, fragment) in FUNCTION_CASES {
        let (got_path, message) = invalid_of(&app_with(lines));
        assert_eq!(&got_path, path, "for {lines:?}: {message}");
        assert!(message.contains(fragment), "for {lines:?}: {message:?} lacks {fragment:?}");
    }
}

/// (whole document, expected path, expected message fragment)
const APP_CASES: &[(&str, &str, &str)] = &[
    ("[functions.f]\nimage = \"a\"\ncommand = [\"x\"]", "name", "required"),
    ("name = \"\"\n[functions.f]\nimage = \"a\"\ncommand = [\"x\"]", "name", "must be 1-63 characters"),
    ("name = \"Etl\"\n[functions.f]\nimage = \"a\"\ncommand = [\"x\"]", "name", "(got \"Etl\")"),
    ("name = \"-etl\"\n[functions.f]\nimage = \"a\"\ncommand = [\"x\"]", "name", "starting with a letter or digit"),
    ("name = \"e_tl\"\n[functions.f]\nimage = \"a\"\ncommand = [\"x\"]", "name", "must be 1-63"),
    ("name = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\n[functions.f]\nimage = \"a\"\ncommand = [\"x\"]", "name", "must be 1-63"),
    ("name = \"etl\"", "functions", "at least one function is required"),
    ("name = \"etl\"\n[functions]", "functions", "at least one function is required"),
    ("name = \"etl\"\n[functions.Tick]\nimage = \"a\"\ncommand = [\"x\"]", "functions.Tick", "invalid function name"),
    ("name = \"etl\"\n[functions._tick]\nimage = \"a\"\ncommand = [\"x\"]", "functions._tick", "invalid function name"),
    ("name = \"etl\"\n[functions.\"a.b\"]\nimage = \"a\"\ncommand = [\"x\"]", "functions.\"a.b\"", "invalid function name"),
    ("name = \"etl\"\n[functions.f]\ncommand = [\"x\"]", "functions.f.image", "required"),
    ("name = \"etl\"\n[functions.f]\nimage = \"a\"", "functions.f.command", "required"),
    ("name = \"etl\"\nversion = 2\n[functions.f]\nimage = \"a\"\ncommand = [\"x\"]", "version", "unknown field, expected `name` or `functions`"),
    ("name = \"etl\"\nfunctions = 3", "functions", "invalid type"),
    ("name = 5", "name", "invalid type: integer `5`, expected a string"),
    ("name = \"etl\"\nfunctions = { tick = 5 }", "functions.tick", "expected a table"),
    ("name = \"etl\"\n[functions.a_b]\nimage = \"a\"\ncommand = [\"x\"]\n[functions.b]\nimage = \"a\"\ncommand = [\"x\"]\nmax_containers = 0", "functions.b.max_containers", "(got 0)"),
];

#[test]
fn app_rules_name_the_field() {
    for (text, path, fragment) in APP_CASES {
        let (got_path, message) = invalid_of(text);
        assert_eq!(&got_path, path, "for {text:?}: {message}");
        assert!(message.contains(fragment), "for {text:?}: {message:?} lacks {fragment:?}");
    }
}

#[test]
fn error_display_is_path_colon_message() {
    let text = app_with("min_containers = 2\nmax_containers = 1");
    let err = AppSpec::from_toml_str(&text).unwrap_err();
    assert_eq!(err.to_string(), "functions.tick.max_containers: must be >= min_containers (2)");
    let err = AppSpec::from_toml_str(&app_with("schedul = 1")).unwrap_err();
    assert!(err.to_string().starts_with("functions.tick.schedul: unknown field"), "{err}");
}

#[test]
fn accepted_edge_values() {
    let ok = [
        "cpu = 256",
        "cpu = 0.001",
        "memory_mib = 16",
        "memory_mib = 1048576",
        "gpu = \"H100:16\"",
        "min_containers = 4\nmax_containers = 4\nbuffer_containers = 4",
        "max_containers = 1000",
        "mode = \"worker\"\nconcurrency = 1000",
        "timeout_s = 86400",
        "retries = 10",
        "retries = { max = 10, initial_delay_ms = 3600000, backoff = 1.0 }",
        "env = { _A1 = \"\", a = \"x y\" }",
        "catch_up_window_s = 604800",
        "catch_up_window_s = 0",
        "schedule = { period = \"1s\" }",
        "schedule = { period = \"366d\" }",
        "schedule = { cron = \"0 0 29 2 *\" }",
        "schedule = { cron = \"@daily\" }",
        "schedule = { cron = \"@hourly\" }",
        "schedule = { cron = \"@weekly\" }",
        "schedule = { cron = \"@monthly\" }",
        "schedule = { cron = \"*/10 * * * * *\" }",
        "schedule = { cron = \"30 0 9 * * MON\", timezone = \"Europe/Berlin\" }",
        "schedule = { cron = \"0 12 * * 7\" }",
        "schedule = { cron = \"0 9 * * mon-fri\" }",
        "schedule = { cron = \"*/15 9-17 1,15 JAN-JUN *\", timezone = \"America/New_York\" }",
        "image = \"ghcr.io/org/app:1.2.3\"",
        "image = \"localhost:5000/team/app_x__y--z:latest\"",
        "image = \"registry.example.com:443/a/b/c\"",
        "image = \"busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"",
        "image = \"busybox:1.36-musl@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"",
    ];
    for line in ok {
        if let Err(e) = AppSpec::from_toml_str(&app_with(line)) {
            panic!("{line:?} should be accepted: {e}");
        }
    }
    let names = "name = \"0-etl\"\n[functions.a-b_c9]\nimage = \"a\"\ncommand = [\"x\"]";
    AppSpec::from_toml_str(names).unwrap();
}

#[test]
fn validate_rejects_bad_public_values() {
    let base = AppSpec::from_toml_str(&app_with("")).unwrap();
    type Edit = fn(&mut super::super::FunctionSpec);
    let cases: &[(Edit, &str, &str)] = &[
        (|f| f.gpu = Some(GpuRequest { model: Some("any model".into()), count: 1 }), "functions.tick.gpu", "GPU model"),
        (|f| f.gpu = Some(GpuRequest { model: None, count: 0 }), "functions.tick.gpu", "GPU count"),
        (|f| f.retries = RetryPolicy { max: 11, ..RetryPolicy::default() }, "functions.tick.retries.max", "(got 11)"),
        (|f| f.retries.backoff = f64::NAN, "functions.tick.retries.backoff", "finite"),
        (|f| f.command = vec![], "functions.tick.command", "non-empty"),
        (
            |f| f.schedule = Some(Schedule::Period { every_ms: 999, anchor: None }),
            "functions.tick.schedule.period",
            "(got 999ms)",
        ),
        (
            |f| f.schedule = Some(Schedule::Cron { expr: "* * * * *".into(), timezone: "utc".into() }),
            "functions.tick.schedule.timezone",
            "unknown time zone",
        ),
        (
            |f| f.schedule = Some(Schedule::Cron { expr: "0 0 0 * * * *".into(), timezone: "UTC".into() }),
            "functions.tick.schedule.cron",
            "invalid cron",
        ),
    ];
    for (i, (edit, path, fragment)) in cases.iter().enumerate() {
        let mut spec = base.clone();
        edit(spec.functions.get_mut("tick").unwrap());
        let err = spec.validate().unwrap_err();
        assert_eq!(err.path(), Some(*path), "case {i}: {err}");
        assert!(err.to_string().contains(fragment), "case {i}: {err}");
    }
}
