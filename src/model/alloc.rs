//! Pluggable allocator fault injection: which `pte_alloc_one()` and THP folio
//! allocations fail. The plan is part of the program (docs/model.md §8, §12).

use crate::prog::Plan;

/// One allocation call of one kind, as a fail policy sees it.
#[derive(Clone, Copy, Debug)]
pub struct Call {
    /// 1-based, per kind, over the whole program.
    pub n: u32,
    /// The op making it.
    pub op: usize,
    /// 1-based, per kind, within that op.
    pub n_in_op: u32,
    /// The kernel function that allocates.
    pub site: &'static str,
}

/// Decides whether an allocation call fails.
pub trait FailPolicy {
    fn should_fail(&self, c: &Call) -> bool;
    /// True when `c` and every later call fail: a retry loop can never
    /// progress (within the op, or for good).
    fn fails_forever(&self, c: &Call) -> bool;
}

/// Never fail.
pub struct NeverFail;
impl FailPolicy for NeverFail {
    fn should_fail(&self, _: &Call) -> bool {
        false
    }
    fn fails_forever(&self, _: &Call) -> bool {
        false
    }
}

/// Fail the N-th call, like `/proc/<pid>/fail-nth`.
pub struct FailNth(pub u32);
impl FailPolicy for FailNth {
    fn should_fail(&self, c: &Call) -> bool {
        c.n == self.0
    }
    fn fails_forever(&self, _: &Call) -> bool {
        false
    }
}

/// Fail a set of call indices.
pub struct FailAt(pub Vec<u32>);
impl FailPolicy for FailAt {
    fn should_fail(&self, c: &Call) -> bool {
        self.0.contains(&c.n)
    }
    fn fails_forever(&self, _: &Call) -> bool {
        false
    }
}

/// Fail every call from the N-th on (sustained OOM).
pub struct FailFrom(pub u32);
impl FailPolicy for FailFrom {
    fn should_fail(&self, c: &Call) -> bool {
        c.n >= self.0
    }
    fn fails_forever(&self, c: &Call) -> bool {
        c.n >= self.0
    }
}

/// Op-scoped: fail the `nth` call inside op `op`, or every call inside it
/// (`nth` None: sustained while the op runs).
pub struct FailInOp {
    pub op: usize,
    pub nth: Option<u32>,
}
impl FailPolicy for FailInOp {
    fn should_fail(&self, c: &Call) -> bool {
        c.op == self.op && self.nth.is_none_or(|k| c.n_in_op == k)
    }
    fn fails_forever(&self, c: &Call) -> bool {
        c.op == self.op && self.nth.is_none()
    }
}

/// Op-scoped: fail every call from op `0` on.
pub struct FailFromOp(pub usize);
impl FailPolicy for FailFromOp {
    fn should_fail(&self, c: &Call) -> bool {
        c.op >= self.0
    }
    fn fails_forever(&self, c: &Call) -> bool {
        c.op >= self.0
    }
}

impl Plan {
    /// The fail policy this plan means to the model's allocator.
    pub fn policy(&self) -> Box<dyn FailPolicy> {
        match self {
            Plan::Never => Box::new(NeverFail),
            Plan::Nth(n) => Box::new(FailNth(*n)),
            Plan::At(v) => Box::new(FailAt(v.clone())),
            Plan::From(n) => Box::new(FailFrom(*n)),
            Plan::InOp { op, nth } => Box::new(FailInOp { op: *op, nth: *nth }),
            Plan::FromOp(op) => Box::new(FailFromOp(*op)),
        }
    }
}

/// Allocation kinds the plan can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocKind {
    /// `pte_alloc_one()`: an order-0 page-table page.
    PteTable,
    /// A PMD-order THP folio (fault, CoW of the huge zero page, collapse, migration
    /// target, first huge zero folio).
    Thp,
    /// A contiguous PMD-order swap cluster: `folio_alloc_swap()` of a
    /// PMD-sized anon folio in reclaim (mm/vmscan.c shrink_folio_list). When
    /// it fails, 7.2 splits the folio (`split_folio_to_list()`) and swaps
    /// its pages one by one; lazy-v4-proposed then also cannot use a PMD
    /// swap entry.
    SwapCluster,
}

impl AllocKind {
    pub fn name(self) -> &'static str {
        match self {
            AllocKind::PteTable => "pte_alloc",
            AllocKind::Thp => "thp",
            AllocKind::SwapCluster => "swap-cluster",
        }
    }
}

/// One allocation attempt, recorded with the kernel function that made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocRecord {
    pub kind: AllocKind,
    pub call: u32,
    pub site: &'static str,
    pub failed: bool,
}

/// A charged allocation the fault plan neither counts nor fails: what a
/// memory-cgroup limit fails besides `pte_alloc_one()` and THP folios (see
/// `memcg.rs`). Logged only when recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Charge {
    /// An order-0 anon folio (`mem_cgroup_charge()`): a fault, a CoW copy, a
    /// swap-in, a pinned page copied at fork.
    Page,
    /// Slab objects of accounted caches (`SLAB_ACCOUNT`: vm_area_struct,
    /// anon_vma, anon_vma_chain).
    Slab,
}

