//! The memcg trigger: a program's fault plan realised without fault injection,
//! by putting the program's memory cgroup at its limit for the ops that hold
//! the planned failures (`vm run --trigger memcg`, `emit-c --trigger memcg`).
//!
//! Why a limit fails these allocations (Linux 7.2 source):
//! * `pte_alloc_one()` allocates with `GFP_PGTABLE_USER`, which includes
//!   `__GFP_ACCOUNT` (include/asm-generic/pgalloc.h); mm/page_alloc.c
//!   `__alloc_frozen_pages_noprof()` frees the page again when
//!   `__memcg_kmem_charge_page()` fails.
//! * A THP folio is charged by `mem_cgroup_charge()` in
//!   mm/huge_memory.c:`vma_alloc_anon_folio_pmd()` (fault, CoW of the huge zero
//!   page) and mm/khugepaged.c:`alloc_charge_folio()` (collapse). The huge zero
//!   folio (mm/huge_memory.c:`get_huge_zero_folio()`) is not charged, and a
//!   migration target takes over the old folio's charge without a limit check
//!   (mm/memcontrol.c:`mem_cgroup_migrate()` → `commit_charge()`).
//! * Every charge goes through mm/memcontrol.c:`try_charge_memcg()`: first the
//!   per-cpu stock (`consume_stock()`), then `page_counter_try_charge()`,
//!   then reclaim, `drain_all_stock()`, and for order ≤ 3
//!   `mem_cgroup_oom()`, which finds no victim when every task of the cgroup
//!   has oom_score_adj -1000 (mm/oom_kill.c:`out_of_memory()`, "Out of memory
//!   and no killable processes..."), so the charge fails with -ENOMEM.
//!   That is why the runner drains the stock (writing memory.max below the
//!   usage: mm/memcontrol.c:`memory_max_write()` calls `drain_all_stock()`)
//!   and sets memory.swap.max to 0 while the limit holds (reclaim could
//!   otherwise swap the program's pages out to make room).
//!
//! A limit is not a fault plan: it fails every charged allocation of the op,
//! not just the n-th, and also charges the plan does not count (order-0 anon
//! folios, accounted slab: `alloc::Charge`). [`realise`] says what the model
//! predicts when every counted charged allocation of the limited ops fails,
//! how that differs from the plan, and which charges outside the model the
//! limited ops make (then the program is not expressible).

use crate::model::alloc::{AllocKind, Call, FailPolicy};
use crate::model::mm::Kernel;
use crate::model::policy::Policy;
use crate::observe::model_run::{self, ModelRun};
use crate::prog::Program;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Is an allocation the plan counts charged to the task's memory cgroup?
pub fn charged(kind: AllocKind, site: &str) -> bool {
    match kind {
        AllocKind::PteTable => true,
        AllocKind::Thp => !matches!(site, "get_huge_zero_folio" | "alloc_migration_target"),
        // Swap space is not charged as memory (and no kernel has the plan).
        AllocKind::SwapCluster => false,
    }
}

/// Fails every charged call made while the current op is limited.
struct LimitPolicy {
    kind: AllocKind,
    cur: Arc<AtomicUsize>,
    limited: Arc<Vec<bool>>,
    /// THP calls the kernel failed by itself (fitted, as `real::fit_model`).
    extra: Vec<u32>,
}

impl LimitPolicy {
    fn on(&self) -> bool {
        self.limited
            .get(self.cur.load(Ordering::Relaxed))
            .copied()
            .unwrap_or(false)
    }
}

impl FailPolicy for LimitPolicy {
    fn should_fail(&self, c: &Call) -> bool {
        (self.on() && charged(self.kind, c.site)) || self.extra.contains(&c.n)
    }
    fn fails_forever(&self, _: &Call) -> bool {
        // The limit holds until the op returns: a retry loop inside the op
        // never gets an allocation.
        self.on()
    }
}

/// One failed or made allocation, as the per-op summaries print them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpAllocs {
    /// (kind name, call number, site) of the failed calls.
    pub failed: Vec<(&'static str, u32, &'static str)>,
    /// Counted calls the op made.
    pub calls: usize,
    /// Charged allocations the plan does not count, (what, site).
    pub charges: Vec<(&'static str, &'static str)>,
    /// Pages (anon, swap entries, page tables over the live mms) the op
    /// released: what it may uncharge while it runs.
    pub freed: u64,
}

/// Anon pages, swap entries and page tables over the live mms (a folio
/// mapped by two mms counts twice: an upper bound of what unmapping frees).
fn footprint(k: &Kernel) -> i64 {
    k.mms
        .iter()
        .filter(|m| m.alive)
        .map(|m| m.rss_anon + m.rss_swap + m.nr_ptes)
        .sum()
}

