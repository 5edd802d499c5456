//! `splitfuzz emit-kselftest`: one kselftest file (tools/testing/selftests/mm
//! style) with a test per program and trigger.

use super::args::{load, FormatArg};
use super::say_text;
use anyhow::{anyhow, Result};
use splitfuzz::csource::{emit_kselftest, KselftestInput};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct EmitKselftestArgs {
    /// The programs: finding files (crashes/*/*.txt), `vm check` findings
    /// (their .txt), any program (text or raw fuzzer bytes).
    #[arg(value_name = "FILE", required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    f: FormatArg,
}

pub fn main(a: EmitKselftestArgs) -> Result<ExitCode> {
    let mut inputs = Vec::new();
    for file in &a.files {
        let prog = load(file, a.f.format)?;
        let notes: Vec<String> = std::fs::read(file)
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .lines()
                    .filter_map(|l| l.strip_prefix('#').map(|n| n.trim().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        inputs.push(KselftestInput {
            source: file.display().to_string(),
            whole_plan: whole_plan(&notes),
            notes,
            prog,
        });
    }
    let (c, skipped) = emit_kselftest(&inputs).map_err(|e| anyhow!("{e}"))?;
    for s in skipped {
        super::warn(s);
    }
    say_text(&c);
    Ok(ExitCode::SUCCESS)
}

/// A `vm check` finding's note `the same on this kernel as a whole-program
/// plan: fail pte_alloc P / fail thp T` as a plan.
fn whole_plan(notes: &[String]) -> Option<splitfuzz::prog::FaultPlan> {
    let rest = notes
        .iter()
        .find_map(|n| n.strip_prefix("the same on this kernel as a whole-program plan: "))?;
    // `never` is the default: no line.
    let text: String = rest
        .split(" / ")
        .filter(|l| !l.ends_with(" never"))
        .map(|l| format!("{l}\n"))
        .collect();
    splitfuzz::Program::parse(&text).ok().map(|p| p.faults)
}
