//! `crdgen`: writes the CustomResourceDefinitions to `crds/` (or prints them with `--stdout`).

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

#[derive(Parser)]
#[command(about = "Write the Strata CRDs as YAML")]
struct Args {
    /// Directory to write `<plural>.<group>.yaml` into.
    #[arg(long, default_value = "crds")]
    out_dir: PathBuf,
    /// Print to standard output instead of writing files.
    #[arg(long)]
    stdout: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let yaml = strata_operator::crd::crd_yaml().context("rendering the CRD")?;
    if args.stdout {
        print!("{yaml}");
        return Ok(());
    }
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("creating {}", args.out_dir.display()))?;
    let path = args.out_dir.join(strata_operator::crd::CRD_FILE);
    std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}
