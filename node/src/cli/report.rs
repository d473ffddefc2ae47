//! How a failed command is reported: its exit code, and one message on stderr, as text
//! (`error: …`) or, with `-o json`, as one JSON object
//! `{"error": "…", "code": "not_found|invalid_argument|…"}` that scripts can branch on.
//!
//! A closed stdout (`flotilla runs ls | head -1`) is not a failure: the command ends quietly
//! with exit code 141, the code a shell shows for a process ended by SIGPIPE. Rust ignores
//! SIGPIPE, so a write to a closed pipe fails with `BrokenPipe`; writes that return errors
//! are caught here, and `println!`, which panics instead, is caught by [`quiet_broken_pipe`].

use serde::Serialize;

use super::Format;

/// Exit code for a closed stdout: 128 + SIGPIPE (13), as if the signal had ended the process.
pub const EXIT_BROKEN_PIPE: u8 = 141;

/// The process exit code for an error: 2 for bad input, 141 for a closed stdout, 1 for
/// everything else.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    match code(e) {
        "invalid_argument" => 2,
        "broken_pipe" => EXIT_BROKEN_PIPE,
        _ => 1,
    }
}

/// The stable, machine-readable name of what went wrong (the `code` of a JSON error).
pub fn code(e: &anyhow::Error) -> &'static str {
    for cause in e.chain() {
        if cause.downcast_ref::<crate::config::ConfigError>().is_some()
            || cause.downcast_ref::<flotilla::spec::SpecError>().is_some()
        {
            return "invalid_argument";
        }
        if let Some(e) = cause.downcast_ref::<flotilla::Error>() {
            return sdk_code(e);
        }
        if cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) {
            return "broken_pipe";
        }
    }
    "internal"
}

/// The code of an SDK error: the gRPC status names in snake case, plus `function_failed`.
fn sdk_code(e: &flotilla::Error) -> &'static str {
    use flotilla::Error as E;
    match e {
        E::NotFound(_) => "not_found",
        E::InvalidArgument(_) | E::Spec(_) => "invalid_argument",
        E::AlreadyExists(_) => "already_exists",
        E::FailedPrecondition(_) => "failed_precondition",
        E::NoCapacity(_) => "resource_exhausted",
        E::Unavailable(_) => "unavailable",
        E::Timeout(_) => "deadline_exceeded",
        E::FunctionFailed(_) => "function_failed",
        E::Unauthenticated(_) => "unauthenticated",
        E::Internal(_) => "internal",
    }
}

/// One JSON error, as `-o json` prints it on stderr.
#[derive(Serialize)]
struct JsonError<'a> {
    error: String,
    code: &'a str,
}

/// Prints `e` on stderr as `format` asks and returns the exit code. A closed stdout prints
/// nothing.
pub fn report(e: &anyhow::Error, format: Format) -> u8 {
    let code = code(e);
    if code == "broken_pipe" {
        return EXIT_BROKEN_PIPE;
    }
    match format {
        Format::Text => eprintln!("error: {e:#}"),
        Format::Json => {
            let json = JsonError { error: format!("{e:#}"), code };
            eprintln!("{}", serde_json::to_string(&json).unwrap_or_else(|_| format!("{{\"code\": \"{code}\"}}")));
        }
    }
    exit_code(e)
}

/// Makes a `println!` to a closed stdout end the process quietly with [`EXIT_BROKEN_PIPE`]
/// instead of panicking with exit code 101; every other panic is reported as before.
pub fn quiet_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(EXIT_BROKEN_PIPE.into());
        }
        default(info);
    }));
}
