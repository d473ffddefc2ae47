//! `flotilla image …`: images on this machine's container engine. There is no registry:
//! base images are built from a rootfs here, and each node's machine needs the images its
//! sandboxes use.

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};
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
        base: Base,
        /// Rebuild even if the image exists.
        #[arg(long)]
        rebuild: bool,
    },
    /// Import a rootfs tar as image NAME (like `docker import`).
    Import { name: String, rootfs: PathBuf },
    /// List images on this machine.
    Ls,
}

#[derive(Serialize)]
struct Built {
    image: String,
}

fn step(s: &str) {
    eprintln!("  {s}");
}

impl ImageCmd {
    pub async fn run(&self, format: Format) -> anyhow::Result<()> {
        let docker = Docker::connect().await?;
        match self {
            ImageCmd::BuildBase { base, rebuild } => {
                let name = match base {
                    Base::Busybox => "flotilla/busybox",
                    Base::Python => "flotilla/python",
                };
                eprintln!("building {name}");
                match base {
                    Base::Busybox => {
                        if *rebuild || !docker.image_exists(name).await? {
                            images::build_busybox(&docker, name, step).await?;
                        } else {
                            step("already built (use --rebuild to build again)");
                        }
                    }
                    Base::Python => images::build_python(&docker, name, *rebuild, step).await?,
                }
                print(format, &Built { image: name.into() }, |b| println!("{}", b.image))
            }
            ImageCmd::Import { name, rootfs } => {
                if !rootfs.is_file() {
                    return Err(flotilla::Error::InvalidArgument(format!(
                        "rootfs: {} is not a file",
                        rootfs.display()
                    ))
                    .into());
                }
                docker.import_rootfs(name, rootfs, &[]).await?;
                print(format, &Built { image: name.clone() }, |b| println!("{}", b.image))
            }
            ImageCmd::Ls => {
                let images = docker.list_images().await?;
                print(format, &images, |images| {
                    println!("{:<40} {:<14} {:>10}", "NAME", "ID", "SIZE MB");
                    for i in images {
                        let id = i.id.trim_start_matches("sha256:");
                        println!("{:<40} {:<14} {:>10.1}", i.name, &id[..id.len().min(12)], i.size_bytes as f64 / 1e6);
                    }
                })
            }
        }
    }
}
