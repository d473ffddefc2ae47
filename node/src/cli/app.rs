//! `flotilla app …`

use std::path::PathBuf;

use clap::Subcommand;
use flotilla::{AppInfo, AppSpec, Client};
use serde::Serialize;

use super::output::{print, rfc3339, Format};

#[derive(Debug, Subcommand)]
pub enum AppCmd {
    /// Deploy an app from its TOML spec (creates it or replaces it with a new version).
    Deploy { file: PathBuf },
    /// List apps.
    List,
    /// Show one app and its spec.
    Show { name: String },
    /// Stop an app.
    Stop { name: String },
}

/// What `app deploy` prints.
#[derive(Serialize)]
struct Deployed {
    app: String,
    version: u64,
    schedules: Vec<ScheduleFires>,
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
                let spec = AppSpec::from_toml_file(file)?;
                let app = client.deploy(spec).await?;
                let schedules = next_fires(client, &app).await?;
                let out = Deployed { app: app.name.clone(), version: app.version, schedules };
                print(format, &out, |d| {
                    println!("deployed {} version {}", d.app, d.version);
                    for s in &d.schedules {
                        println!("  {} next fires: {}", s.function, s.next.join(", "));
                    }
                })
            }
            AppCmd::List => {
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
                print(format, &Shown { app, functions }, |s| {
                    print_app(&s.app);
                    for f in &s.functions {
                        println!(
                            "  {}: replicas {} ready, {} starting; inputs {} running, {} waiting; {} calls queued",
                            f.function, f.replicas_ready, f.replicas_starting, f.running, f.waiting, f.queued_calls
                        );
                    }
                })
            }
            AppCmd::Stop { name } => print(format, &client.stop_app(name).await?, print_app),
        }
    }
}
