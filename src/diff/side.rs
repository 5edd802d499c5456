//! One side of a differential run: the program under one policy, with every
//! op's result, allocations and the state before and after it.

use super::*;
use crate::model::alloc::Call;

/// What a process can see of one mm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct MmObs {
    pub(super) pages: Vec<RefPage>,
    /// `real::model_line`: `mm M pte N anon N thp N vmas ... pages ... data ...`.
    pub(super) line: String,
    pub(super) swap: i64,
}

impl MmObs {
    pub(super) fn field(&self, key: &str) -> &str {
        let mut w = self.line.split_whitespace();
        while let Some(x) = w.next() {
            if x == key {
                return w.next().unwrap_or("");
            }
        }
        ""
    }
    pub(super) fn rss(&self) -> (i64, i64) {
        (self.field("anon").parse().unwrap_or(0), self.swap)
    }
    pub(super) fn mapping(&self) -> (&str, &str) {
        (self.field("thp"), self.field("pages"))
    }
}

pub(super) type Obs = Vec<Option<MmObs>>;

pub(super) fn observe(k: &Kernel) -> Obs {
    crate::check::reference::observe(k)
        .mms
        .into_iter()
        .enumerate()
        .map(|(m, pages)| {
            pages.map(|pages| MmObs {
                pages,
                line: crate::observe::model_line(k, m),
                swap: k.mms[m].rss_swap,
            })
        })
        .collect()
}

/// The folio a `reclaim` op works on, before and after.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct ReclaimRec {
    /// Mms mapping it by PMD before the op.
    pub(super) pmd_maps: usize,
    /// Mapped in any mm after the op (not freed, not unmapped into swap).
    pub(super) mapped_after: bool,
}

#[derive(Clone, Debug, Default)]
pub(super) struct OpRec {
    /// The hook saw the op run (false: its mm did not exist, or the run ended).
    pub(super) ran: bool,
    pub(super) obs: Option<Obs>,
    pub(super) allocs: Vec<AllocRecord>,
    pub(super) reclaim: Option<ReclaimRec>,
    /// After the op, every future `pte_alloc_one()` fails.
    pub(super) pte_forever: bool,
    /// Tables the rmap sites allocated during the op that are still allocated
    /// after it (installed by a split), not freed as an unused preallocation.
    pub(super) rmap_kept_tables: u32,
}

impl OpRec {
    pub(super) fn rmap_calls(&self) -> (u32, u32) {
        let rm = self
            .allocs
            .iter()
            .filter(|a| a.kind == AllocKind::PteTable && RMAP_SITES.contains(&a.site));
        let (mut calls, mut failed) = (0, 0);
        for a in rm {
            calls += 1;
            failed += a.failed as u32;
        }
        (calls, failed)
    }
}

/// One program under one policy, op by op.
pub(super) struct Side {
    pub(super) init: Obs,
    pub(super) ops: Vec<OpRec>,
    pub(super) results: Vec<OpResult>,
    pub(super) violation: Option<Violation>,
}

impl Side {
    /// Ops this run got to (the op it ended in included).
    pub(super) fn reached(&self, n: usize) -> usize {
        if let Some(v) = &self.violation {
            if v.op_index < n {
                return v.op_index + 1;
            }
        }
        if let Some(i) = self.results.iter().position(|r| *r == OpResult::OomLoop) {
            return i + 1;
        }
        n
    }
    /// The result of op `i`; None: the run hit a violation inside it.
    pub(super) fn res(&self, i: usize) -> Option<OpResult> {
        self.results.get(i).copied()
    }
    /// The state after op `i` (`None`: before op 0).
    pub(super) fn state(&self, i: Option<usize>) -> &Obs {
        let Some(i) = i else { return &self.init };
        (0..=i.min(self.ops.len().saturating_sub(1)))
            .rev()
            .find_map(|j| self.ops[j].obs.as_ref())
            .unwrap_or(&self.init)
    }
    pub(super) fn failed_allocs(&self) -> impl Iterator<Item = &AllocRecord> {
        self.ops
            .iter()
            .flat_map(|o| o.allocs.iter())
            .filter(|a| a.failed)
    }
}

