//! Rules for the app name, function names and environment variable names.

use super::limits;

/// App names: 1-63 characters of `[a-z0-9-]`, starting with a letter or digit.
pub(crate) fn check_app_name(name: &str) -> Result<(), String> {
    check_name(name, false).map_err(|()| {
        format!("must be 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit (got {name:?})")
    })
}

/// Function names: like app names, but `_` is allowed too.
pub(crate) fn check_function_name(name: &str) -> Result<(), String> {
    check_name(name, true).map_err(|()| {
        format!("invalid function name: must be 1-63 characters of a-z, 0-9, '-' and '_', starting with a letter or digit (got {name:?})")
    })
}

fn check_name(name: &str, underscore: bool) -> Result<(), ()> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (underscore && c == '_');
    let first_ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if limits::NAME_LEN.contains(&name.len()) && first_ok && name.chars().all(allowed) {
        Ok(())
    } else {
        Err(())
    }
}

/// Environment variable names: `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn check_env_key(key: &str) -> Result<(), String> {
    let mut chars = key.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err("invalid environment variable name: must match [A-Za-z_][A-Za-z0-9_]*".to_string())
    }
}
