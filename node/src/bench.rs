//! `flotilla bench …`: programs that print figures. See docs/benchmarks.md.

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum BenchCmd {}

impl BenchCmd {
    pub async fn run(&self) -> anyhow::Result<()> {
        match *self {}
    }
}
