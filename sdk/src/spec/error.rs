//! The error type, and helpers that build field paths such as
//! `functions.tick.retries.max` or `functions.tick.command[0]`.

use std::ops::RangeInclusive;

/// Why an app spec was rejected.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// A field is missing, unknown, of the wrong type or out of range.
    /// `path` is the full dotted path of the field (keys that are not bare
    /// TOML keys are quoted, list items are written `[i]`).
    #[error("{path}: {message}")]
    Invalid {
        /// Full path of the offending field, e.g. `functions.tick.max_containers`.
        path: String,
        /// What is wrong with it, e.g. `must be >= min_containers (2)`.
        message: String,
    },
    /// The spec file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file that was being read.
        path: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The text is not valid TOML (the message carries line and column).
    #[error("invalid TOML: {0}")]
    Syntax(String),
}

impl SpecError {
    /// The field path of an [`SpecError::Invalid`] error, `None` otherwise.
    pub fn path(&self) -> Option<&str> {
        match self {
            SpecError::Invalid { path, .. } => Some(path),
            _ => None,
        }
    }
}

/// Shorthand for an [`SpecError::Invalid`].
pub(crate) fn invalid(path: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError::Invalid { path: path.into(), message: message.into() }
}

/// `parent.key`, quoting `key` the way TOML would when it is not a bare key.
pub(crate) fn join(parent: &str, key: &str) -> String {
    let bare = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare { key.to_string() } else { format!("{key:?}") };
    if parent.is_empty() {
        key
    } else {
        format!("{parent}.{key}")
    }
}

/// `parent[index]`.
pub(crate) fn index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// Checks that an integer lies in `range`, with a message that names the range.
pub(crate) fn check_range(path: &str, value: i128, range: &RangeInclusive<u64>) -> Result<(), SpecError> {
    let (lo, hi) = (*range.start(), *range.end());
    if value >= i128::from(lo) && value <= i128::from(hi) {
        return Ok(());
    }
    let message = if hi == u64::MAX {
        format!("must be >= {lo} (got {value})")
    } else {
        format!("must be between {lo} and {hi} (got {value})")
    };
    Err(invalid(path, message))
}

/// Turns a serde error raised while reading TOML into an [`SpecError::Invalid`]
/// whose path is the field the deserializer was in.
pub(crate) fn from_serde(err: serde_path_to_error::Error<toml::de::Error>) -> SpecError {
    use serde_path_to_error::Segment;
    let mut path = String::new();
    for segment in err.path().iter() {
        path = match segment {
            Segment::Map { key } => join(&path, key),
            Segment::Seq { index: i } => index(&path, *i),
            Segment::Enum { variant } => join(&path, variant),
            Segment::Unknown => join(&path, "?"),
        };
    }
    if path.is_empty() {
        path.push_str("(root)");
    }
    let raw = err.inner().message();
    // serde says "unknown field `x`, expected one of ..."; the path already
    // names `x`, so keep only the hint.
    let message = match raw.strip_prefix("unknown field `") {
        Some(rest) => match rest.split_once("`, ") {
            Some((_, hint)) => format!("unknown field, {hint}"),
            None => "unknown field".to_string(),
        },
        None => humanize(raw),
    };
    invalid(path, message)
}

/// Rewrites serde's Rust-flavoured expectations in TOML terms.
fn humanize(message: &str) -> String {
    if message == "wanted string or table" {
        // toml's wording for a unit enum (`mode`, `overlap`, `catch_up`).
        return "invalid type: expected a string".to_string();
    }
    let mut out = message.replace("expected i64", "expected an integer").replace("expected f64", "expected a number");
    // "expected struct RawSchedule" names a private type.
    if let Some(at) = out.find("expected struct Raw") {
        out.truncate(at);
        out.push_str("expected a table");
    }
    out
}
