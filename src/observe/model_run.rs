//! The model's side of a kernel run: the program in the kernel geometry, with
//! its fault plan plus the THP allocations the kernel failed by itself, as a
//! transcript of observation lines.

use super::line::*;
use crate::base::Geometry;
use crate::model::alloc::AllocKind;
use crate::model::mm::{Kernel, Pmd, Pte};
use crate::model::policy::{Policy, Preset};
use crate::prog::Program;
use crate::run::{self, OpResult};
use std::fmt::Write as _;
/// The observation line of mm `m` as the model predicts it (any geometry:
/// `pages` and `data` then count model pages; `diff` uses it in both).
pub fn model_line(k: &Kernel, m: usize) -> String {
    let mm = &k.mms[m];
    let p = k.ptrs();
    let mut states = vec![b'.'; k.pages()];
    for (slot, pmd) in mm.pmds.iter().enumerate() {
        let s = slot * p;
        match *pmd {
            Pmd::None => {}
            Pmd::Huge { .. } => states[s..s + p].fill(b'H'),
            Pmd::HugeZero => states[s..s + p].fill(b'Z'),
            Pmd::Migration { .. } => states[s..s + p].fill(b'm'),
            // A PMD swap entry (lazy-v4-proposed): every page swapped out.
            Pmd::Swap { .. } => states[s..s + p].fill(b's'),
            Pmd::Table(t) => {
                for i in 0..p {
                    states[s + i] = match k.pte(t, i) {
                        Pte::None => b'.',
                        Pte::Guard => b'g',
                        Pte::Present { .. } => b'p',
                        Pte::Zero => b'z',
                        Pte::Swap(_) => b's',
                        Pte::Migration { .. } => b'm',
                    };
                }
            }
        }
    }
    let thp = mm
        .pmds
        .iter()
        .filter(|x| matches!(x, Pmd::Huge { .. }))
        .count();
    let mut out = String::new();
    let _ = write!(
        out,
        "mm {m} pte {} anon {} thp {thp} vmas ",
        mm.nr_ptes, mm.rss_anon
    );
    let pb = k.geom.page_bytes();
    let mut vmas: Vec<_> = mm
        .vmas
        .iter()
        .map(|v| (v.start as u64 * pb, v.end as u64 * pb, v.write, v.thp))
        .collect();
    fmt_vmas(&mut vmas, &mut out);
    out.push_str(" pages ");
    rle_states(&states, &mut out);
    out.push_str(" data ");
    let mut tok = String::new();
    rle_data(&states, &|pg| k.page_value(m, pg), &mut out, &mut tok);
    out
}

pub struct ModelRun {
    pub t: Transcript,
    /// THP allocation calls made before / after each op.
    pub thp_calls: Vec<(u32, u32)>,
    pub violation: Option<String>,
    /// The violation's op (== ops.len() for the teardown) and invariant.
    pub violation_at: Option<(usize, crate::check::Invariant)>,
}

/// A fault plan plus THP calls the kernel failed by itself.
pub(crate) struct PlanPlus {
    pub(crate) plan: Box<dyn crate::model::alloc::FailPolicy>,
    pub(crate) extra: Vec<u32>,
}

impl crate::model::alloc::FailPolicy for PlanPlus {
    fn should_fail(&self, c: &crate::model::alloc::Call) -> bool {
        self.plan.should_fail(c) || self.extra.contains(&c.n)
    }
    fn fails_forever(&self, c: &crate::model::alloc::Call) -> bool {
        self.plan.fails_forever(c)
    }
}

/// Run the model (deposit, kernel geometry, no fault plan) with the given THP
/// calls failed: what the host kernel is compared with.
pub fn model_run(prog: &Program, linux: (u32, u32), thp_fail: &[u32]) -> ModelRun {
    let mut p = prog.clone();
    p.faults = Default::default();
    model_run_with(&p, &Policy::preset(Preset::Deposit), linux, thp_fail)
}

/// Run the model under `policy` in the kernel geometry with the program's own
/// fault plan, plus the THP calls in `thp_fail` failed.
pub fn model_run_with(
    prog: &Program,
    policy: &Policy,
    linux: (u32, u32),
    thp_fail: &[u32],
) -> ModelRun {
    let pte = prog.faults.pte_alloc.policy();
    let thp = Box::new(PlanPlus {
        plan: prog.faults.thp.policy(),
        extra: thp_fail.to_vec(),
    });
    model_run_policies(prog, policy, linux, pte, thp, &mut |_, _, _| {})
}

/// Run the model under `policy` in the kernel geometry with these fail
/// policies (the program's plan is ignored); `on_op` sees the kernel before
/// (phase 0) and after (phase 1) each op, as `run::run_on`'s hook.
pub fn model_run_policies(
    prog: &Program,
    policy: &Policy,
    linux: (u32, u32),
    pte: Box<dyn crate::model::alloc::FailPolicy>,
    thp: Box<dyn crate::model::alloc::FailPolicy>,
    on_op: &mut dyn FnMut(&Kernel, usize, u8),
) -> ModelRun {
    use crate::model::alloc::FaultInjector;
    let k = Kernel::new(
        Geometry::KERNEL,
        policy.clone(),
        FaultInjector::new(pte, thp),
    );
    let mut k = {
        // run::build()'s kernel, with the plan plus the kernel's own failures.
        let mut b = run::build(prog, &run::RunConfig::new(policy.clone(), Geometry::KERNEL));
        b.alloc = k.alloc;
        b
    };
    // Per-op allocation and charge logs (memcg.rs reads them in `on_op`).
    k.alloc.record = true;
    k.linux = linux;
    // The executor's guard pages keep the arena's PMD tables (and PUDs).
    k.arena_neighbours = true;
    let p = prog;
    let n = p.ops.len();
    let mut obs: Vec<Vec<String>> = vec![Vec::new(); n];
    let mut allocs: Vec<Option<(u32, u32)>> = vec![None; n];
    let mut calls = vec![(0u32, 0u32); n];
    let mut results = Vec::new();
    let violation = run::run_on(
        &mut k,
        p,
        &mut results,
        &mut |k, i, phase| {
            on_op(k, i, phase);
            let c = k.alloc.calls(AllocKind::Thp);
            if phase == 0 {
                calls[i].0 = c;
            } else {
                calls[i].1 = c;
                allocs[i] = Some((k.alloc.calls(AllocKind::PteTable), c));
                obs[i] = (0..k.mms.len())
                    .filter(|&m| k.mms[m].alive)
                    .map(|m| model_line(k, m))
                    .collect();
            }
        },
        true,
    );
    let mut res: Vec<Option<String>> = results
        .iter()
        .map(|r| match r {
            OpResult::Ok => Some("ok".to_string()),
            OpResult::Err(e) => Some(model_errno(*e)),
            OpResult::NoSuchMm => None,
            OpResult::OomLoop => Some("oom-loop".to_string()),
        })
        .collect();
    res.resize(n, None);
    // Ops the model never reached (after a violation) have no allocation counts.
    for (i, a) in allocs.iter_mut().enumerate() {
        if i >= results.len() && obs[i].is_empty() {
            *a = None;
        }
    }
    ModelRun {
        t: Transcript {
            results: res,
            obs,
            allocs,
        },
        thp_calls: calls,
        violation_at: violation.as_ref().map(|v| (v.op_index, v.invariant)),
        violation: violation.map(|v| v.to_string()),
    }
}
