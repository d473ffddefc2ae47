//! `flotilla image …`: images on the cluster's nodes and on this machine.
//!
//! `pull`, `build`, `ls`, `rm` and `login` go to the cluster (any endpoint; `pull`, `ls` and
//! `rm` reach every node). `build-base` and `import` work on this machine's own engine
//! (`DOCKER_HOST`), without a registry: base images are built from a rootfs here.

use std::io::BufRead;
use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};
use flotilla::Client;
use serde::Serialize;

use super::output::{print, Format};
use crate::runtime::{images, Docker};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Base {
    /// `flotilla/busybox`: static busybox, a few MB, builds in about a second.
    Busybox,
    /// `flotilla/python`: Debian bookworm minbase with python3 (debootstrap; minutes).
    Python,
}

#[derive(Debug, Subcommand)]
pub enum ImageCmd {
    /// Build a base image with no registry.
    BuildBase {
        /// Which base image.
        base: Base,
        /// Rebuild even if the image exists.
        #[arg(long)]
        rebuild: bool,
    },
    /// Import a rootfs tar as image NAME (like `docker import`).
    Import {
        /// The image name to give it, e.g. team/app.
        name: String,
        /// The root filesystem as a tar file.
        rootfs: PathBuf,
    },
    /// List the images of every node (or of one), with the nodes that have each.
    Ls {
        /// Only this node's images.
        #[arg(long)]
        node: Option<u64>,
    },
    /// Pull an image from its registry on every node (or on one), with the cluster's login
    /// for that registry (`image login`), streaming progress.
    Pull {
        /// The image reference, e.g. 127.0.0.1:5000/team/app:1.
        reference: String,
        /// Pull on this node only.
        #[arg(long)]
        node: Option<u64>,
    },
    /// Build an image from a local folder (the context) on a node, streaming the build output.
    /// FROM may name any image that node has.
    Build {
        /// The name to give the image, e.g. team/app:1.
        #[arg(short = 't', long = "tag")]
        tag: String,
        /// The Dockerfile (default DIR/Dockerfile); one outside DIR is sent along.
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
        /// Build on this node (default: the node the endpoint reaches).
        #[arg(long)]
        node: Option<u64>,
        /// The build context folder.
        dir: PathBuf,
    },
    /// Remove an image from every node that has it.
    Rm {
        /// The image name, e.g. team/app:1.
        name: String,
    },
    /// Store the login the nodes use to pull from REGISTRY. The password is read from stdin
    /// (never an argument) and no command ever prints it.
    Login {
        /// The registry, host[:port], e.g. 127.0.0.1:5000.
        registry: String,
        /// The registry user.
        #[arg(long)]
        username: String,
        /// Read the password from stdin (its first line); required.
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

#[derive(Serialize)]
struct BuiltOn {
    image: String,
    id: String,
}

#[derive(Serialize)]
struct LoggedIn {
    registry: String,
    username: String,
}

#[derive(Serialize)]
struct Built {
    image: String,
}

fn step(s: &str) {
    eprintln!("  {s}");
}

impl ImageCmd {
    pub async fn run(&self, client: &Client, format: Format) -> anyhow::Result<()> {
        match self {
            ImageCmd::Ls { node } => {
                let images = client.list_images(*node).await?;
                print(format, &images, |images| {
                    println!("{:<48} {:<14} {:>10}  NODES", "NAME", "ID", "SIZE MB");
                    for i in images {
                        let id = i.id.trim_start_matches("sha256:");
                        let nodes: Vec<String> = i.nodes.iter().map(u64::to_string).collect();
                        let mb = i.size_bytes as f64 / 1e6;
                        println!("{:<48} {:<14} {:>10.1}  {}", i.name, &id[..id.len().min(12)], mb, nodes.join(","));
                    }
                })
            }
            ImageCmd::Pull { reference, node } => {
                let outcomes = client.pull_image(reference, *node, |n, line| eprintln!("  node {n}: {line}")).await?;
                let failed: Vec<String> =
                    outcomes.iter().filter_map(|o| o.error.as_ref().map(|e| format!("node {}: {e}", o.node))).collect();
                if !failed.is_empty() {
                    return Err(flotilla::Error::FailedPrecondition(format!(
                        "pulling {reference} failed on {} of {} nodes: {}",
                        failed.len(),
                        outcomes.len(),
                        failed.join("; ")
                    ))
                    .into());
                }
                print(format, &outcomes, |outcomes| {
                    for o in outcomes {
                        println!("node {}: {reference} {}", o.node, o.id.as_deref().unwrap_or(""));
                    }
                })
            }
            ImageCmd::Build { tag, file, node, dir } => {
                let dockerfile = file.clone().unwrap_or_else(|| dir.join("Dockerfile"));
                let context = flotilla::image::context_tar(dir, &dockerfile)?;
                eprintln!("sending a {:.1} MB context", context.tar.len() as f64 / 1e6);
                let id = client.build_image(tag, &context, *node, |line| eprintln!("  {line}")).await?;
                print(format, &BuiltOn { image: tag.clone(), id }, |b| println!("{} {}", b.image, b.id))
            }
            ImageCmd::Rm { name } => {
                let removed = client.remove_image(name).await?;
                print(format, &removed, |r| {
                    let nodes: Vec<String> = r.removed.iter().map(u64::to_string).collect();
                    println!("removed {} from node(s) {}", r.name, nodes.join(","));
                })
            }
            ImageCmd::Login { registry, username, password_stdin: _ } => {
                let mut password = String::new();
                std::io::stdin().lock().read_line(&mut password)?;
                let password = password.trim_end_matches(['\r', '\n']);
                if password.is_empty() {
                    return Err(flotilla::Error::InvalidArgument("password: stdin gave no password".into()).into());
                }
                client.registry_login(registry, username, password).await?;
                let shown = LoggedIn { registry: registry.clone(), username: username.clone() };
                print(format, &shown, |l| println!("login for {} stored (user {})", l.registry, l.username))
            }
            ImageCmd::BuildBase { base, rebuild } => build_base(*base, *rebuild, format).await,
            ImageCmd::Import { name, rootfs } => import(name, rootfs, format).await,
        }
    }
}

/// `image build-base`, on this machine's engine.
async fn build_base(base: Base, rebuild: bool, format: Format) -> anyhow::Result<()> {
    let docker = Docker::connect().await?;
    let name = match base {
        Base::Busybox => "flotilla/busybox",
        Base::Python => "flotilla/python",
    };
    eprintln!("building {name}");
    match base {
        Base::Busybox => {
            if rebuild || !docker.image_exists(name).await? {
                images::build_busybox(&docker, name, step).await?;
            } else {
                step("already built (use --rebuild to build again)");
            }
        }
        Base::Python => images::build_python(&docker, name, rebuild, step).await?,
    }
    print(format, &Built { image: name.into() }, |b| println!("{}", b.image))
}

/// `image import`, on this machine's engine.
async fn import(name: &str, rootfs: &std::path::Path, format: Format) -> anyhow::Result<()> {
    if !rootfs.is_file() {
        return Err(flotilla::Error::InvalidArgument(format!("rootfs: {} is not a file", rootfs.display())).into());
    }
    let docker = Docker::connect().await?;
    docker.import_rootfs(name, rootfs, &[]).await?;
    print(format, &Built { image: name.to_string() }, |b| println!("{}", b.image))
}
