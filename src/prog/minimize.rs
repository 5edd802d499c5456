//! Minimization by predicate: shrink a program by whole ops (re-targeting its
//! fault plans), program flags, fault-plan entries and sizes, while a
//! predicate keeps holding. `run::minimize` keeps a finding's signature with
//! it; `diff --maximize` keeps a reclaim's table demand.

use crate::prog::Plan;
use crate::prog::{Op, Program, GRID, PAGE_SIZE, PMD_SIZE};

fn smaller_plans(p: &Plan) -> Vec<Plan> {
    let mut v = vec![Plan::Never];
    match p {
        Plan::Never => v.clear(),
        Plan::Nth(n) | Plan::From(n) => {
            for m in [1, n / 2, n.saturating_sub(1)] {
                if m >= 1 && m < *n {
                    v.push(if matches!(p, Plan::Nth(_)) {
                        Plan::Nth(m)
                    } else {
                        Plan::From(m)
                    });
                }
            }
            if let Plan::From(n) = p {
                v.push(Plan::Nth(*n));
            }
        }
        Plan::InOp { op, nth } => match nth {
            Some(k) => {
                for m in [1, k / 2, k.saturating_sub(1)] {
                    if m >= 1 && m < *k {
                        v.push(Plan::InOp {
                            op: *op,
                            nth: Some(m),
                        });
                    }
                }
            }
            None => v.push(Plan::InOp {
                op: *op,
                nth: Some(1),
            }),
        },
        Plan::FromOp(op) => v.push(Plan::InOp { op: *op, nth: None }),
        Plan::At(l) => {
            if l.len() == 1 {
                v.push(Plan::Nth(l[0]));
            }
            for i in 0..l.len() {
                let mut m = l.clone();
                m.remove(i);
                if !m.is_empty() {
                    v.push(Plan::At(m));
                }
            }
        }
    }
    v
}

/// `p` without op `i`: op-scoped plans follow their op (a plan scoped to
/// the removed op itself is dropped).
fn without_op(p: &Program, i: usize) -> Program {
    let mut c = p.clone();
    c.ops.remove(i);
    for plan in [&mut c.faults.pte_alloc, &mut c.faults.thp] {
        *plan = match plan.clone() {
            Plan::InOp { op, .. } if op == i => Plan::Never,
            Plan::InOp { op, nth } if op > i => Plan::InOp { op: op - 1, nth },
            Plan::FromOp(op) if op > i => Plan::FromOp(op - 1),
            other => other,
        };
    }
    c
}

/// The plan with its call indices moved earlier by 1..=n: removing an op
/// removes the allocations it made, so the failing call comes sooner.
fn shifted_plans(p: &Plan) -> Vec<Plan> {
    match p {
        // Op-scoped plans follow their op (`without_op`), not call numbers.
        Plan::Never | Plan::InOp { .. } | Plan::FromOp(_) => vec![],
        Plan::Nth(n) => (1..*n).rev().map(Plan::Nth).collect(),
        Plan::From(n) => (1..*n).rev().map(Plan::From).collect(),
        Plan::At(l) => {
            let lo = l.iter().copied().min().unwrap_or(1);
            (1..lo)
                .map(|d| Plan::At(l.iter().map(|x| x - d).collect()))
                .collect()
        }
    }
}

/// `c` with its fault plans re-targeted so the same allocation fails after an
/// op was removed; the first variant that keeps the signature, if any.
fn retarget(c: &Program, keeps: &dyn Fn(&Program) -> bool) -> Option<Program> {
    let pte: Vec<Plan> = std::iter::once(c.faults.pte_alloc.clone())
        .chain(shifted_plans(&c.faults.pte_alloc))
        .take(65)
        .collect();
    let thp: Vec<Plan> = std::iter::once(c.faults.thp.clone())
        .chain(shifted_plans(&c.faults.thp))
        .take(65)
        .collect();
    for (i, a) in pte.iter().enumerate() {
        for (j, b) in thp.iter().enumerate() {
            if i + j == 0 {
                continue;
            }
            let mut t = c.clone();
            t.faults.pte_alloc = a.clone();
            t.faults.thp = b.clone();
            if keeps(&t) {
                return Some(t);
            }
        }
    }
    None
}