/// Fails whatever `inner` fails, and everything once `on` is set (by the hook,
/// from op K on): a sustained failure at the same point of both runs.
pub(super) struct FromOp {
    pub(super) inner: Box<dyn FailPolicy>,
    pub(super) on: Rc<Cell<bool>>,
}

impl FailPolicy for FromOp {
    fn should_fail(&self, c: &Call) -> bool {
        self.on.get() || self.inner.should_fail(c)
    }
    fn fails_forever(&self, c: &Call) -> bool {
        self.on.get() || self.inner.fails_forever(c)
    }
}

pub(super) fn run_side(
    prog: &Program,
    cfg: &RunConfig,
    oom_from_op: Option<usize>,
    watch: bool,
) -> Side {
    let on = Rc::new(Cell::new(false));
    let mut k = run::build(prog, cfg);
    if oom_from_op.is_some() {
        let pte = FromOp {
            inner: prog.faults.pte_alloc.policy(),
            on: on.clone(),
        };
        k.alloc = FaultInjector::new(Box::new(pte), prog.faults.thp.policy());
        k.alloc.set_swap_cluster(prog.faults.swap_cluster.policy());
    }
    k.alloc.record = true;
    let init = if watch { observe(&k) } else { Vec::new() };
    let n = prog.ops.len();
    let mut ops: Vec<OpRec> = vec![OpRec::default(); n];
    let mut results = Vec::with_capacity(n);
    let mut start = 0usize;
    let mut tstart = 0usize;
    let mut folio: Option<FolioId> = None;
    let mut maps: Vec<(usize, usize)> = Vec::new();
    let mut fstart = 0usize;
    let violation = run::run_on(
        &mut k,
        prog,
        &mut results,
        &mut |k, i, phase| {
            let line = &prog.ops[i];
            if phase == 0 {
                on.set(oom_from_op.is_some_and(|o| i >= o));
                start = k.alloc.log.len();
                tstart = k.tables.len();
                folio = None;
                maps.clear();
                fstart = k.folios.len();
                if let Op::Reclaim { .. } = line.op {
                    let (lo, _) = op_pages(&line.op, k.geom);
                    folio = k.folio_at(line.mm, lo);
                    if let Some(f) = folio {
                        let pmd_maps = (0..k.mms.len())
                            .filter(|&m| {
                                k.mms[m].alive
                                    && k.mms[m].pmds.iter().any(
                                        |p| matches!(*p, Pmd::Huge { folio, .. } if folio == f),
                                    )
                            })
                            .count();
                        ops[i].reclaim = Some(ReclaimRec {
                            pmd_maps,
                            mapped_after: true,
                        });
                        // Where it is mapped: a reclaim that splits it
                        // (no contiguous swap cluster) leaves its pages in
                        // new folios there.
                        maps = (0..k.mms.len())
                            .filter(|&m| k.mms[m].alive)
                            .flat_map(|m| (0..k.pages()).map(move |pg| (m, pg)))
                            .filter(|&(m, pg)| k.folio_at(m, pg) == Some(f))
                            .collect();
                    }
                }
                return;
            }
            let r = &mut ops[i];
            r.ran = true;
            r.allocs = k.alloc.log[start.min(k.alloc.log.len())..].to_vec();
            r.pte_forever = k.alloc.pte_fails_forever();
            r.rmap_kept_tables = k.tables[tstart.min(k.tables.len())..]
                .iter()
                .filter(|t| RMAP_SITES.contains(&t.site) && t.state != TableState::Freed)
                .count() as u32;
            if watch {
                r.obs = Some(observe(k));
            }
            if let (Some(f), Some(rec)) = (folio, r.reclaim.as_mut()) {
                rec.mapped_after = (0..k.mms.len()).any(|m| k.mms[m].alive && k.maps_folio(m, f))
                    || maps.iter().any(|&(m, pg)| {
                        k.mms[m].alive
                            && k.folio_at(m, pg)
                                .is_some_and(|g| g == f || g as usize >= fstart)
                    });
            }
        },
        true,
    );
    Side {
        init,
        ops,
        results,
        violation,
    }
}
