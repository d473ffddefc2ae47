//! `flotilla app …`

use std::path::PathBuf;

use clap::Subcommand;
use flotilla::{AppInfo, AppSpec, Client};
use serde::Serialize;

use super::output::{print, rfc3339, Format};

#[derive(Debug, Subcommand)]
pub enum AppCmd {
    /// Deploy an app from its TOML spec (creates it or replaces it with a new version), or a
    /// Python app from its module (`app.py`, deployed by `python3 -m flotilla deploy`, or the
    /// Python in FLOTILLA_PYTHON; the flotilla package must be installed there).
    Deploy {
        /// The app spec, a TOML file (see docs/reference/app-spec.md), or a Python module.
        file: PathBuf,
    },
    /// List apps (`app list` is an alias).
    #[command(alias = "list")]
    Ls,
    /// Show one app and its spec.
    Show {
        /// The app's name.
        name: String,
    },
    /// Stop an app.
    Stop {
        /// The app's name.
        name: String,
    },
    /// Stop and remove an app and its schedules; its replicas' containers are removed on every node.
    Rm {
        /// The app's name.
        name: String,
    },
}

/// Whether `app deploy` of `file` is a Python app's (`*.py`).
pub fn is_python(file: &std::path::Path) -> bool {
    file.extension().is_some_and(|e| e == "py")
}

/// What `app deploy` prints.
#[derive(Serialize)]
struct Deployed {
    app: String,
    version: u64,
    schedules: Vec<ScheduleFires>,
    /// Images built from `image = { dockerfile, context }` (or found built by content hash).
    images: Vec<flotilla::BuiltImage>,
}

/// A scheduled function's next fire times (RFC 3339, UTC).
#[derive(Serialize)]
struct ScheduleFires {
    function: String,
    next: Vec<String>,
}

/// The next 3 ticks of each of the app's schedules, as the cluster recorded them (an unchanged
/// period keeps the anchor of an earlier deploy).
async fn next_fires(client: &Client, app: &AppInfo) -> anyhow::Result<Vec<ScheduleFires>> {
    let schedules = client.schedules(Some(&app.name)).await?;
    Ok(schedules
        .iter()
        .map(|s| ScheduleFires {
            function: s.function.clone(),
            next: s.next_fires(3).iter().map(|t| t.to_rfc3339()).collect(),
        })
        .collect())
}

/// What `app show` prints: the app and what its functions are doing.
#[derive(Serialize)]
struct Shown {
    #[serde(flatten)]
    app: AppInfo,
    functions: Vec<flotilla::FunctionLoad>,
    /// The latest events about the app and its functions.
    events: Vec<flotilla::Event>,
}

/// The latest events under a `show`, when there are any.
pub fn print_events(events: &[flotilla::Event]) {
    if !events.is_empty() {
        println!("  latest events:");
        events.iter().for_each(|e| println!("    {}", super::events::line(e)));
    }
}

fn print_app(a: &AppInfo) {
    println!("{}  version {}  {}", a.name, a.version, a.state);
    println!("  functions: {}", a.functions.join(", "));
    println!("  deployed {}  updated {}", rfc3339(a.deployed_at_ms), rfc3339(a.updated_at_ms));
}

impl AppCmd {
    pub async fn run(&self, client: &Client, format: Format) -> anyhow::Result<()> {
        match self {
            AppCmd::Deploy { file } => {
                let mut spec = AppSpec::from_toml_file(file)?;
                spec.validate()?;
                let images = client.build_app_images(&mut spec, |line| eprintln!("  {line}")).await?;
                let app = client.deploy(spec).await?;
                let schedules = next_fires(client, &app).await?;
                let out = Deployed { app: app.name.clone(), version: app.version, schedules, images };
                print(format, &out, |d| {
                    println!("deployed {} version {}", d.app, d.version);
                    for i in &d.images {
                        let how = if i.built { "built" } else { "unchanged, not rebuilt" };
                        println!("  {} image {} ({how})", i.function, i.image);
                    }
                    for s in &d.schedules {
                        println!("  {} next fires: {}", s.function, s.next.join(", "));
                    }
                })
            }
            AppCmd::Ls => {
                let apps = client.list_apps().await?;
                print(format, &apps, |apps| {
                    println!("{:<24} {:<8} {:<9} FUNCTIONS", "NAME", "VERSION", "STATE");
                    for a in apps {
                        println!("{:<24} {:<8} {:<9} {}", a.name, a.version, a.state, a.functions.join(","));
                    }
                })
            }
            AppCmd::Show { name } => {
                let app = client.app(name).await?;
                let functions = client.function_status(name).await?;
                let events = super::events::recent(client, name).await?;
                print(format, &Shown { app, functions, events }, |s| {
                    print_app(&s.app);
                    for f in &s.functions {
                        println!(
                            "  {}: replicas {} ready, {} starting; inputs {} running, {} waiting; {} calls queued",
                            f.function, f.replicas_ready, f.replicas_starting, f.running, f.waiting, f.queued_calls
                        );
                        if let Some(p) = &f.pending {
                            println!("    pending since {}: {}", rfc3339(p.since_ms), p.reason);
                        }
                    }
                    print_events(&s.events);
                })
            }
            AppCmd::Stop { name } => print(format, &client.stop_app(name).await?, print_app),
            AppCmd::Rm { name } => print(format, &client.remove_app(name).await?, |a| {
                println!("removed {} (was version {})", a.name, a.version)
            }),
        }
    }
}
