//! `splitfuzz emit-syz`: programs in syzkaller's text format.

use super::args::{load, FormatArg};
use super::say_text;
use anyhow::{anyhow, Context, Result};
use splitfuzz::syz::{emit_syz, SyzKind};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct EmitSyzArgs {
    /// The programs (text or raw fuzzer bytes).
    #[arg(value_name = "FILE", required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    f: FormatArg,
    /// A seed for syzkaller's corpus: no `fail_nth` (its seed loader rejects
    /// programs that have one). Default: a reproducer, the call holding the
    /// planned failure marked with `fail_nth`.
    #[arg(long)]
    seed: bool,
    /// Write one file per program into DIR (NAME.syz, or NAME.seed.syz with
    /// --seed) instead of printing them.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

pub fn main(a: EmitSyzArgs) -> Result<ExitCode> {
    let kind = if a.seed {
        SyzKind::Seed
    } else {
        SyzKind::Repro
    };
    let mut texts = Vec::new();
    for file in &a.files {
        let prog = load(file, a.f.format)?;
        let t = emit_syz(&prog, kind, &file.display().to_string())
            .map_err(|e| anyhow!("{}: {e}", file.display()))?;
        texts.push((file, t));
    }
    match &a.out {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            for (file, t) in &texts {
                let stem = file
                    .file_stem()
                    .map(|s| s.to_string_lossy().to_string())
                    .unwrap_or_default();
                let name = format!("{stem}{}.syz", if a.seed { ".seed" } else { "" });
                std::fs::write(dir.join(&name), t)
                    .with_context(|| format!("cannot write {name}"))?;
            }
            splitfuzz::say!("{} program(s) written to {}", texts.len(), dir.display());
        }
        None => {
            let all: Vec<&str> = texts.iter().map(|(_, t)| t.as_str()).collect();
            say_text(&all.join("\n"));
        }
    }
    Ok(ExitCode::SUCCESS)
}