impl Charge {
    pub fn name(self) -> &'static str {
        match self {
            Charge::Page => "an order-0 page",
            Charge::Slab => "accounted slab",
        }
    }
}

/// One uncounted charge: `at` counted calls were logged before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChargeRecord {
    pub at: usize,
    pub what: Charge,
    pub site: &'static str,
}

/// A policy's failures before op `.1`; from that op on every call succeeds.
struct Before(Box<dyn FailPolicy>, usize);
impl FailPolicy for Before {
    fn should_fail(&self, c: &Call) -> bool {
        c.op < self.1 && self.0.should_fail(c)
    }
    fn fails_forever(&self, c: &Call) -> bool {
        c.op < self.1 && self.0.fails_forever(c)
    }
}

/// The page allocator as the model sees it: page tables and THP folios, with
/// injected failures and a log of every call.
pub struct FaultInjector {
    pte: Box<dyn FailPolicy>,
    thp: Box<dyn FailPolicy>,
    swap: Box<dyn FailPolicy>,
    pte_calls: u32,
    thp_calls: u32,
    swap_calls: u32,
    /// The op running, and its calls of each kind so far.
    op: usize,
    pte_in_op: u32,
    thp_in_op: u32,
    /// Calls of either kind that failed in the op running.
    failed_in_op: u32,
    swap_in_op: u32,
    pub log: Vec<AllocRecord>,
    /// Uncounted charged allocations, in order with `log` (when recording).
    pub charges: Vec<ChargeRecord>,
    pub record: bool,
}

impl FaultInjector {
    pub fn new(pte: Box<dyn FailPolicy>, thp: Box<dyn FailPolicy>) -> Self {
        FaultInjector {
            pte,
            thp,
            swap: Box::new(NeverFail),
            pte_calls: 0,
            thp_calls: 0,
            swap_calls: 0,
            op: 0,
            pte_in_op: 0,
            thp_in_op: 0,
            failed_in_op: 0,
            swap_in_op: 0,
            log: Vec::new(),
            charges: Vec::new(),
            record: false,
        }
    }

    pub fn from_plans(pte: &Plan, thp: &Plan) -> Self {
        Self::new(pte.policy(), thp.policy())
    }

    /// The allocator a program's whole fault plan means.
    pub fn from_fault_plan(f: &crate::prog::FaultPlan) -> Self {
        let mut a = Self::from_plans(&f.pte_alloc, &f.thp);
        a.set_swap_cluster(f.swap_cluster.policy());
        a
    }

    /// The same plans with every call from op `op` on succeeding: the same
    /// run up to that op, and the op as it goes with no failure (the model's
    /// errno contract asks what the op returns without it).
    pub fn from_fault_plan_sparing(f: &crate::prog::FaultPlan, op: usize) -> Self {
        let mut a = Self::new(
            Box::new(Before(f.pte_alloc.policy(), op)),
            Box::new(Before(f.thp.policy(), op)),
        );
        a.set_swap_cluster(Box::new(Before(f.swap_cluster.policy(), op)));
        a
    }

    /// Which contiguous swap-cluster allocations fail (`fail swap-cluster`).
    pub fn set_swap_cluster(&mut self, p: Box<dyn FailPolicy>) {
        self.swap = p;
    }

    /// Returns true when the allocation succeeds.
    pub fn alloc(&mut self, kind: AllocKind, site: &'static str) -> bool {
        let (calls, in_op, pol) = match kind {
            AllocKind::PteTable => (&mut self.pte_calls, &mut self.pte_in_op, &self.pte),
            AllocKind::Thp => (&mut self.thp_calls, &mut self.thp_in_op, &self.thp),
            AllocKind::SwapCluster => (&mut self.swap_calls, &mut self.swap_in_op, &self.swap),
        };
        *calls += 1;
        *in_op += 1;
        let call = *calls;
        let failed = pol.should_fail(&Call {
            n: call,
            op: self.op,
            n_in_op: *in_op,
            site,
        });
        if failed {
            self.failed_in_op += 1;
            tracing::debug!(target: "splitfuzz::model::alloc", "{} call #{} from {}: INJECTED FAILURE", kind.name(), call, site);
        } else {
            tracing::trace!(target: "splitfuzz::model::alloc", "{} call #{} from {}: ok", kind.name(), call, site);
        }
        if self.record {
            self.log.push(AllocRecord {
                kind,
                call,
                site,
                failed,
            });
        }
        !failed
    }

    /// Note a charged allocation the plan does not count (never fails).
    pub fn charge(&mut self, what: Charge, site: &'static str) {
        if self.record {
            self.charges.push(ChargeRecord {
                at: self.log.len(),
                what,
                site,
            });
        }
    }

