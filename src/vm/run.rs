//! `splitfuzz vm run`: boot a guest kernel under QEMU, run programs in it with
//! the shared executor (`vm guest`), and compare every op with the model under
//! a policy in the kernel geometry, as `real` does on the host.
//!
//! One boot runs the batch's programs in order. A program that hangs the
//! executor (an op that does not return within `--timeout`), crashes the kernel
//! (panic → reboot → QEMU exits), or stalls the guest ends with the kernel's
//! evidence, and the batch boots again at the next program. The kernel's
//! complaints (BUG/Oops, WARNING, bad pmd, Bad rss-counter, Bad page state,
//! soft lockup, hung task) are observations, attributed to the op during which
//! the kernel printed them (the executor marks each op in the kernel log).

use super::batch::{exec_binaries, run_batch, Job, Judged};
use super::qemu::VmOptions;
use crate::host;
use crate::model::policy::{Policy, Preset};
use crate::prog::Program;
use crate::verdict::{Stats, Verdict};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

pub fn print_verdict(name: &str, p: &Program, j: &Judged, verbose: bool) {
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

pub struct RunRequest {
    pub files: Vec<PathBuf>,
    pub generate: Option<usize>,
    pub seed: u64,
    pub policy: Option<String>,
    /// Realise fault plans with memory-cgroup limits instead of injection.
    pub memcg: bool,
    /// Also run the programs the model cannot predict at the limits.
    pub run_inexpressible: bool,
}

fn policy_named(name: &str) -> Result<Policy> {
    let preset = Preset::from_name(name).ok_or_else(|| {
        anyhow!("unknown policy '{name}' (deposit, lazy-v1, lazy-v3, lazy-fixed)")
    })?;
    Ok(Policy::preset(preset))
}

/// The guest's capabilities, as the generator sees them.
pub fn guest_host() -> host::Host {
    host::Host {
        thp_enabled: "madvise".into(),
        defrag: "madvise".into(),
        use_zero_page: true,
        max_ptes_none: 511,
        swap_kb: 262_144,
        numa_nodes: 2,
        fail_nth: true,
        io_uring: true,
        uffd_wp: true,
        fail_plans: true,
        uffd_move: true,
        uffd_async: true,
        drop_caches: true,
        kernel: "guest".into(),
    }
}

pub fn vm_run_main(o: &VmOptions, r: &RunRequest) -> Result<ExitCode> {
    let mut jobs: Vec<Job> = Vec::new();
    for f in &r.files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let p = Program::parse(&text).map_err(|e| anyhow!("{}: {e}", f.display()))?;
        let name = r
            .policy
            .clone()
            .or_else(|| p.policy.clone())
            .unwrap_or_else(|| "deposit".into());
        let mut policy = policy_named(&name)?;
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
        let policy = policy_named(&name)?;
        for (i, p) in guest_host()
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
    if jobs.is_empty() {
        bail!("vm run needs FILE... or --generate N");
    }
    if !o.kernel.is_file() {
        bail!("no kernel at {}", o.kernel.display());
    }
    say!("kernel: {}", o.kernel.display());
    // The memcg trigger: each plan becomes limits on the ops that hold its
    // failures; a program the model cannot predict at those limits is
    // reported and not run.
    let mut notes: Vec<Option<String>> = vec![None; jobs.len()];
    let mut inexpressible = 0usize;
    if r.memcg {
        let mut keep = Vec::new();
        let mut keep_notes = Vec::new();
        for j in jobs {
            let re =
                crate::observe::memcg::realise(&j.prog, &j.policy, crate::model::mm::LINUX_DEFAULT);
            let finding = re.planned.run.violation_at.is_some();
            if !re.inexpressible.is_empty() {
                inexpressible += 1;
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
                if !r.run_inexpressible {
                    continue;
                }
            }
            let note = re.summary();
            keep_notes.push((!note.is_empty()).then_some(note));
            keep.push(Job {
                memcg: Some(re.limits()),
                ..j
            });
        }
        jobs = keep;
        notes = keep_notes;
        if jobs.is_empty() {
            say!("vm run: {inexpressible} programs, none expressible without injection");
            return Ok(ExitCode::SUCCESS);
        }
    }
    let t0 = Instant::now();
    let mut stats = Stats::default();
    let boots = run_batch(o, &jobs, &mut |i, j| {
        let p = &jobs[i].prog;
        // A saved finding whose model shows no violation in the guest's
        // setting (e.g. its plan now fails another allocation because the
        // executor's guard pages keep the arena's PMD tables) has nothing to
        // reproduce: say so, with the kernel's first difference.
        let expects = matches!(p.expect, Some(crate::prog::Expect::Violation { .. }));
        match &j.verdict {
            Verdict::Agree { .. } | Verdict::Diverge { .. } if expects => {
                stats.add_not_reproduced(p);
                let how = match &j.verdict {
                    Verdict::Diverge { detail, .. } => format!("; the kernel: {detail}"),
                    _ => "; the kernel agrees with it".into(),
                };
                say!(
                    "{}: not reproduced: under {} the model shows no violation in the guest's setting (the arena's PMD tables always present){how}",
                    jobs[i].name,
                    jobs[i].policy
                );
            }
            _ => {
                stats.add(p, &j.verdict);
                print_verdict(&jobs[i].name, p, j, o.verbose);
                if let (
                    Some(_),
                    Verdict::Finding {
                        reproduced,
                        deposit: false,
                        ..
                    },
                ) = (&jobs[i].memcg, &j.verdict)
                {
                    say!(
                        "{}: reproduced without injection: {}",
                        jobs[i].name,
                        if *reproduced { "yes" } else { "no" }
                    );
                }
            }
        }
        if let Some(n) = &notes[i] {
            say!("{}: {n}", jobs[i].name);
        }
    })?;
    let t = t0.elapsed().as_secs_f64();
    let run = stats.run();
    say!(
        "vm run: {}{} programs ({} run, {} unsupported), {} ops; agreed {} ({:.1}% of run), diverged {}, model violations {}; findings reproduced {}, not reproduced {}; {} agreed after feeding kernel THP fallbacks; {} boots; {:.1}s ({:.1} programs/minute)",
        if r.memcg {
            format!("memcg trigger: {inexpressible} not expressible, ")
        } else {
            String::new()
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
    for (why, n) in &skipped {
        say!("  generator skipped {n} unsupported op(s): {why}");
    }
    Ok(
        if stats.diverged_total() > 0 || stats.model_violations > 0 {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        },
    )
}

pub fn vm_exec_main(o: &VmOptions, bins: &[PathBuf]) -> Result<ExitCode> {
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
