//! `splitfuzz vm run` and `vm exec`: what they run and what they print. The
//! batch, the guest and the judging are the library's (src/vm/).

use super::args::{folder_policy, load, preset, Format};
use anyhow::{anyhow, bail, Result};
use splitfuzz::model::mm::LINUX_DEFAULT;
use splitfuzz::model::policy::Policy;
use splitfuzz::prog::{Expect, Program};
use splitfuzz::say;
use splitfuzz::verdict::contract::Contract;
use splitfuzz::verdict::{Stats, Verdict};
use splitfuzz::vm::batch::{exec_binaries, run_batch, Job, Judged};
use splitfuzz::vm::qemu::VmOptions;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

pub struct RunRequest {
    pub files: Vec<PathBuf>,
    /// How FILEs are read (text, bytes, or by content).
    pub format: Format,
    pub generate: Option<usize>,
    pub seed: u64,
    pub policy: Option<String>,
    /// Realise fault plans with memory-cgroup limits instead of injection.
    pub memcg: bool,
    /// Also run the programs the model cannot predict at the limits.
    pub run_inexpressible: bool,
}

/// `vm run`: exit 1 on a divergence or a model violation under deposit.
pub fn run(o: &VmOptions, r: &RunRequest) -> Result<ExitCode> {
    let (jobs, skipped) = jobs(r)?;
    if jobs.is_empty() {
        bail!("vm run needs FILE... or --generate N");
    }
    if !o.kernel.is_file() {
        bail!("no kernel at {}", o.kernel.display());
    }
    say!("kernel: {}", o.kernel.display());
    let (jobs, notes, inexpressible) = if r.memcg {
        let m = at_memcg_limits(jobs, r.run_inexpressible);
        if m.jobs.is_empty() {
            say!(
                "vm run: {} programs, none expressible without injection",
                m.inexpressible
            );
            return Ok(ExitCode::SUCCESS);
        }
        (m.jobs, m.notes, Some(m.inexpressible))
    } else {
        let n = jobs.len();
        (jobs, vec![None; n], None)
    };
    let t0 = Instant::now();
    let mut stats = Stats::default();
    let boots = run_batch(o, &jobs, &mut |i, j| {
        report_job(&jobs[i], j, o.verbose, &mut stats);
        if let Some(n) = &notes[i] {
            say!("{}: {n}", jobs[i].name);
        }
    })?;
    print_summary(
        &stats,
        inexpressible,
        boots,
        t0.elapsed().as_secs_f64(),
        &skipped,
    );
    Ok(
        if stats.diverged_total() > 0 || stats.model_violations > 0 {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        },
    )
}

/// The jobs: each FILE under its policy (--policy, else its `policy` line,
/// else deposit) with its overrides, then the generated programs; and the
/// generator's skipped ops by reason.
fn jobs(r: &RunRequest) -> Result<(Vec<Job>, BTreeMap<String, usize>)> {
    let mut jobs: Vec<Job> = Vec::new();
    for f in &r.files {
        // Text programs and fuzzer bytes (corpus files) alike.
        let p = load(f, r.format)?;
        // --policy, else the program's `policy` line, else its folder
        // (crashes/<policy>/, corpus/<target>/), else deposit.
        let mut policy = match (&r.policy, &p.policy, folder_policy(f)) {
            (Some(name), _, _) | (None, Some(name), _) => Policy::preset(preset(name)?),
            (None, None, Some((pre, overrides, _))) => {
                let mut pol = Policy::preset(pre);
                for ov in &overrides {
                    pol.apply_override(ov).map_err(|e| anyhow!("{e}"))?;
                }
                pol
            }
            (None, None, None) => Policy::preset(preset("deposit")?),
        };
        for ov in &p.overrides {
            policy
                .apply_override(ov)
                .map_err(|e| anyhow!("{}: {e}", f.display()))?;
        }
        jobs.push(Job {
            name: f.display().to_string(),
            prog: p,
            policy,
            memcg: None,
        });
    }
    let mut skipped = BTreeMap::new();
    if let Some(n) = r.generate {
        let name = r.policy.clone().unwrap_or_else(|| "deposit".into());
        let policy = Policy::preset(preset(&name)?);
        for (i, p) in splitfuzz::vm::guest::capabilities()
            .generate(n, r.seed, true, &name, &mut skipped)
            .into_iter()
            .enumerate()
        {
            jobs.push(Job {
                name: format!("gen#{i} (seed {})", r.seed),
                prog: p,
                policy: policy.clone(),
                memcg: None,
            });
        }
    }
    Ok((jobs, skipped))
}

