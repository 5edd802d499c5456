//! `vm check`: judge a kernel by the contract, with no preset. Each program
//! runs once as it is (no failure) to count the allocations each op makes on
//! this kernel; then once per op-scoped plan that fails one of them (the
//! k-th `pte_alloc_one()` or THP allocation inside the op, k = 1..nth, and
//! every one inside it), each run judged by `verdict::contract` against the
//! deposit model with no failure.

use super::batch::{Job, Judged};
use super::console::{is_complaint, split_backtrace};
use super::judge::GuestRun;
use super::protocol::End;
use crate::base::Severity;
use crate::check::contract::Breach;
use crate::model::policy::{Policy, Preset};
use crate::observe::{model_run_with, Transcript};
use crate::prog::{Plan, Program};
use crate::verdict::contract::{self, Contract, KernelRun};
use std::collections::BTreeMap;

/// A program as `vm check` runs it: no plan, no expectation, deposit.
pub fn plain(p: &Program) -> Program {
    let mut q = p.clone();
    q.faults = Default::default();
    q.expect = None;
    q.expect_results.clear();
    q.policy = Some("deposit".into());
    q.overrides.clear();
    q
}

/// The job of a program (judged by the contract, not by this policy).
pub fn job(name: String, prog: Program) -> Job {
    Job {
        name,
        prog,
        policy: Policy::preset(Preset::Deposit),
        memcg: None,
    }
}

/// Allocation calls each op made in a plain run: (pte_alloc_one, THP), from
/// the cumulative counts after each op (None where the op did not run).
pub fn calls_per_op(t: &Transcript) -> Vec<Option<(u32, u32)>> {
    let mut prev = (0u32, 0u32);
    t.allocs
        .iter()
        .map(|a| {
            a.map(|(p, h)| {
                let d = (p.saturating_sub(prev.0), h.saturating_sub(prev.1));
                prev = (p, h);
                d
            })
        })
        .collect()
}

/// The op-scoped plans that fail the allocations op `i` made: the k-th call
/// (k = 1..=min(calls, nth)) and every call, per kind.
pub fn variants(p: &Program, calls: &[Option<(u32, u32)>], nth: u32) -> Vec<Program> {
    let mut out = Vec::new();
    for (i, c) in calls.iter().enumerate() {
        let Some((pte, thp)) = *c else { continue };
        for (is_pte, n) in [(true, pte), (false, thp)] {
            if n == 0 {
                continue;
            }
            let plans = (1..=n.min(nth))
                .map(|k| Plan::InOp {
                    op: i,
                    nth: Some(k),
                })
                .chain(std::iter::once(Plan::InOp { op: i, nth: None }));
            for plan in plans {
                let mut q = p.clone();
                if is_pte {
                    q.faults.pte_alloc = plan;
                } else {
                    q.faults.thp = plan;
                }
                out.push(q);
            }
        }
    }
    out
}

/// The deposit model's run of `p` with no failure, in the kernel geometry.
pub fn reference(p: &Program, linux: (u32, u32)) -> Transcript {
    model_run_with(&plain(p), &Policy::preset(Preset::Deposit), linux, &[]).t
}

/// Judge one variant's guest run.
pub fn judge(p: &Program, g: &GuestRun) -> Contract {
    let r = reference(p, g.linux);
    with_kernel_run(g, |k| contract::judge(p, &r, k))
}

/// Where a plain run (no failure) first differs from the deposit model, if
/// anywhere: such a program is not judged by the contract.
pub fn plain_difference(p: &Program, g: &GuestRun) -> Option<(usize, String)> {
    let r = reference(p, g.linux);
    with_kernel_run(g, |k| contract::plain_difference(p, &r, k))
}

fn with_kernel_run<T>(g: &GuestRun, f: impl FnOnce(&KernelRun) -> T) -> T {
    let complaint = |l: &str| is_complaint(l);
    f(&KernelRun {
        t: &g.hr.t,
        hung: match g.end {
            // Unkillable: SIGKILL did not end it while its failures went on
            // (or its task survived SIGKILL even after they stopped).
            End::Hung(i) => Some((i, g.stuck || g.killable == Some(false))),
            _ => None,
        },
        crashed: match g.end {
            End::Crashed => Some(g.last_op.unwrap_or(0)),
            _ => None,
        },
        log: &g.log,
        complaint: &complaint,
        fault_growth: g.fault_growth,
    })
}

/// One kind of breach: the breach and the kind of op, with the first
/// program that showed it.
#[derive(Clone, Debug)]
pub struct Finding {
    pub breach: Breach,
    pub op_kind: String,
    pub count: usize,
    pub prog: Program,
    pub op: usize,
    pub detail: String,
    /// The kernel's log lines during the op, without stack dumps.
    pub evidence: Vec<String>,
    /// The first failing allocation's backtrace during the op, innermost
    /// first (function names; empty when the kernel printed none).
    pub backtrace: Vec<String>,
    /// Seconds into the failure runs when it was first seen.
    pub first_secs: f64,
    /// The allocation calls before op `op` in the plain run (pte, THP): with
    /// them the op-scoped plan is a plan counted over the whole program, for
    /// a reproducer on this same kernel (`emit-c`).
    pub calls_before: (u32, u32),
}