    /// Will every future `pte_alloc_one()` fail? (A split retry loop can never finish.)
    pub fn pte_fails_forever(&self) -> bool {
        self.pte.fails_forever(&Call {
            n: self.pte_calls + 1,
            op: self.op,
            n_in_op: self.pte_in_op + 1,
            site: "",
        })
    }

    /// Op `op` starts: op-scoped plans count its calls from 1.
    pub fn begin_op(&mut self, op: usize) {
        self.op = op;
        self.pte_in_op = 0;
        self.thp_in_op = 0;
        self.swap_in_op = 0;
        self.failed_in_op = 0;
    }

    /// Did an allocation fail in the op running?
    pub fn failed_in_op(&self) -> bool {
        self.failed_in_op > 0
    }

    pub fn calls(&self, kind: AllocKind) -> u32 {
        match kind {
            AllocKind::PteTable => self.pte_calls,
            AllocKind::Thp => self.thp_calls,
            AllocKind::SwapCluster => self.swap_calls,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn plans_fail_the_right_calls() {
        let mut f = FaultInjector::from_plans(&Plan::Nth(2), &Plan::At(vec![1, 3]));
        assert!(f.alloc(AllocKind::PteTable, "t"));
        assert!(!f.alloc(AllocKind::PteTable, "t"));
        assert!(f.alloc(AllocKind::PteTable, "t"));
        assert!(!f.alloc(AllocKind::Thp, "t"));
        assert!(f.alloc(AllocKind::Thp, "t"));
        assert!(!f.alloc(AllocKind::Thp, "t"));
        assert!(!f.pte_fails_forever());
        let mut g = FaultInjector::from_plans(&Plan::From(2), &Plan::Never);
        assert!(!g.pte_fails_forever());
        assert!(g.alloc(AllocKind::PteTable, "t"));
        assert!(g.pte_fails_forever());
        assert!(!g.alloc(AllocKind::PteTable, "t"));
        assert!(!g.alloc(AllocKind::PteTable, "t"));
    }

    #[test]
    fn op_scoped_plans_count_inside_their_op() {
        // The 2nd call inside op 1, whatever op 0 allocated.
        let mut f = FaultInjector::from_plans(
            &Plan::InOp {
                op: 1,
                nth: Some(2),
            },
            &Plan::Never,
        );
        f.begin_op(0);
        assert!(f.alloc(AllocKind::PteTable, "t"));
        assert!(f.alloc(AllocKind::PteTable, "t"));
        f.begin_op(1);
        assert!(f.alloc(AllocKind::PteTable, "t"));
        assert!(!f.pte_fails_forever());
        assert!(!f.alloc(AllocKind::PteTable, "t"));
        assert!(f.alloc(AllocKind::PteTable, "t"));
        // Every call inside op 1 fails, and only there: a retry loop in op 1
        // never ends, op 2 allocates again.
        let mut g = FaultInjector::from_plans(&Plan::InOp { op: 1, nth: None }, &Plan::Never);
        g.begin_op(0);
        assert!(g.alloc(AllocKind::PteTable, "t"));
        g.begin_op(1);
        assert!(g.pte_fails_forever());
        assert!(!g.alloc(AllocKind::PteTable, "t"));
        assert!(!g.alloc(AllocKind::PteTable, "t"));
        g.begin_op(2);
        assert!(!g.pte_fails_forever());
        assert!(g.alloc(AllocKind::PteTable, "t"));
        // From op 2 on, for good; THP calls are counted on their own.
        let mut h = FaultInjector::from_plans(&Plan::Never, &Plan::FromOp(2));
        h.begin_op(1);
        assert!(h.alloc(AllocKind::Thp, "t"));
        h.begin_op(2);
        assert!(!h.alloc(AllocKind::Thp, "t"));
        h.begin_op(5);
        assert!(!h.alloc(AllocKind::Thp, "t"));
        assert!(h.alloc(AllocKind::PteTable, "t"));
    }

    #[test]
    fn swap_clusters_are_counted_and_failed_on_their_own() {
        let f = crate::prog::FaultPlan {
            pte_alloc: Plan::Nth(1),
            thp: Plan::Never,
            swap_cluster: Plan::Nth(2),
        };
        let mut a = FaultInjector::from_fault_plan(&f);
        assert!(a.alloc(AllocKind::SwapCluster, "folio_alloc_swap"));
        assert!(!a.alloc(AllocKind::PteTable, "t"));
        assert!(!a.alloc(AllocKind::SwapCluster, "folio_alloc_swap"));
        assert!(a.alloc(AllocKind::SwapCluster, "folio_alloc_swap"));
        assert_eq!(a.calls(AllocKind::SwapCluster), 3);
        assert_eq!(a.calls(AllocKind::PteTable), 1);
        // No plan: every cluster is there.
        let mut b = FaultInjector::from_plans(&Plan::Never, &Plan::Never);
        assert!(b.alloc(AllocKind::SwapCluster, "folio_alloc_swap"));
    }
}