/// The jobs to run at memory-cgroup limits, with their notes.
struct AtLimits {
    jobs: Vec<Job>,
    notes: Vec<Option<String>>,
    inexpressible: usize,
}

/// The memcg trigger: each plan becomes limits on the ops that hold its
/// failures; a program the model cannot predict at those limits is reported
/// and not run (unless `run_inexpressible`).
fn at_memcg_limits(jobs: Vec<Job>, run_inexpressible: bool) -> AtLimits {
    let mut out = AtLimits {
        jobs: Vec::new(),
        notes: Vec::new(),
        inexpressible: 0,
    };
    for j in jobs {
        let re = splitfuzz::observe::memcg::realise(&j.prog, &j.policy, LINUX_DEFAULT);
        let finding = re.planned.run.violation_at.is_some();
        if !re.inexpressible.is_empty() {
            out.inexpressible += 1;
            say!(
                "{}: not expressible without injection{}: {}{}",
                j.name,
                if finding {
                    " (finding: reproduced without injection: not expressible)"
                } else {
                    ""
                },
                re.inexpressible.join("; "),
                if re.summary().is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", re.summary())
                }
            );
            if !run_inexpressible {
                continue;
            }
        }
        let note = re.summary();
        out.notes.push((!note.is_empty()).then_some(note));
        out.jobs.push(Job {
            memcg: Some(re.limits()),
            ..j
        });
    }
    out
}

/// Count and print one job's verdict.
fn report_job(job: &Job, j: &Judged, verbose: bool, stats: &mut Stats) {
    let p = &job.prog;
    // A saved finding whose model shows no violation in the guest's setting
    // (e.g. its plan now fails another allocation because the executor's
    // guard pages keep the arena's PMD tables) has nothing to reproduce: say
    // so, with the kernel's first difference.
    let expects = matches!(p.expect, Some(Expect::Violation { .. }));
    match &j.verdict {
        Verdict::Agree { .. } | Verdict::Diverge { .. } if expects => {
            stats.add_not_reproduced(p);
            let how = match &j.verdict {
                Verdict::Diverge { detail, .. } => format!("; the kernel: {detail}"),
                _ => "; the kernel agrees with it".into(),
            };
            say!(
                "{}: not reproduced: under {} the model shows no violation in the guest's setting (the arena's PMD tables always present){how}",
                job.name,
                job.policy
            );
        }
        _ => {
            stats.add(p, &j.verdict);
            print_verdict(&job.name, p, j, verbose);
            // Where the kernel did not do what the model did, the contract
            // says whether what it did instead is allowed (no preset).
            let differs = matches!(
                j.verdict,
                Verdict::Diverge { .. }
                    | Verdict::Finding {
                        reproduced: false,
                        ..
                    }
            );
            if differs && !(p.faults.pte_alloc.is_never() && p.faults.thp.is_never()) {
                say!(
                    "{}: the kernel's own behaviour by the contract: {}",
                    job.name,
                    contract_text(p, &splitfuzz::vm::check::judge(p, &j.run))
                );
            }
            if let (
                Some(_),
                Verdict::Finding {
                    reproduced,
                    deposit: false,
                    ..
                },
            ) = (&job.memcg, &j.verdict)
            {
                say!(
                    "{}: reproduced without injection: {}",
                    job.name,
                    if *reproduced { "yes" } else { "no" }
                );
            }
        }
    }
}

