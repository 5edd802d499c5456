//! `splitfuzz minimize`: shrink a violating program keeping its signature.

use super::args::{load, FormatArg, PolicyArgs};
use super::say_text;
use anyhow::{bail, Context, Result};
use splitfuzz::run::minimize;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct MinimizeArgs {
    /// The violating program (text or raw fuzzer bytes).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    #[command(flatten)]
    p: PolicyArgs,
    #[command(flatten)]
    f: FormatArg,
    /// Write the minimized program here instead of stdout.
    #[arg(short = 'o', long, value_name = "OUT")]
    out: Option<PathBuf>,
}

/// Print (or write to OUT) the minimized program; Err when FILE violates nothing.
pub fn main(a: MinimizeArgs) -> Result<ExitCode> {
    let prog = load(&a.file, a.f.format)?;
    let (cfg, _) = a.p.resolve(&prog, Some(&a.file))?;
    let Some(min) = minimize(&prog, &cfg) else {
        bail!(
            "{}: no violation under {}, nothing to minimize",
            a.file.display(),
            cfg.policy
        );
    };
    let text = min.to_text();
    match &a.out {
        Some(o) => {
            std::fs::write(o, &text).with_context(|| format!("cannot write {}", o.display()))?
        }
        None => say_text(&text),
    }
    Ok(ExitCode::SUCCESS)
}
