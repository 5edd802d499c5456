//! Pluggable allocator fault injection: which `pte_alloc_one()` and THP folio
//! allocations fail. The plan is part of the program (docs/model.md §8, §12).

use crate::prog::Plan;

/// Decides whether the `call`-th allocation (1-based, per kind) fails.
pub trait FailPolicy {
    fn should_fail(&self, call: u32) -> bool;
    /// True when every call from `call` on fails: a retry loop can never progress.
    fn fails_forever_from(&self, call: u32) -> bool;
    /// `should_fail` for a call made by `site` (a memory-cgroup limit fails
    /// only charged allocations: see `memcg.rs`).
    fn should_fail_at(&self, call: u32, _site: &'static str) -> bool {
        self.should_fail(call)
    }
}

/// Never fail.
pub struct NeverFail;
impl FailPolicy for NeverFail {
    fn should_fail(&self, _: u32) -> bool {
        false
    }
    fn fails_forever_from(&self, _: u32) -> bool {
        false
    }
}

/// Fail the N-th call, like `/proc/<pid>/fail-nth`.
pub struct FailNth(pub u32);
impl FailPolicy for FailNth {
    fn should_fail(&self, call: u32) -> bool {
        call == self.0
    }
    fn fails_forever_from(&self, _: u32) -> bool {
        false
    }
}

/// Fail a set of call indices.
pub struct FailAt(pub Vec<u32>);
impl FailPolicy for FailAt {
    fn should_fail(&self, call: u32) -> bool {
        self.0.contains(&call)
    }
    fn fails_forever_from(&self, _: u32) -> bool {
        false
    }
}

/// Fail every call from the N-th on (sustained OOM).
pub struct FailFrom(pub u32);
impl FailPolicy for FailFrom {
    fn should_fail(&self, call: u32) -> bool {
        call >= self.0
    }
    fn fails_forever_from(&self, call: u32) -> bool {
        call >= self.0
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
}

impl AllocKind {
    pub fn name(self) -> &'static str {
        match self {
            AllocKind::PteTable => "pte_alloc",
            AllocKind::Thp => "thp",
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

/// The page allocator as the model sees it: page tables and THP folios, with
/// injected failures and a log of every call.
pub struct FaultInjector {
    pte: Box<dyn FailPolicy>,
    thp: Box<dyn FailPolicy>,
    pte_calls: u32,
    thp_calls: u32,
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
            pte_calls: 0,
            thp_calls: 0,
            log: Vec::new(),
            charges: Vec::new(),
            record: false,
        }
    }

    pub fn from_plans(pte: &Plan, thp: &Plan) -> Self {
        Self::new(pte.policy(), thp.policy())
    }

    /// Returns true when the allocation succeeds.
    pub fn alloc(&mut self, kind: AllocKind, site: &'static str) -> bool {
        let (calls, pol) = match kind {
            AllocKind::PteTable => (&mut self.pte_calls, &self.pte),
            AllocKind::Thp => (&mut self.thp_calls, &self.thp),
        };
        *calls += 1;
        let call = *calls;
        let failed = pol.should_fail_at(call, site);
        if failed {
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
        self.pte.fails_forever_from(self.pte_calls + 1)
    }

    pub fn calls(&self, kind: AllocKind) -> u32 {
        match kind {
            AllocKind::PteTable => self.pte_calls,
            AllocKind::Thp => self.thp_calls,
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
}
