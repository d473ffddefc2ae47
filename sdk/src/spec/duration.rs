//! Human-friendly durations such as `"500ms"`, `"10s"`, `"5m"`, `"1h30m"`
//! and `"2d"`, used by `schedule.period`.
//!
//! Grammar: one or more `<integer><unit>` groups with no spaces, units in
//! strictly decreasing size, each at most once. Units: `d` (24 h), `h`, `m`,
//! `s`, `ms`. Fractions and signs are not accepted (`"1.5h"` is written
//! `"1h30m"`).

/// Units from largest to smallest, with their length in milliseconds.
const UNITS: [(&str, u64); 5] = [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];

/// Parses a duration string into milliseconds.
///
/// The error is a sentence suitable to follow a field path.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let bad = |why: &str| {
        format!("invalid duration {text:?}: {why} (expected e.g. \"10s\", \"5m\", \"1h30m\"; units d, h, m, s, ms)")
    };
    if text.is_empty() {
        return Err(bad("empty"));
    }
    let mut rest = text;
    let mut total: u64 = 0;
    // Index into UNITS of the smallest unit seen so far; the next must be smaller.
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(bad("expected a number"));
        }
        let number: u64 = rest[..digits].parse().map_err(|_| bad("number too large"))?;
        rest = &rest[digits..];
        let letters = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_alphabetic()).len();
        let unit = &rest[..letters];
        rest = &rest[letters..];
        if unit.is_empty() {
            return Err(bad("missing unit after a number"));
        }
        let Some(pos) = UNITS.iter().position(|(name, _)| *name == unit) else {
            return Err(bad(&format!("unknown unit {unit:?}")));
        };
        if pos < next_unit {
            return Err(bad("units must go from largest to smallest, each at most once"));
        }
        next_unit = pos + 1;
        total =
            number.checked_mul(UNITS[pos].1).and_then(|ms| total.checked_add(ms)).ok_or_else(|| bad("too large"))?;
    }
    Ok(total)
}

/// Formats milliseconds in the same syntax, largest units first:
/// `5_400_000` gives `"1h30m"`, `0` gives `"0s"`.
/// [`parse_duration_ms`] reads the result back to the same value.
pub fn format_duration_ms(ms: u64) -> String {
    if ms == 0 {
        return "0s".to_string();
    }
    let mut rest = ms;
    let mut out = String::new();
    for (name, size) in UNITS {
        let count = rest / size;
        if count > 0 {
            out.push_str(&format!("{count}{name}"));
            rest -= count * size;
        }
    }
    out
}
