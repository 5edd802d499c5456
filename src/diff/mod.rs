//! The deposit-vs-lazy differential behind `splitfuzz diff` (its command line
//! is src/cli/diff.rs): what changes for users if the series lands.
//!
//! Every program runs twice through the one op executor (`run::run_on`): under
//! `deposit` (today's kernel) and under a lazy policy P, with the same program
//! text, fault plan included. After every op both runs are observed the way a
//! process sees its memory: per page whether it is mapped, writable, its contents
//! (what a read returns, swapped-out pages included: `oracle::observe`) and
//! its uffd-wp bit; per mm the observation line of the host oracle
//! (`real::model_line`: VMAs, `MM_ANONPAGES`, THP mapping) plus `MM_SWAPENTS`.
//! Every difference is attributed to the op that made it (a page or counter that
//! differs after the op, where the op changed the pair of values) and classified:
//!
//! * `new-error`: P returns an error where deposit succeeded.
//! * `skip`: P reports success but a page differs from deposit's (or P ends in a
//!   data-loss violation, the reference model's word for the same thing).
//! * `loop`: P never returns: the op ends in `OomLoop` (killed in the fault
//!   retry) where deposit did not, or P ends in a `no-livelock` violation.
//! * `crash`: P ends in a crash-severity violation.
//! * `leak`: P ends in a leak-severity violation (tables, folios, RSS counters).
//! * `reclaim-kept`: reclaim cannot free a folio that deposit frees (Hugh
//!   Dickins' objection to v3): deposit frees the folio or unmaps it into swap,
//!   P leaves it mapped because a `pte_alloc_one()` of the rmap walk failed.
//! * `other`: anything else a user can see (a different error, a THP left
//!   PMD-mapped, RSS, a process that exists in one run only, ...).
//!
//! **Fault plans count per policy.** `fail pte_alloc nth=N` fails the N-th
//! `pte_alloc_one()` *that run makes*. Deposit allocates a table at every THP
//! fault, huge-zero fault and fork of a huge PMD; a lazy policy allocates at
//! split time and in the rmap walks instead. So the same plan text usually fails
//! a different kernel site under each policy (e.g. `nth=1` fails
//! `__do_huge_pmd_anonymous_page` under deposit and `__split_huge_pmd` under
//! lazy). The report names the sites each run failed and says when they differ.
//! `--oom-from-op K` adds a policy-independent sustained failure: every
//! `pte_alloc_one()` fails from op K on, in both runs.
//!
//! **Reclaim table demand.** For every `reclaim` op the number of
//! `pte_alloc_one()` calls made by the rmap sites (`try_to_unmap_one`,
//! `try_to_migrate_one`) during the op: the tables reclaim must allocate to free
//! that one folio (deposit: 0). `--maximize reclaim-tables` drives it up.

mod compare;
mod demand;
mod report;
mod side;

use compare::compare;
pub use compare::{op_kind, ProgramDiff};
pub use demand::{
    demand_bound, kept_bound, maximize, maximize_with, reclaim_demand, MaxResult, MaxTarget,
    ReclaimDemand, SwapClusters,
};
pub use report::{program_report, ClassCount, Summary};
use side::*;

use crate::base::Geometry;
use crate::check::reference::{op_pages, RefPage};
use crate::check::{Severity, Violation};
use crate::model::alloc::{AllocKind, AllocRecord, FailPolicy, FaultInjector};
use crate::model::mm::{FolioId, Kernel, Pmd, TableState};
use crate::model::policy::{Policy, Preset};
use crate::prog::{parse_size, Advice, Op, OpLine, Program, MAX_MMS};
use crate::run::{self, OpResult, RunConfig};
use rand::{Rng, RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::rc::Rc;

/// The kernel functions whose `pte_alloc_one()` calls are reclaim's table demand.
pub const RMAP_SITES: [&str; 2] = ["try_to_unmap_one", "try_to_migrate_one"];

/// The kind of a user-visible difference, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    NewError,
    Skip,
    Loop,
    Crash,
    Leak,
    ReclaimKept,
    Other,
}

