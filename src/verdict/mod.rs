//! A kernel's run judged against the model: fit the model to the THP
//! allocations the kernel failed by itself, then agree or diverge.

pub mod contract;
pub mod stats;

use crate::base::Invariant;
use crate::host::{host_run, Host, HostRun};
use crate::model::policy::{Policy, Preset};
use crate::observe::{compare::*, line::*, model_run::*};
use crate::prog::Program;
use anyhow::{bail, Result};
pub use stats::Stats;
/// Run the model under `policy` with the program's fault plan and compare it
/// with the kernel's run. Where an op diverges and the kernel fell back from
/// THP allocations by itself during it (/proc/vmstat), the model is re-run with
/// those THP calls failed too (`fail thp at=...`), keeping what explains the
/// kernel best. Returns the model run, the THP calls fed, and the divergence.
pub fn fit_model(
    prog: &Program,
    policy: &Policy,
    linux: (u32, u32),
    hr: &HostRun,
) -> (ModelRun, Vec<u32>, Option<Divergence>) {
    fit_model_by(hr, &|f| model_run_with(prog, policy, linux, f))
}

/// `fit_model` with any model: `run(thp_fail)` runs it with those THP calls
/// failed besides its own plan.
pub fn fit_model_by(
    hr: &HostRun,
    run: &dyn Fn(&[u32]) -> ModelRun,
) -> (ModelRun, Vec<u32>, Option<Divergence>) {
    let mut fails: Vec<u32> = Vec::new();
    let mut mr = run(&fails);
    let mut d = model_divergence(&mr, &hr.t);
    let mut rounds = 0;
    while let Some(dv) = &d {
        if rounds >= 16 || hr.fallbacks.get(dv.op).copied().unwrap_or(0) == 0 {
            break;
        }
        rounds += 1;
        let (lo, hi) = mr.thp_calls[dv.op];
        let mut best: Option<(usize, Vec<u32>, ModelRun, Option<Divergence>)> = None;
        for c in lo + 1..=hi {
            if fails.contains(&c) {
                continue;
            }
            let mut f = fails.clone();
            f.push(c);
            f.sort_unstable();
            let r = run(&f);
            let nd = model_divergence(&r, &hr.t);
            let score = nd.as_ref().map(|x| x.op).unwrap_or(usize::MAX);
            if score > dv.op && best.as_ref().is_none_or(|b| score > b.0) {
                best = Some((score, f, r, nd));
            }
        }
        match best {
            Some((_, f, r, nd)) => {
                fails = f;
                mr = r;
                d = nd;
            }
            None => break,
        }
    }
    (mr, fails, d)
}

/// What a kernel's run of one program (on the host or in the guest) says
/// about the model: the one verdict type of `real`, `vm run` and the tests.
#[derive(Clone, Debug)]
pub enum Verdict {
    /// Every op agrees. `thp_fail`: THP allocations the kernel failed by
    /// itself, fed to the model.
    Agree { thp_fail: Vec<u32> },
    /// The first difference. `kind`: the field that differs (`res`, `alloc`,
    /// `pages`, ...), or hang / crash / stall / broken / complaint; `detail`:
    /// the op and both sides, with the kernel's evidence.
    Diverge {
        kind: String,
        op: usize,
        detail: String,
        thp_fail: Vec<u32>,
        /// khugepaged collapsed pages during the run (a host's own activity).
        khugepaged: bool,
    },
    /// The program cannot run on this kernel (at op `op`, or at all).
    Unsupported { op: Option<usize>, why: String },
    /// The model broke an invariant: a finding (lazy policies) or a model
    /// error (deposit); `reproduced`: the kernel did what the model did, up to
    /// and including the violating op.
    Finding {
        invariant: Invariant,
        text: String,
        op: usize,
        reproduced: bool,
        evidence: String,
        deposit: bool,
    },
}

impl Verdict {
    /// A divergence `d` of program `p` as a verdict.
    pub fn diverge(p: &Program, d: &Divergence, thp_fail: Vec<u32>, khugepaged: bool) -> Verdict {
        Verdict::Diverge {
            kind: d.field.split('@').next().unwrap_or("").to_string(),
            op: d.op,
            detail: d.describe(p),
            thp_fail,
            khugepaged,
        }
    }

    /// The reason of an Unsupported verdict, as `real` prints it.
    pub fn unsupported_text(op: Option<usize>, why: &str) -> String {
        match op {
            Some(i) => format!("op {i}: {why}"),
            None => why.to_string(),
        }
    }
}

pub struct Checked {
    pub verdict: Verdict,
    pub model: Option<Transcript>,
    pub host: Option<Transcript>,
}

/// Run a program on both sides and compare.
pub fn check_program(host: &Host, prog: &Program) -> Result<Checked> {
    if let Some(why) = host.program_unsupported(prog) {
        return Ok(Checked {
            verdict: Verdict::Unsupported { op: None, why },
            model: None,
            host: None,
        });
    }
    let mut attempts = 0;
    loop {
        attempts += 1;
        let hr = host_run(prog)?;
        if let Some((i, why)) = &hr.unsupported {
            return Ok(Checked {
                verdict: Verdict::Unsupported {
                    op: Some(*i),
                    why: why.clone(),
                },
                model: None,
                host: None,
            });
        }
        if let Some(i) = hr.hung {
            bail!("op {i} `{}` did not return within 60 s", prog.op_text(i));
        }
        if let Some((i, e)) = &hr.broken {
            bail!("op {i} `{}`: {e}", prog.op_text(*i));
        }
        let mut p = prog.clone();
        p.faults = Default::default();
        let (mr, fails, d) = fit_model(&p, &Policy::preset(Preset::Deposit), host.linux(), &hr);
        if let (Some(text), Some((op, invariant))) = (&mr.violation, mr.violation_at) {
            if d.is_none() {
                return Ok(Checked {
                    verdict: Verdict::Finding {
                        invariant,
                        text: text.clone(),
                        op,
                        reproduced: true,
                        evidence: String::new(),
                        deposit: true,
                    },
                    model: Some(mr.t),
                    host: Some(hr.t),
                });
            }
        }
        let verdict = match d {
            None => Verdict::Agree { thp_fail: fails },
            Some(_) if hr.khugepaged && attempts < 3 => continue,
            Some(d) => Verdict::diverge(prog, &d, fails, hr.khugepaged),
        };
        return Ok(Checked {
            verdict,
            model: Some(mr.t),
            host: Some(hr.t),
        });
    }
}
