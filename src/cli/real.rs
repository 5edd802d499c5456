//! `splitfuzz real`: the host kernel as an oracle for `deposit`.

use super::{say_text, status};
use anyhow::{anyhow, bail, Context, Result};
use splitfuzz::host::Host;
use splitfuzz::prog::Program;
use splitfuzz::say;
use splitfuzz::verdict::{check_program, Checked, Stats, Verdict};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct RealArgs {
    /// Text programs to run on the host.
    #[arg(value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Generate N programs from the model's decoder instead.
    #[arg(long, value_name = "N")]
    generate: Option<usize>,
    /// Seed of the generated programs (with --generate).
    #[arg(long, default_value_t = 0, value_name = "SEED")]
    seed: u64,
    /// Print each program's host observations (and the model's where they differ) and
    /// the text of every diverging program.
    #[arg(short, long)]
    verbose: bool,
}

/// `splitfuzz real FILE... | --generate N --seed S [-v]`: exit 0 when every
/// program agreed, 1 on a divergence; Err (exit 2) on bad input.
pub fn main(a: RealArgs) -> Result<ExitCode> {
    if a.files.is_empty() && a.generate.is_none() {
        bail!("real needs FILE... or --generate N");
    }
    let host = Host::read();
    if let Err(why) = host.thp_usable() {
        bail!("the host cannot run THP programs: {why}");
    }
    say!("host: {}", host.describe());
    let mut progs = read_programs(&a.files)?;
    let mut skipped = std::collections::BTreeMap::new();
    if let Some(n) = a.generate {
        let seed = a.seed;
        for (i, p) in host
            .generate(n, seed, false, "deposit", &mut skipped)
            .into_iter()
            .enumerate()
        {
            progs.push((format!("gen#{i} (seed {seed})"), p));
        }
    }
    if progs.is_empty() {
        bail!("no programs: give FILEs or --generate N");
    }
    let t0 = Instant::now();
    let mut stats = Stats::default();
    // Generated programs are new: show the text of each that diverges.
    let show_text = a.verbose || a.generate.is_some();
    for (name, p) in &progs {
        let c = match check_program(&host, p) {
            Ok(c) => c,
            Err(e) => {
                say!("{name}: the host run failed: {e:#}");
                say_program(p);
                return Err(e);
            }
        };
        stats.add(p, &c.verdict);
        say_verdict(name, p, &c.verdict, show_text);
        if a.verbose {
            say_observations(&c);
        }
    }
    print_stats(&stats, t0.elapsed(), &skipped);
    Ok(status(
        stats.diverged_total() > 0 || stats.model_violations > 0,
    ))
}

/// The FILEs, each a text program.
fn read_programs(files: &[PathBuf]) -> Result<Vec<(String, Program)>> {
    files
        .iter()
        .map(|f| {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            let p = Program::parse(&text).map_err(|e| anyhow!("{}: {e}", f.display()))?;
            Ok((f.display().to_string(), p))
        })
        .collect()
}

/// A program's text, indented under its report line.
fn say_program(p: &Program) {
    for l in p.to_text().lines() {
        say!("    | {l}");
    }
}

/// One program's line: agree, unsupported, a model violation or where the
/// kernel and the model first differ (with the text when `show_text`).
fn say_verdict(name: &str, p: &Program, verdict: &Verdict, show_text: bool) {
    match verdict {
        Verdict::Agree { thp_fail } => {
            let fb = if thp_fail.is_empty() {
                String::new()
            } else {
                format!(
                    " (host THP fallbacks fed to the model: fail thp at={})",
                    thp_fail
                        .iter()
                        .map(|x| x.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                )
            };
            say!("{name}: agree, {} ops{fb}", p.ops.len());
        }
        Verdict::Unsupported { op, why } => say!(
            "{name}: unsupported on this host: {}",
            Verdict::unsupported_text(*op, why)
        ),
        Verdict::Finding { text, .. } => say!("{name}: model violation (deposit): {text}"),
        Verdict::Diverge {
            detail,
            thp_fail,
            khugepaged,
            ..
        } => {
            say!(
                "{name}: DIVERGE at {detail}{}{}",
                if thp_fail.is_empty() {
                    String::new()
                } else {
                    format!(" (with fail thp at={thp_fail:?})")
                },
                if *khugepaged {
                    " (khugepaged collapsed pages during the run)"
                } else {
                    ""
                }
            );
            if show_text {
                say_program(p);
            }
        }
    }
}

/// `-v`: the host's observation lines, and the model's where they differ.
fn say_observations(c: &Checked) {
    if let (Some(m), Some(h)) = (&c.model, &c.host) {
        say_text(&h.text());
        if m.text() != h.text() {
            for l in m.text().lines() {
                say!("model: {l}");
            }
        }
    }
}

/// The closing summary of `real`.
fn print_stats(s: &Stats, t: Duration, skipped: &BTreeMap<String, usize>) {
    say!(
        "real: {} programs ({} run, {} unsupported), {} ops; agreed {} ({:.1}%), diverged {}, model violations {}; {} agreed only after feeding host THP fallbacks; {:.1}s",
        s.programs,
        s.run(),
        s.unsupported_total(),
        s.ops_run,
        s.agreed,
        s.agreed_percent(),
        s.diverged_total(),
        s.model_violations,
        s.fed,
        t.as_secs_f64()
    );
    for (f, n) in &s.diverged {
        say!("  divergences in field {f}: {n}");
    }
    for (o, n) in &s.diverged_at {
        say!("  divergences at op {o}: {n}");
    }
    for (why, n) in skipped {
        say!("  generator skipped {n} unsupported op(s): {why}");
    }
}
