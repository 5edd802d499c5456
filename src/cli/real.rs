//! `splitfuzz real`: the host kernel as an oracle for `deposit`.

use anyhow::{anyhow, bail, Context, Result};
use splitfuzz::host::Host;
use splitfuzz::prog::Program;
use splitfuzz::say;
use splitfuzz::verdict::{check_program, Stats, Verdict};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// `splitfuzz real FILE... | --generate N --seed S [-v]`: exit 0 when every
/// program agreed, 1 on a divergence; Err (exit 2) on bad input.
pub fn real_main(
    files: &[PathBuf],
    generate_n: Option<usize>,
    seed: u64,
    verbose: bool,
) -> Result<ExitCode> {
    let host = Host::read();
    if let Err(why) = host.thp_usable() {
        bail!("the host cannot run THP programs: {why}");
    }
    say!("host: {}", host.describe());
    let mut progs: Vec<(String, Program)> = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let p = Program::parse(&text).map_err(|e| anyhow!("{}: {e}", f.display()))?;
        progs.push((f.display().to_string(), p));
    }
    let mut skipped = std::collections::BTreeMap::new();
    if let Some(n) = generate_n {
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
    for (name, p) in &progs {
        let c = match check_program(&host, p) {
            Ok(c) => c,
            Err(e) => {
                say!("{name}: the host run failed: {e:#}");
                for l in p.to_text().lines() {
                    say!("    | {l}");
                }
                return Err(e);
            }
        };
        stats.add(p, &c.verdict);
        match &c.verdict {
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
                if verbose || generate_n.is_some() {
                    for l in p.to_text().lines() {
                        say!("    | {l}");
                    }
                }
            }
        }
        if verbose {
            if let (Some(m), Some(h)) = (&c.model, &c.host) {
                print!("{}", h.text());
                if m.text() != h.text() {
                    for l in m.text().lines() {
                        say!("model: {l}");
                    }
                }
            }
        }
    }
    print_stats(&stats, t0.elapsed(), &skipped);
    Ok(
        if stats.diverged_total() > 0 || stats.model_violations > 0 {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        },
    )
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
