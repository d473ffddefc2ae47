//! Unit tests of the spec module, table-style where possible.

mod fires;
mod parse;
mod rules;

use super::{AppSpec, SpecError};

/// A valid app with one function `tick`; `extra` lines go into its table
/// and replace the default `image` or `command` when they set one.
fn app_with(extra: &str) -> String {
    let sets = |key: &str| extra.lines().any(|l| l.starts_with(&format!("{key} =")));
    let mut text = String::from("name = \"etl\"\n\n[functions.tick]\n");
    if !sets("image") {
        text.push_str("image = \"flotilla/busybox\"\n");
    }
    if !sets("command") {
        text.push_str("command = [\"true\"]\n");
    }
    text.push_str(extra);
    text.push('\n');
    text
}

/// Parses `text`, expecting an `Invalid` error; returns (path, message).
fn invalid_of(text: &str) -> (String, String) {
    match AppSpec::from_toml_str(text) {
        Err(SpecError::Invalid { path, message }) => (path, message),
        other => panic!("expected an Invalid error for\n{text}\ngot {other:?}"),
    }
}
mod fuzz;
