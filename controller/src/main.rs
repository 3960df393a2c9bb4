use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// hookway controller.
#[derive(Parser)]
#[command(name = "hookway-controller", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CRD manifests generated from the API types (or write them to a folder).
    Crds {
        /// Write one file per CRD into this folder instead of printing.
        #[arg(long)]
        write: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crds { write: None } => print!("{}", hookway_crds::crdgen::all_crds_yaml()),
        Command::Crds { write: Some(dir) } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for (file, yaml) in hookway_crds::crdgen::crd_files() {
                let path = dir.join(file);
                std::fs::write(&path, yaml)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
    }
    Ok(())
}