/// The closing summary of `vm run` (`inexpressible`: with the memcg trigger).
fn print_summary(
    stats: &Stats,
    inexpressible: Option<usize>,
    boots: usize,
    t: f64,
    skipped: &BTreeMap<String, usize>,
) {
    let run = stats.run();
    say!(
        "vm run: {}{} programs ({} run, {} unsupported), {} ops; agreed {} ({:.1}% of run), diverged {}, model violations {}; findings reproduced {}, not reproduced {}; {} agreed after feeding kernel THP fallbacks; {} boots; {:.1}s ({:.1} programs/minute)",
        match inexpressible {
            Some(n) => format!("memcg trigger: {n} not expressible, "),
            None => String::new(),
        },
        stats.programs,
        run,
        stats.programs - run,
        stats.ops,
        stats.agreed,
        stats.agreed_percent(),
        stats.diverged_total(),
        stats.model_violations,
        stats.reproduced,
        stats.not_reproduced,
        stats.fed,
        boots,
        t,
        stats.programs as f64 * 60.0 / t.max(1e-9)
    );
    for (k, n) in &stats.diverged {
        say!("  diverged ({k}): {n}");
    }
    for (k, n) in &stats.unsupported {
        say!("  unsupported ({k}): {n}");
    }
    for (why, n) in skipped {
        say!("  generator skipped {n} unsupported op(s): {why}");
    }
}

/// `vm exec`: exit 1 unless every executable exits 0.
pub fn exec(o: &VmOptions, bins: &[PathBuf]) -> Result<ExitCode> {
    for b in bins {
        if !b.is_file() {
            bail!("no executable at {}", b.display());
        }
    }
    say!("kernel: {}", o.kernel.display());
    let res = exec_binaries(o, bins)?;
    let mut ok = res.len() == bins.len();
    for (name, code, text) in &res {
        say!("== {name}");
        print!("{text}");
        match code {
            Some(c) => say!("== exit {c}"),
            None => say!("== killed (no exit within the bound)"),
        }
        ok &= *code == Some(0);
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
/// One program's line (and with `verbose` its kernel log and transcript).
fn print_verdict(name: &str, p: &Program, j: &Judged, verbose: bool) {
    match &j.verdict {
        Verdict::Agree { thp_fail } => {
            let fb = if thp_fail.is_empty() {
                String::new()
            } else {
                format!(" (kernel THP fallbacks fed to the model: fail thp at={thp_fail:?})")
            };
            say!("{name}: agree, {} ops{fb}", p.ops.len());
        }
        Verdict::Unsupported { op, why } => {
            let op = op.unwrap_or(0);
            say!("{name}: unsupported at op {op} `{}`: {why}", p.op_text(op))
        }
        Verdict::Diverge { kind, detail, .. } => {
            say!("{name}: DIVERGE ({kind}) at {detail}");
            for l in p.to_text().lines() {
                say!("    | {l}");
            }
        }
        Verdict::Finding {
            invariant,
            text,
            reproduced,
            evidence,
            deposit,
            ..
        } => {
            if *deposit {
                say!(
                    "{name}: MODEL VIOLATION under deposit ({}): {text}",
                    invariant.name()
                );
            }
            say!(
                "{name}: {} {}: {}",
                if *reproduced {
                    "reproduced"
                } else {
                    "not reproduced"
                },
                invariant.name(),
                evidence
            );
        }
    }
    if verbose {
        for (o, l) in &j.run.log {
            say!(
                "    kernel[{}]: {l}",
                o.map(|x| x.to_string()).unwrap_or_else(|| "-".into())
            );
        }
        print!("{}", j.run.hr.t.text());
    }
}

/// A contract verdict in words.
fn contract_text(p: &Program, c: &Contract) -> String {
    match c {
        Contract::Held => "held (a full effect, a clean failure, or an OOM retry)".into(),
        Contract::NoPlan => "nothing to judge (no allocation failed here)".into(),
        Contract::Diverged { op, detail } => format!(
            "not judged: the kernel differs from deposit before the failure, at op {op} `{}`: {detail}",
            p.op_text(*op)
        ),
        Contract::Broken { breach, op, detail } => format!(
            "BROKEN at op {op}: {} [{}]: {detail}",
            breach.name(),
            breach.severity()
        ),
    }
}