/// A model run with per-op allocation summaries.
pub struct Traced {
    pub run: ModelRun,
    pub ops: Vec<OpAllocs>,
}

fn traced(
    prog: &Program,
    policy: &Policy,
    linux: (u32, u32),
    pte: Box<dyn FailPolicy>,
    thp: Box<dyn FailPolicy>,
    cur: Option<Arc<AtomicUsize>>,
) -> Traced {
    let n = prog.ops.len();
    let mut ops = vec![OpAllocs::default(); n];
    let mut at = (0usize, 0usize);
    let mut fp = 0i64;
    let run =
        model_run::model_run_policies(prog, policy, linux, pte, thp, &mut |k: &Kernel, i, ph| {
            if ph == 0 {
                if let Some(c) = &cur {
                    c.store(i, Ordering::Relaxed);
                }
                at = (k.alloc.log.len(), k.alloc.charges.len());
                fp = footprint(k);
            } else if i < n {
                let o = &mut ops[i];
                o.freed = (fp - footprint(k)).max(0) as u64;
                for r in &k.alloc.log[at.0.min(k.alloc.log.len())..] {
                    o.calls += 1;
                    if r.failed {
                        o.failed.push((r.kind.name(), r.call, r.site));
                    }
                }
                for c in &k.alloc.charges[at.1.min(k.alloc.charges.len())..] {
                    o.charges.push((c.what.name(), c.site));
                }
            }
        });
    Traced { run, ops }
}

/// The plan and its memcg realisation.
pub struct Realisation {
    /// Ops run with the cgroup at its limit.
    pub limited: Vec<usize>,
    /// The run under the program's plan (with injection).
    pub planned: Traced,
    /// The model's prediction under the limits (every charged counted call of
    /// a limited op fails).
    pub realised: Traced,
    /// How the realisation differs from the plan, one line per op (empty: the
    /// same failures).
    pub differs: Vec<String>,
    /// Why the model cannot predict the limited run (charges it does not
    /// fail), one line per op; empty when it can.
    pub inexpressible: Vec<String>,
}

impl Realisation {
    /// The limited ops with the pages each may free while it runs (plus a
    /// margin of 16 for slab and per-cpu stock pages the model does not see):
    /// the guest sets memory.max that much lower (`real::Limit::set`).
    pub fn limits(&self) -> Vec<(usize, u64)> {
        self.limited
            .iter()
            .map(|&i| (i, self.realised.ops[i].freed + 16))
            .collect()
    }

    /// The model the guest run is judged against, with `thp_fail` (THP calls
    /// the kernel failed by itself) failed besides the limits.
    pub fn model(
        &self,
        prog: &Program,
        policy: &Policy,
        linux: (u32, u32),
        thp_fail: &[u32],
    ) -> ModelRun {
        limited_run(prog, policy, linux, &self.limited, thp_fail).run
    }

    /// Does the realisation keep the plan's finding (same invariant)?
    pub fn keeps_finding(&self) -> Option<bool> {
        let (_, inv) = self.planned.run.violation_at?;
        Some(self.realised.run.violation_at.map(|(_, i)| i) == Some(inv))
    }

    /// The per-program summary line(s): empty when the realisation is the plan.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        if self.limited.is_empty() {
            return s;
        }
        let _ = write!(
            s,
            "memcg limit at op{} {}",
            if self.limited.len() > 1 { "s" } else { "" },
            self.limited
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        if self.differs.is_empty() {
            s.push_str(": fails exactly the planned allocations");
        } else {
            s.push_str(": differs from the plan: ");
            s.push_str(&self.differs.join("; "));
        }
        s
    }
}

/// The model at the limits (`limited` ops run at the cgroup's limit), with
/// `thp_fail` (THP calls the kernel failed by itself) failed besides: what a
/// `--trigger memcg` guest run is judged against.
pub fn model_at_limits(
    prog: &Program,
    policy: &Policy,
    linux: (u32, u32),
    limited: &[usize],
    thp_fail: &[u32],
) -> ModelRun {
    limited_run(prog, policy, linux, limited, thp_fail).run
}