impl Finding {
    pub fn severity(&self) -> Severity {
        self.breach.severity()
    }
    pub fn signature(&self) -> String {
        format!("{} {}", self.breach.name(), self.op_kind)
    }
    /// The program with its op-scoped plan as a whole-program plan (the
    /// same calls on this kernel while the op runs; `all` keeps failing after
    /// it), for `emit-c`.
    pub fn absolute(&self) -> Program {
        let mut q = self.prog.clone();
        for (plan, before) in [
            (&mut q.faults.pte_alloc, self.calls_before.0),
            (&mut q.faults.thp, self.calls_before.1),
        ] {
            match plan {
                Plan::InOp { nth: Some(k), .. } => *plan = Plan::Nth(before + *k),
                // Every call from the op's first on: the same while the op
                // runs (a finding's op does not return, or is the last one
                // that matters).
                Plan::InOp { nth: None, .. } => *plan = Plan::From(before + 1),
                _ => {}
            }
        }
        q
    }
}

/// The counts of a check and its findings by signature.
#[derive(Default)]
pub struct Tally {
    pub programs: usize,
    pub variants: usize,
    pub held: usize,
    pub no_call: usize,
    pub diverged: BTreeMap<String, usize>,
    pub unsupported: BTreeMap<String, usize>,
    pub findings: BTreeMap<String, Finding>,
}

impl Tally {
    /// Count one variant's verdict; `calls_before` from its plain run,
    /// `secs` into the failure runs.
    pub fn add(&mut self, p: &Program, j: &Judged, calls_before: (u32, u32), secs: f64) {
        if let crate::verdict::Verdict::Unsupported { why, .. } = &j.verdict {
            self.variants += 1;
            let key = why.split(':').next().unwrap_or(why).to_string();
            *self.unsupported.entry(key).or_default() += 1;
            return;
        }
        self.add_contract(p, &j.run, judge(p, &j.run), calls_before, secs);
    }

    /// Count one variant's contract verdict `c` on its run `run`.
    pub fn add_contract(
        &mut self,
        p: &Program,
        run: &GuestRun,
        c: Contract,
        calls_before: (u32, u32),
        secs: f64,
    ) {
        self.variants += 1;
        match c {
            Contract::Held => self.held += 1,
            Contract::NoPlan => self.no_call += 1,
            Contract::Diverged { op, .. } => {
                *self.diverged.entry(p.op_kind(op)).or_default() += 1;
            }
            Contract::Broken { breach, op, detail } => {
                let kind = p.op_kind(op);
                let sig = format!("{} {kind}", breach.name());
                let (lines, backtrace) = split_backtrace(
                    run.log
                        .iter()
                        .filter(|(o, _)| *o == Some(op))
                        .map(|(_, l)| l.as_str()),
                );
                let evidence = lines
                    .iter()
                    .map(|l| l.trim().to_string())
                    .take(40)
                    .collect();
                self.findings
                    .entry(sig)
                    .and_modify(|f| f.count += 1)
                    .or_insert(Finding {
                        breach,
                        op_kind: kind,
                        count: 1,
                        prog: p.clone(),
                        op,
                        detail,
                        evidence,
                        backtrace,
                        first_secs: secs,
                        calls_before,
                    });
            }
        }
    }

    /// Findings, worst first.
    pub fn sorted(&self) -> Vec<&Finding> {
        let mut v: Vec<&Finding> = self.findings.values().collect();
        v.sort_by_key(|f| (f.severity(), f.signature()));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_fail_each_call_an_op_made() {
        let p =
            Program::parse("mmap 0 4M thp\ntouch 0 2M write\nmadvise 0 256K dontneed\n").unwrap();
        let t = Transcript {
            results: vec![Some("ok".into()); 3],
            obs: vec![vec![]; 3],
            allocs: vec![Some((0, 0)), Some((1, 1)), Some((3, 1))],
        };
        let calls = calls_per_op(&t);
        assert_eq!(calls, vec![Some((0, 0)), Some((1, 1)), Some((2, 0))]);
        let v = variants(&p, &calls, 2);
        let plans: Vec<String> = v
            .iter()
            .map(|q| format!("{} {}", q.faults.pte_alloc, q.faults.thp))
            .collect();
        assert_eq!(
            plans,
            [
                "op=1:nth=1 never",
                "op=1:all never",
                "never op=1:nth=1",
                "never op=1:all",
                "op=2:nth=1 never",
                "op=2:nth=2 never",
                "op=2:all never",
            ]
        );
    }
}
