//! Property tests: no input makes the spec parser panic, and whatever it accepts validates
//! and survives the JSON round trip the server performs.

use proptest::prelude::*;

use crate::spec::AppSpec;

/// TOML-shaped text built from the spec's own keys and a few hostile values.
fn spec_like() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "image",
        "command",
        "mode",
        "cpu",
        "memory_mib",
        "gpu",
        "min_containers",
        "max_containers",
        "buffer_containers",
        "scaledown_window_s",
        "concurrency",
        "timeout_s",
        "retries",
        "env",
        "schedule",
        "overlap",
        "catch_up",
        "catch_up_window_s",
        "bogus",
    ]);
    let value = prop::sample::select(vec![
        "\"flotilla/busybox\"",
        "[\"sh\", \"-c\", \"true\"]",
        "[]",
        "-1",
        "0",
        "1e308",
        "nan",
        "\"exec\"",
        "\"H100:2\"",
        "\"any:0\"",
        "{ cron = \"*/5 * * * *\" }",
        "{ cron = \"61 * * * *\" }",
        "{ period = \"10s\" }",
        "{ period = \"0s\" }",
        "{ max = 99 }",
        "\"\\u0000\"",
        "{ A = \"b\" }",
        "\"skip\"",
        "\"all\"",
        "18446744073709551615",
        "{ cron = \"0 0 30 2 *\", timezone = \"Mars/Base\" }",
    ]);
    (prop::collection::vec((key, value), 0..12), "[a-z0-9-]{0,8}").prop_map(|(pairs, name)| {
        let body: String = pairs.into_iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
        format!("name = \"{name}\"\n[functions.f]\n{body}")
    })
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        let _ = AppSpec::from_toml_str(&text);
    }

    #[test]
    fn spec_shaped_text_is_accepted_only_when_valid(text in spec_like()) {
        if let Ok(spec) = AppSpec::from_toml_str(&text) {
            prop_assert!(spec.validate().is_ok());
            let json = serde_json::to_string(&spec).unwrap();
            let back: AppSpec = serde_json::from_str(&json).unwrap();
            prop_assert!(back.validate().is_ok());
        }
    }
}