impl Class {
    pub const ALL: [Class; 7] = [
        Class::NewError,
        Class::Skip,
        Class::Loop,
        Class::Crash,
        Class::Leak,
        Class::ReclaimKept,
        Class::Other,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Class::NewError => "new-error",
            Class::Skip => "skip",
            Class::Loop => "loop",
            Class::Crash => "crash",
            Class::Leak => "leak",
            Class::ReclaimKept => "reclaim-kept",
            Class::Other => "other",
        }
    }
    /// The class of a violation P ends in.
    pub fn of_severity(s: Severity) -> Class {
        match s {
            Severity::Crash => Class::Crash,
            Severity::DataLoss => Class::Skip,
            Severity::UnkillableLoop | Severity::KillableLoop => Class::Loop,
            Severity::Leak => Class::Leak,
            Severity::WrongErrno => Class::Other,
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One user-visible difference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diff {
    pub class: Class,
    /// Op index (== number of ops for the exit of every mm at the end).
    pub op: usize,
    pub op_text: String,
    /// Short, program-independent description (the summary's "kind of change").
    pub kind: String,
    /// Addresses, values, counts.
    pub detail: String,
    /// The runs already looked different before this op (the difference may
    /// be a consequence of an earlier one).
    pub after_divergence: bool,
}

/// Options of one differential run.
#[derive(Clone, Debug)]
pub struct DiffConfig {
    pub policy: Policy,
    pub geometry: Geometry,
    /// Every `pte_alloc_one()` fails from this op on, in both runs.
    pub oom_from_op: Option<usize>,
}

/// Run `prog` under deposit and under `cfg.policy` and compare them op by op.
pub fn diff_program(prog: &Program, cfg: &DiffConfig) -> ProgramDiff {
    let dcfg = RunConfig::new(Policy::preset(Preset::Deposit), cfg.geometry);
    let pcfg = RunConfig::new(cfg.policy.clone(), cfg.geometry);
    let d = run_side(prog, &dcfg, cfg.oom_from_op, true);
    let p = run_side(prog, &pcfg, cfg.oom_from_op, true);
    compare(prog, &d, &p, cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No preset leaks in the model today, so no program can show the `leak`
    /// class end to end: this checks the classifier on a real pair of runs
    /// where P's teardown is given a leak-severity violation, and the mapping
    /// of every severity.
    #[test]
    fn a_leak_violation_of_p_is_a_leak() {
        let prog = Program::parse("mmap 0 2M thp\ntouch 0 2M write\n").unwrap();
        let cfg = DiffConfig {
            policy: Policy::preset(Preset::LazyV3),
            geometry: Geometry::SMALL,
            oom_from_op: None,
        };
        let dcfg = RunConfig::new(Policy::preset(Preset::Deposit), cfg.geometry);
        let pcfg = RunConfig::new(cfg.policy.clone(), cfg.geometry);
        let d = run_side(&prog, &dcfg, None, true);
        let mut p = run_side(&prog, &pcfg, None, true);
        assert!(compare(&prog, &d, &p, &cfg).diffs.is_empty());
        p.violation = Some(Violation {
            invariant: crate::check::Invariant::NrPtes,
            severity: Severity::Leak,
            function: "exit_mmap".into(),
            op_index: prog.ops.len(),
            mm: 0,
            addr: 0,
            message: "test".into(),
        });
        let pd = compare(&prog, &d, &p, &cfg);
        assert_eq!(pd.diffs.len(), 1, "{:?}", pd.diffs);
        assert_eq!(pd.diffs[0].class, Class::Leak);
        assert_eq!(pd.diffs[0].op, prog.ops.len());
        let want = [
            (Severity::Crash, Class::Crash),
            (Severity::DataLoss, Class::Skip),
            (Severity::UnkillableLoop, Class::Loop),
            (Severity::KillableLoop, Class::Loop),
            (Severity::Leak, Class::Leak),
            (Severity::WrongErrno, Class::Other),
        ];
        for (s, c) in want {
            assert_eq!(Class::of_severity(s), c);
        }
    }
}
