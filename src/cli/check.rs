//! `splitfuzz check`: do the programs' `expect` lines hold (or, with
//! `--fixed`, are their violations gone)?

use super::args::{load_all, note_harm_site_overrides, FormatArg, PolicyArgs};
use super::{expect_line, status};
use anyhow::Result;
use splitfuzz::prog::{Expect, Program};
use splitfuzz::run;
use splitfuzz::say;
use splitfuzz::Violation;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct CheckArgs {
    /// Program files with an `expect` line (see --format).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Pass when a program no longer violates anything, instead of when it does what its
    /// `expect` line says.
    #[arg(long)]
    fixed: bool,
    #[command(flatten)]
    p: PolicyArgs,
    #[command(flatten)]
    f: FormatArg,
}

/// Exit 0 when every program passes, else 1.
pub fn main(a: CheckArgs) -> Result<ExitCode> {
    note_harm_site_overrides(&a.p.overrides);
    let progs = load_all(&a.files, a.f.format)?;
    let (mut pass, total) = (0, progs.len());
    for (file, prog) in progs {
        let (cfg, _) = a.p.resolve(&prog, Some(file))?;
        let out = run::run(&prog, &cfg);
        let (passed, line) = if a.fixed {
            fixed(&prog, out.violation.as_ref())
        } else {
            expected(&prog, out.violation.as_ref())
        };
        pass += usize::from(passed);
        say!(
            "{}: {} under {}: {line}",
            file.display(),
            cfg.policy,
            cfg.geometry.name()
        );
    }
    say!(
        "check{}: {pass} of {total} pass",
        if a.fixed { " --fixed" } else { "" }
    );
    Ok(status(pass != total))
}

/// `--fixed`: a program passes when it violates nothing.
fn fixed(prog: &Program, v: Option<&Violation>) -> (bool, String) {
    match (v, &prog.expect) {
        (None, Some(exp @ Expect::Violation { .. })) => (
            true,
            format!("fixed: the expected {} no longer occurs", exp.describe()),
        ),
        (None, _) => (true, "fixed: no violation".to_string()),
        (Some(v), _) => (
            false,
            format!("not fixed: {} [{}]", v.signature(), v.severity),
        ),
    }
}

/// A program passes when its `expect` line holds.
fn expected(prog: &Program, v: Option<&Violation>) -> (bool, String) {
    match &prog.expect {
        None => (
            false,
            "no expect line: nothing to check (does not pass)".to_string(),
        ),
        Some(exp) => match exp.check(v) {
            Ok(()) => (true, format!("{}: holds", expect_line(exp))),
            Err(why) => (false, format!("{}: does not hold: {why}", expect_line(exp))),
        },
    }
}