fn limited_run(
    prog: &Program,
    policy: &Policy,
    linux: (u32, u32),
    limited: &[usize],
    thp_fail: &[u32],
) -> Traced {
    let n = prog.ops.len();
    let mut mask = vec![false; n];
    for &i in limited {
        if i < n {
            mask[i] = true;
        }
    }
    let mask = Arc::new(mask);
    // Before the first op: no limit.
    let cur = Arc::new(AtomicUsize::new(usize::MAX));
    let pol = |kind, extra: Vec<u32>| -> Box<dyn FailPolicy> {
        Box::new(LimitPolicy {
            kind,
            cur: cur.clone(),
            limited: mask.clone(),
            extra,
        })
    };
    traced(
        prog,
        policy,
        linux,
        pol(AllocKind::PteTable, Vec::new()),
        pol(AllocKind::Thp, thp_fail.to_vec()),
        Some(cur.clone()),
    )
}

/// Ops that swap pages out (reclaim, MADV_PAGEOUT): the limit cannot hold
/// them (it sets memory.swap.max to 0).
fn swaps_out(op: &crate::prog::Op) -> bool {
    use crate::prog::{Advice, Op};
    matches!(
        op,
        Op::Reclaim { .. }
            | Op::Madvise {
                advice: Advice::Pageout,
                ..
            }
    )
}

fn key(v: &[(&'static str, u32, &'static str)]) -> Vec<(&'static str, &'static str)> {
    v.iter().map(|x| (x.0, x.2)).collect()
}

fn fmt_failed(f: &[(&'static str, u32, &'static str)]) -> String {
    if f.is_empty() {
        return "none".into();
    }
    f.iter()
        .map(|(k, c, s)| format!("{k} #{c} ({s})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The ops that hold the plan's failures, and what the model predicts when
/// each is run at the cgroup's limit.
pub fn realise(prog: &Program, policy: &Policy, linux: (u32, u32)) -> Realisation {
    let planned = traced(
        prog,
        policy,
        linux,
        prog.faults.pte_alloc.policy(),
        prog.faults.thp.policy(),
        None,
    );
    let limited: Vec<usize> = planned
        .ops
        .iter()
        .enumerate()
        .filter(|(_, o)| !o.failed.is_empty())
        .map(|(i, _)| i)
        .collect();
    let realised = limited_run(prog, policy, linux, &limited, &[]);
    let mut differs = Vec::new();
    let mut inexpressible = Vec::new();
    for &i in &limited {
        let (p, r) = (&planned.ops[i], &realised.ops[i]);
        if key(&p.failed) != key(&r.failed) || p.calls != r.calls {
            differs.push(format!(
                "op {i} `{}`: plan fails {} of {} calls, the limit {} of {}",
                prog.ops[i],
                fmt_failed(&p.failed),
                p.calls,
                fmt_failed(&r.failed),
                r.calls
            ));
        }
        if matches!(prog.ops[i].op, crate::prog::Op::Pin { .. }) {
            inexpressible.push(format!(
                "op {i} `{}` registers io_uring buffers, which charges the cgroup too (io_uring/rsrc.c: GFP_KERNEL_ACCOUNT)",
                prog.ops[i]
            ));
        }
        if swaps_out(&prog.ops[i].op) {
            inexpressible.push(format!(
                "op {i} `{}` swaps pages out, and at the limit memory.swap.max is 0 (reclaim must not make room by swapping)",
                prog.ops[i]
            ));
        }
        if !r.charges.is_empty() {
            let mut seen: Vec<(&str, &str)> = Vec::new();
            for c in &r.charges {
                if !seen.contains(c) {
                    seen.push(*c);
                }
            }
            inexpressible.push(format!(
                "op {i} `{}` also charges {} (the limit fails them; the model does not)",
                prog.ops[i],
                seen.iter()
                    .map(|(w, s)| format!("{w} at {s}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let unc: Vec<_> = p
            .failed
            .iter()
            .filter(|(k, _, s)| {
                let kind = if *k == AllocKind::Thp.name() {
                    AllocKind::Thp
                } else {
                    AllocKind::PteTable
                };
                !charged(kind, s)
            })
            .collect();
        if !unc.is_empty() {
            inexpressible.push(format!(
                "op {i}: the plan fails {} which is not charged to the cgroup",
                unc.iter()
                    .map(|(k, c, s)| format!("{k} #{c} ({s})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    if let Some(false) = planned
        .run
        .violation_at
        .map(|(_, inv)| realised.run.violation_at.map(|(_, i)| i) == Some(inv))
    {
        inexpressible.push(format!(
            "the limits do not give the plan's violation (model under the limits: {})",
            realised
                .run
                .violation
                .clone()
                .unwrap_or_else(|| "no violation".into())
        ));
    }
    Realisation {
        limited,
        planned,
        realised,
        differs,
        inexpressible,
    }
}