/// Candidate simplifications of one op (smaller or more aligned sizes).
fn smaller_ops(op: &Op) -> Vec<Op> {
    let lens = |len: u64| -> Vec<u64> {
        // Grid sizes only, so a minimized program stays encodable as bytes
        // (`splitfuzz encode`) and replays in every engine.
        let grid = |x: u64| {
            if len % GRID == 0 {
                x % GRID == 0
            } else {
                x % PAGE_SIZE == 0
            }
        };
        let mut v: Vec<u64> = [PAGE_SIZE, GRID, PMD_SIZE, len / 2]
            .into_iter()
            .filter(|&l| l > 0 && l < len && grid(l))
            .collect();
        v.dedup();
        v
    };
    let starts = |s: u64| -> Vec<u64> {
        [0, s - s % PMD_SIZE]
            .into_iter()
            .filter(|&x| x < s)
            .collect()
    };
    let mut out = Vec::new();
    match op.clone() {
        Op::Mmap { start, len, thp } => {
            out.extend(
                lens(len)
                    .into_iter()
                    .map(|len| Op::Mmap { start, len, thp }),
            );
            out.extend(
                starts(start)
                    .into_iter()
                    .map(|start| Op::Mmap { start, len, thp }),
            );
        }
        Op::Touch { start, len, write } => {
            out.extend(
                lens(len)
                    .into_iter()
                    .map(|len| Op::Touch { start, len, write }),
            );
            out.extend(
                starts(start)
                    .into_iter()
                    .map(|start| Op::Touch { start, len, write }),
            );
        }
        Op::Madvise { start, len, advice } => {
            out.extend(
                lens(len)
                    .into_iter()
                    .map(|len| Op::Madvise { start, len, advice }),
            );
        }
        Op::Munmap { start, len } => {
            out.extend(lens(len).into_iter().map(|len| Op::Munmap { start, len }))
        }
        Op::Mprotect { start, len, write } => out.extend(
            lens(len)
                .into_iter()
                .map(|len| Op::Mprotect { start, len, write }),
        ),
        Op::Pin { start, len } => {
            out.extend(lens(len).into_iter().map(|len| Op::Pin { start, len }))
        }
        Op::UffdWp { start, len, on } => {
            out.extend(
                lens(len)
                    .into_iter()
                    .map(|len| Op::UffdWp { start, len, on }),
            )
        }
        Op::UffdRegister { start, len } => out.extend(
            lens(len)
                .into_iter()
                .map(|len| Op::UffdRegister { start, len }),
        ),
        Op::UffdMove { dst, src, len } => out.extend(
            lens(len)
                .into_iter()
                .map(|len| Op::UffdMove { dst, src, len }),
        ),
        Op::PagemapScan { start, len } => out.extend(
            lens(len)
                .into_iter()
                .map(|len| Op::PagemapScan { start, len }),
        ),
        Op::Mlock { start, len } => {
            out.extend(lens(len).into_iter().map(|len| Op::Mlock { start, len }))
        }
        Op::Mbind { start, len, node } => {
            out.extend(
                lens(len)
                    .into_iter()
                    .map(|len| Op::Mbind { start, len, node }),
            )
        }
        _ => {}
    }
    out
}

/// Minimize `prog` under `cfg`. None when it does not violate.
/// The smallest program this finds for which `keeps` holds, starting from
/// `prog` (which must satisfy it); deterministic.
pub fn shrink(prog: &Program, keeps: &dyn Fn(&Program) -> bool) -> Program {
    let mut cur = prog.clone();
    let mut changed = true;
    let mut rounds = 0;
    while changed && rounds < 20 {
        changed = false;
        rounds += 1;
        // Whole ops, from the end.
        let mut i = cur.ops.len();
        while i > 0 {
            i -= 1;
            let c = without_op(&cur, i);
            if keeps(&c) {
                cur = c;
                changed = true;
            } else if let Some(c) = retarget(&c, keeps) {
                cur = c;
                changed = true;
            }
        }
        // Program-level flags.
        if cur.uffd_async {
            let mut c = cur.clone();
            c.uffd_async = false;
            if keeps(&c) {
                cur = c;
                changed = true;
            }
        }
        // Fault plans.
        for which in 0..2 {
            let plan = if which == 0 {
                cur.faults.pte_alloc.clone()
            } else {
                cur.faults.thp.clone()
            };
            for cand in smaller_plans(&plan) {
                let mut c = cur.clone();
                if which == 0 {
                    c.faults.pte_alloc = cand;
                } else {
                    c.faults.thp = cand;
                }
                if keeps(&c) {
                    cur = c;
                    changed = true;
                    break;
                }
            }
        }
        // Sizes and processes.
        for i in 0..cur.ops.len() {
            for cand in smaller_ops(&cur.ops[i].op) {
                let mut c = cur.clone();
                c.ops[i].op = cand;
                if keeps(&c) {
                    cur = c;
                    changed = true;
                    break;
                }
            }
        }
    }
    cur
}
