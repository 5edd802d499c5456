//! `splitfuzz run`: run programs, say what each did and why.

use super::args::{load_all, note_harm_site_overrides, FormatArg, PolicyArgs};
use super::{expect_line, status};
use anyhow::Result;
use splitfuzz::prog::Program;
use splitfuzz::run::{self, OpResult, Outcome, RunConfig};
use splitfuzz::say;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct RunArgs {
    /// Program files: text or raw fuzzer bytes (see --format).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    #[command(flatten)]
    p: PolicyArgs,
    #[command(flatten)]
    f: FormatArg,
}

/// Exit 1 when a program violates an invariant, else 0.
pub fn main(a: RunArgs) -> Result<ExitCode> {
    note_harm_site_overrides(&a.p.overrides);
    let mut violated = false;
    for (file, prog) in load_all(&a.files, a.f.format)? {
        let (cfg, source) = a.p.resolve(&prog, Some(file))?;
        let out = run::run(&prog, &cfg);
        violated |= out.violation.is_some();
        report(file, &prog, &cfg, &source, &out);
    }
    Ok(status(violated))
}

/// The lines of one program: its outcome, its policy and where that came
/// from, where the harm appears and the fix, and its `expect` line.
fn report(file: &Path, prog: &Program, cfg: &RunConfig, source: &str, out: &Outcome) {
    match &out.violation {
        Some(v) => say!(
            "{}: {} [{}]: {v}",
            file.display(),
            cfg.policy,
            prog.ops
                .get(v.op_index)
                .map(|o| o.to_string())
                .unwrap_or_else(|| "implicit exit of every mm".into())
        ),
        None => say!(
            "{}: {} ok ({} ops, {} returned errors)",
            file.display(),
            cfg.policy,
            prog.ops.len(),
            out.results
                .iter()
                .filter(|r| matches!(r, OpResult::Err(_)))
                .count()
        ),
    }
    say!(
        "  policy {}: {} from {source}",
        cfg.policy,
        cfg.policy.preset.name()
    );
    if let Some(i) = out.results.iter().position(|r| *r == OpResult::OomLoop) {
        say!(
            "  op #{i} never returned (a fault retried after VM_FAULT_OOM while every allocation fails): the task is killed there"
        );
    }
    if let Some(v) = &out.violation {
        say!(
            "  the harm appears in {}; {}",
            v.function,
            splitfuzz::fuzz::fixes::hint(prog, cfg).summary()
        );
    }
    if let Some(exp) = &prog.expect {
        match exp.check(out.violation.as_ref()) {
            Ok(()) => say!("  {}: held", expect_line(exp)),
            Err(why) => say!(
                "  {}: did not hold: {why}{}",
                expect_line(exp),
                if out.violation.is_none() {
                    " (fixed under this policy?)"
                } else {
                    ""
                }
            ),
        }
    }
}
