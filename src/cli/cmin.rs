//! `splitfuzz cmin`: minimize a corpus folder with the model's own coverage.

use super::args::PolicyArgs;
use anyhow::{bail, Context, Result};
use splitfuzz::fuzz::engine;
use splitfuzz::prog::Program;
use splitfuzz::say;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct CminArgs {
    /// Folder of raw fuzzer inputs.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Copy the kept inputs to this folder (DIR is left alone).
    #[arg(short = 'o', long, value_name = "OUT", conflicts_with = "in_place")]
    out: Option<PathBuf>,
    /// Rewrite DIR: delete the inputs that are not kept.
    #[arg(long)]
    in_place: bool,
    #[command(flatten)]
    p: PolicyArgs,
}

pub fn main(a: CminArgs) -> Result<ExitCode> {
    if a.out.is_none() && !a.in_place {
        bail!(
            "cmin needs -o OUT (copy the kept inputs there) or --in-place (delete the others from {})",
            a.dir.display()
        );
    }
    let files = engine::input_files(&a.dir)
        .with_context(|| format!("cannot read folder {}", a.dir.display()))?;
    let inputs = files
        .iter()
        .map(|f| std::fs::read(f).with_context(|| format!("cannot read {}", f.display())))
        .collect::<Result<Vec<_>>>()?;
    let (cfg, _) = a.p.resolve(&Program::default(), None)?;
    let keep = engine::cmin(&inputs, &cfg);
    match &a.out {
        Some(o) => {
            std::fs::create_dir_all(o).with_context(|| format!("cannot create {}", o.display()))?;
            for &i in &keep {
                let dest = o.join(files[i].file_name().unwrap_or_default());
                std::fs::write(&dest, &inputs[i])
                    .with_context(|| format!("cannot write {}", dest.display()))?;
            }
            say!(
                "cmin: kept {} of {} inputs ({}), copied to {}",
                keep.len(),
                inputs.len(),
                cfg.policy,
                o.display()
            );
        }
        None => {
            for (i, f) in files.iter().enumerate() {
                if !keep.contains(&i) {
                    std::fs::remove_file(f)
                        .with_context(|| format!("cannot remove {}", f.display()))?;
                }
            }
            say!(
                "cmin: kept {} of {} inputs ({}); deleted the other {} from {} (--in-place)",
                keep.len(),
                inputs.len(),
                cfg.policy,
                inputs.len() - keep.len(),
                a.dir.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
