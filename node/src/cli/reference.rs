//! Reference material generated from the clap definitions, so it cannot drift from the
//! parser: the Markdown CLI reference checked in as `docs/reference/cli.md` (a unit test
//! regenerates it and fails when the checked-in file differs; `UPDATE_DOCS=1` rewrites it),
//! man pages (`flotilla man DIR`, clap_mangen) and shell completions (`flotilla completions
//! SHELL`, clap_complete).

#[cfg(test)]
use std::fmt::Write as _;
use std::path::Path;

use clap::CommandFactory;

use super::Cli;

/// Writes the completion script for `shell` to `out`.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    // The plain tree: completions must offer the global options after a subcommand too.
    clap_complete::generate(shell, &mut Cli::command(), "flotilla", out);
    Ok(())
}

/// Writes one man page per command (`flotilla.1`, `flotilla-sandbox-create.1`, …) into `dir`.
pub fn man_pages(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| flotilla::Error::InvalidArgument(format!("dir: {}: {e}", dir.display())))?;
    clap_mangen::generate_to(Cli::command_tree(), dir)?;
    Ok(())
}

#[cfg(test)]
/// The CLI reference in Markdown: every command, its usage, and each argument's help.
pub fn markdown() -> String {
    let mut cmd = Cli::command_tree();
    let mut out = String::from(
        "# `flotilla` command reference\n\n\
         Generated from the command-line parser by `UPDATE_DOCS=1 cargo test -p flotilla-node cli_reference`; \
         do not edit by hand. `flotilla COMMAND --help` prints the same text.\n",
    );
    write_command(&mut out, &mut cmd, "flotilla");
    out
}

#[cfg(test)]
fn write_command(out: &mut String, cmd: &mut clap::Command, path: &str) {
    let usage = cmd.render_usage().to_string();
    let usage = usage.trim_start_matches("Usage: ").trim();
    let _ = write!(out, "\n## `{path}`\n\n");
    if let Some(about) = cmd.get_long_about().or(cmd.get_about()) {
        let _ = writeln!(out, "{about}\n");
    }
    let _ = writeln!(out, "```text\n{usage}\n```");
    let args: Vec<String> = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !matches!(a.get_id().as_str(), "help" | "version"))
        .map(arg_row)
        .collect();
    if !args.is_empty() {
        let _ = write!(out, "\n| argument | description |\n|---|---|\n{}", args.concat());
    }
    let subs: Vec<String> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .map(|s| s.get_name().to_string())
        .collect();
    if !subs.is_empty() {
        let _ =
            writeln!(out, "\nSubcommands: {}.", subs.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", "));
    }
    for name in subs {
        if let Some(sub) = cmd.find_subcommand_mut(&name) {
            write_command(out, sub, &format!("{path} {name}"));
        }
    }
}

#[cfg(test)]
/// One table row: how the argument is written, then its help, default, choices and env.
fn arg_row(a: &clap::Arg) -> String {
    let value = a.get_value_names().map(|v| v.iter().map(|n| format!("<{n}>")).collect::<Vec<_>>().join(" "));
    let mut name = match (a.get_short(), a.get_long()) {
        (Some(s), Some(l)) => format!("-{s}, --{l}"),
        (None, Some(l)) => format!("--{l}"),
        (Some(s), None) => format!("-{s}"),
        (None, None) => value.clone().unwrap_or_else(|| a.get_id().to_string().to_uppercase()),
    };
    let takes_value = a.get_num_args().is_some_and(|n| n.takes_values());
    if (a.get_long().is_some() || a.get_short().is_some()) && takes_value {
        name = format!("{name} {}", value.unwrap_or_else(|| "<VALUE>".into()));
    }
    let mut help = a.get_long_help().or(a.get_help()).map(|h| h.to_string()).unwrap_or_default().replace('\n', " ");
    // clap drops the full stop of a one-sentence doc comment; the notes below need it back.
    if !help.is_empty() && !help.ends_with('.') {
        help.push('.');
    }
    let choices: Vec<String> =
        a.get_possible_values().iter().filter(|v| !v.is_hide_set()).map(|v| format!("`{}`", v.get_name())).collect();
    if !choices.is_empty() {
        let _ = write!(help, " One of {}.", choices.join(", "));
    }
    let defaults: Vec<String> = a.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
    if !defaults.is_empty() && takes_value {
        let _ = write!(help, " Default: `{}`.", defaults.join(","));
    }
    if let Some(env) = a.get_env() {
        let _ = write!(help, " Env: `{}`.", env.to_string_lossy());
    }
    format!("| `{name}` | {} |\n", help.trim().replace('|', "\\|"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command and every argument a user can see explains itself in `--help`.
    #[test]
    fn every_command_and_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            if cmd.get_about().is_none() && path != "flotilla" {
                missing.push(format!("command `{path}`"));
            }
            for a in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
                if a.get_help().is_none() && !matches!(a.get_id().as_str(), "help" | "version") {
                    missing.push(format!("argument `{}` of `{path}`", a.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command_tree(), "flotilla", &mut missing);
        assert!(missing.is_empty(), "no help text for:\n{}", missing.join("\n"));
    }

    /// The global options appear in the top-level help only, and each subcommand points there.
    #[test]
    fn global_options_only_in_top_level_help() {
        let mut top = Cli::command_tree();
        let help = top.render_help().to_string();
        assert!(help.contains("--endpoint"), "{help}");
        let sub =
            top.find_subcommand_mut("sandbox").and_then(|s| s.find_subcommand_mut("create")).expect("sandbox create");
        let help = sub.render_help().to_string();
        assert!(!help.contains("--endpoint <") && !help.contains("--token <"), "{help}");
        assert!(help.contains("--memory") && help.contains("flotilla --help"), "{help}");
    }

    /// `--help` after any command prints its help (clap's `DisplayHelp`), and a global option
    /// after a subcommand still reaches the top-level value.
    #[test]
    fn every_command_parses_help_and_takes_the_globals() {
        fn paths(cmd: &clap::Command, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                let mut path = prefix.clone();
                path.push(sub.get_name().to_string());
                out.push(path.clone());
                paths(sub, path, out);
            }
        }
        let mut all = Vec::new();
        paths(&Cli::command_tree(), Vec::new(), &mut all);
        assert!(all.len() > 40, "{all:?}");
        for path in &all {
            let args = std::iter::once("flotilla".to_string()).chain(path.iter().cloned()).chain(["--help".into()]);
            let kind = Cli::command_tree().try_get_matches_from(args).map(|_| ()).unwrap_err().kind();
            assert_eq!(kind, clap::error::ErrorKind::DisplayHelp, "flotilla {} --help", path.join(" "));
        }
        let matches = Cli::command_tree()
            .try_get_matches_from(["flotilla", "sandbox", "ls", "-o", "json", "--endpoint", "http://h:1"])
            .expect("parses");
        let cli = <Cli as clap::FromArgMatches>::from_arg_matches(&matches).expect("converts");
        assert_eq!(cli.format(), crate::cli::Format::Json);
    }

    /// docs/reference/cli.md is what the parser says; `UPDATE_DOCS=1` regenerates it.
    #[test]
    fn cli_reference_is_up_to_date() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/reference/cli.md");
        let generated = markdown();
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(&path, &generated).expect("write cli.md");
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "docs/reference/cli.md is stale: run `UPDATE_DOCS=1 cargo test -p flotilla-node cli_reference`"
        );
    }
}
