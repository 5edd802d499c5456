//! The mm state machine: state (docs/model.md §1) and the primitive operations
//! of §2 (`pte_alloc_one`, `pmd_install`, `pgtable_trans_huge_deposit`, ...).
//! One submodule per kernel file/path; function names are the kernel's.

mod debug;
pub mod exit;
pub mod fork;
pub mod gup;
pub mod huge_memory;
pub mod huge_swap;
pub mod khugepaged;
pub mod madvise;
pub mod memory;
pub mod mempolicy;
pub mod mlock;
pub mod mprotect;
pub mod mremap;
mod pgtable;
pub mod rmap;
pub mod task_mmu;
pub mod userfaultfd;
pub mod vma;

pub use debug::dump;

use crate::base::Geometry;
use crate::base::{Invariant, Violation};
use crate::model::alloc::{AllocKind, Charge, FaultInjector};
use crate::model::policy::{Policy, SplitCaller};

use std::collections::BTreeSet;

pub type FolioId = u32;
pub type TableId = u32;
pub type SwapId = u32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pte {
    None,
    /// A present anon page: page `idx` of `folio`.
    Present {
        folio: FolioId,
        idx: u32,
        write: bool,
        dirty: bool,
    },
    /// `my_zero_pfn`, special, never counted.
    Zero,
    /// A migration entry (transient inside an op); `dirty` is
    /// `make_migration_entry_dirty()`.
    Migration {
        folio: FolioId,
        idx: u32,
        write: bool,
        excl: bool,
        dirty: bool,
    },
    /// A swap entry.
    Swap(SwapId),
    /// `PTE_MARKER_GUARD` (MADV_GUARD_INSTALL): access is SIGSEGV; ordinary
    /// zaps keep it, unmap and MADV_GUARD_REMOVE clear it, fork copies it.
    Guard,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pmd {
    None,
    /// `pmd_populate()`'d PTE table.
    Table(TableId),
    /// Present anon THP.
    Huge {
        folio: FolioId,
        write: bool,
        dirty: bool,
    },
    /// `pmd_mkspecial(huge_zero_folio)`, read-only.
    HugeZero,
    /// PMD migration entry (transient inside an op).
    Migration {
        folio: FolioId,
        write: bool,
        excl: bool,
        dirty: bool,
    },
    /// PMD-level swap entry (lazy-v4-proposed only): one entry for the
    /// contiguous swap slots `first .. first + PTRS_PER_PTE` of a swapped-out
    /// THP, no PTE table ("mm: PMD-level swap entries for anonymous THPs",
    /// v7 00/29; see huge_swap.rs).
    Swap {
        first: SwapId,
    },
}

impl Pmd {
    /// `pmd_is_huge()`: trans-huge, a PMD migration entry, or (lazy-v4-proposed)
    /// a PMD swap entry: what `split_huge_pmd()` splits.
    pub fn is_huge(&self) -> bool {
        matches!(
            self,
            Pmd::Huge { .. } | Pmd::HugeZero | Pmd::Migration { .. } | Pmd::Swap { .. }
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vma {
    pub start: usize,
    pub end: usize,
    pub write: bool,
    /// MADV_HUGEPAGE (THP is in `madvise` mode).
    pub thp: bool,
    /// anon_vma identity, 0 = none yet (`vmf_anon_prepare` assigns one).
    pub anon_vma: u32,
    /// VM_LOCKED (mlock).
    pub locked: bool,
    /// VM_UFFD_WP: registered (mode WP) with this mm's userfaultfd.
    pub uffd_wp: bool,
    /// The VMA's mempolicy: MPOL_BIND to this node (mbind), else the task's
    /// (node 0).
    pub node: Option<u8>,
    /// VMA_MAYBE_GUARD_BIT: guard markers may be installed (sticky: it does not
    /// stop a merge and survives one).
    pub maybe_guard: bool,
    /// `vm_pgoff` in model pages: the start page at mmap; kept by splits (the
    /// right part's grows) and by mremap (the moved VMA keeps the source's).
    pub pgoff: usize,
    /// The anon_vmas this VMA is linked to (its `anon_vma_chain`): its own,
    /// plus, after fork, every ancestor's. The rmap walk of a folio visits the
    /// VMAs linked to the folio's anon_vma whose pgoff range covers it.
    pub chain: Vec<u32>,
}

impl Vma {
    /// A new anonymous VMA (mmap): read-write, nothing else set.
    pub fn anon(start: usize, end: usize, thp: bool) -> Vma {
        Vma {
            start,
            end,
            write: true,
            thp,
            anon_vma: 0,
            locked: false,
            uffd_wp: false,
            node: None,
            maybe_guard: false,
            pgoff: start,
            chain: Vec::new(),
        }
    }
    /// `linear_page_index()`: the pgoff of `page` in this VMA.
    pub fn linear_page_index(&self, page: usize) -> usize {
        self.pgoff + (page - self.start)
    }
    /// `vma_is_fork_child()` (mm/vma.c): an anon_vma whose chain links more
    /// than its own, so cloned from a parent at fork; the kernel does not
    /// merge such a VMA with one that has no anon_vma (anon_vma root lock
    /// scalability).
    pub fn is_fork_child(&self) -> bool {
        self.anon_vma != 0 && self.chain.len() > 1
    }

    /// May `self` and `next`, which starts where `self` ends, be one VMA?
    /// `is_mergeable_vma()` + `is_mergeable_anon_vma()` (mm/vma.c): equal
    /// flags, continuing pgoffs, and the same anon_vma, or one side without
    /// one while the other is not a fork child (`vma_is_fork_child()`).
    pub fn can_merge_with_next(&self, next: &Vma) -> bool {
        self.end == next.start
            && self.same_flags(next)
            && self.pgoff + (self.end - self.start) == next.pgoff
            && (self.anon_vma == next.anon_vma
                || (self.anon_vma == 0 && !next.is_fork_child())
                || (next.anon_vma == 0 && !self.is_fork_child()))
    }

    /// Flags that must be equal for two VMAs to merge (`is_mergeable_vma()`).
    pub fn same_flags(&self, o: &Vma) -> bool {
        self.write == o.write
            && self.thp == o.thp
            && self.locked == o.locked
            && self.uffd_wp == o.uffd_wp
            && self.node == o.node
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PinRef {
    pub page: usize,
    pub folio: FolioId,
}

#[derive(Clone, Debug)]
pub struct Mm {
    pub alive: bool,
    pub vmas: Vec<Vma>,
    pub pmds: Vec<Pmd>,
    /// `pmd_huge_pte` lists, one per modelled PMD table (arena slots 0-7, 8-15).
    pub deposit: [Vec<TableId>; 2],
    /// `mm->pgtables_bytes` (PTE part) in tables.
    pub nr_ptes: i64,
    /// MM_ANONPAGES
    pub rss_anon: i64,
    /// MM_SWAPENTS
    pub rss_swap: i64,
    /// MMF_HUGE_ZERO_FOLIO
    pub huge_zero: bool,
    /// GUP pins taken through this mm (released by `unpin` or at exit).
    pub pins: Vec<PinRef>,
    /// The uffd-wp bit of each page's entry (`pte_uffd_wp`/`pmd_uffd_wp`/swap,
    /// or a uffd-wp PTE marker on a none PTE), kept per page: a huge PMD has
    /// one bit, so all its pages agree.
    pub uffd_wp: Vec<bool>,
    /// The PUD entry of each modelled PMD table is present (a PMD table is
    /// allocated for that 1 GiB): what `mm_find_pmd()` needs. Allocated by
    /// faults and every path that allocates below it; freed by
    /// `free_pgtables()` when no VMA is left in that 1 GiB.
    pub pud: [bool; 2],
}

impl Mm {
    pub fn new(slots: usize, ptrs: usize) -> Mm {
        Mm {
            alive: true,
            vmas: Vec::new(),
            pmds: vec![Pmd::None; slots],
            deposit: [Vec::new(), Vec::new()],
            nr_ptes: 0,
            rss_anon: 0,
            rss_swap: 0,
            huge_zero: false,
            pins: Vec::new(),
            uffd_wp: vec![false; slots * ptrs],
            pud: [false; 2],
        }
    }
    pub fn vma_at(&self, page: usize) -> Option<usize> {
        self.vmas
            .iter()
            .position(|v| v.start <= page && page < v.end)
    }
    /// The parts of `[lo, hi)` inside each VMA, in address order (what a
    /// `for_each_vma_range()` walk clamps to).
    pub fn vma_pieces(&self, lo: usize, hi: usize) -> Vec<(usize, usize)> {
        self.vmas
            .iter()
            .filter(|v| v.start < hi && lo < v.end)
            .map(|v| (v.start.max(lo), v.end.min(hi)))
            .collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableState {
    /// Returned by `pte_alloc_one()`, not yet installed or deposited.
    Allocated,
    Installed,
    Deposited,
    Freed,
}

#[derive(Clone, Debug)]
pub struct PteTable {
    pub state: TableState,
    pub ptes: Vec<Pte>,
    pub site: &'static str,
    pub mm: usize,
}

#[derive(Clone, Debug)]
pub struct Folio {
    /// Pages: 1 (order 0) or `ptrs` (PMD order).
    pub nr: usize,
    pub refcount: i64,
    pub entire_mapcount: i64,
    pub large_mapcount: i64,
    /// GUP pins (each also holds one reference in the model).
    pub pincount: i64,
    pub anon_exclusive: Vec<bool>,
    pub data: Vec<u64>,
    /// MADV_FREE'd (`folio_mark_lazyfree`: !swapbacked).
    pub lazyfree: bool,
    /// NUMA node of the memory (`folio_nid()`).
    pub node: u8,
    /// On the deferred split queue as partially mapped
    /// (`folio_test_partially_mapped()`).
    pub partially_mapped: bool,
    /// `folio_anon_vma()` (0: none yet) and `folio->index` (pgoff of its first
    /// page), set when it is mapped new (`__folio_set_anon()`) and by
    /// `folio_move_anon_rmap()`.
    pub anon_vma: u32,
    pub index: usize,
    pub dirty: bool,
    pub freed: bool,
}

#[derive(Clone, Debug)]
pub struct SwapSlot {
    pub data: u64,
    pub count: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Errno {
    ENOMEM,
    EAGAIN,
    EBUSY,
    EFAULT,
    EINVAL,
    ENOENT,
    EEXIST,
    EPERM,
    /// -ERESTARTNOINTR (`restart_syscall()`): never seen by user space; the
    /// syscall is entered again.
    ERESTART,
}

/// A kernel path either returns an errno to its caller, hits a bug (a
/// violation), or never returns in a loop the kernel intends.
#[derive(Debug)]
pub enum KErr {
    Errno(Errno),
    Bug(Box<Violation>),
    /// A user page fault got VM_FAULT_OOM, and `pagefault_out_of_memory()`
    /// ("Huh VM_FAULT_OOM leaked out to the #PF handler. Retrying PF") makes the
    /// task fault again; while every allocation fails it spins, killable. This is
    /// the kernel's designed OOM behaviour (deposit does it too), not a finding:
    /// the op never returns and the program ends there (the task is killed).
    OomLoop(&'static str),
}

impl From<Errno> for KErr {
    fn from(e: Errno) -> KErr {
        KErr::Errno(e)
    }
}

pub type KResult<T> = Result<T, KErr>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// `__split_huge_pmd()` returned -ENOMEM (THP_SPLIT_PMD_FAILED).
    SplitFailed,
    /// A caller skipped a range and carried on.
    Skipped,
    /// The proposed `zap_pmd_range=zero` wrote zeros into a THP in place
    /// (what another mapping of the folio then reads is blamed on it).
    ZeroedInPlace,
}

/// Failure-handling events of the current op: used to name the kernel function a
/// violation found by a state check is due to.
#[derive(Clone, Copy, Debug)]
pub struct Event {
    pub kind: EventKind,
    pub func: &'static str,
    pub mm: usize,
    pub lo: usize,
    pub hi: usize,
}

/// Branch coverage of the model (feeds the built-in engine).
pub const COV_BITS: usize = 1 << 12;

pub const fn fnv(s: &str) -> u32 {
    let b = s.as_bytes();
    let mut h: u32 = 0x811c9dc5;
    let mut i = 0;
    while i < b.len() {
        h ^= b[i] as u32;
        h = h.wrapping_mul(0x01000193);
        i += 1;
    }
    h
}

/// Record that a model branch was taken.
#[macro_export]
macro_rules! cov {
    ($k:expr, $name:literal) => {{
        const H: u32 = $crate::model::mm::fnv($name);
        $k.hit(H);
    }};
}

#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub thp_split_pmd: u64,
    pub thp_split_pmd_failed: u64,
    pub retries: u64,
}

/// The whole simulated machine: processes, folios, page tables, swap.
pub struct Kernel {
    pub geom: Geometry,
    pub policy: Policy,
    pub alloc: FaultInjector,
    pub mms: Vec<Mm>,
    pub folios: Vec<Folio>,
    pub tables: Vec<PteTable>,
    pub swap: Vec<SwapSlot>,
    /// Tables, folios and swap slots not yet freed (what the checks iterate, so
    /// their cost does not grow with the program's history).
    pub live_tables: BTreeSet<TableId>,
    pub live_folios: BTreeSet<FolioId>,
    pub live_swap: BTreeSet<SwapId>,
    /// Global huge zero folio refcount (0 = not allocated; the shrinker keeps 1).
    pub huge_zero_refcount: u32,
    pub next_anon_vma: u32,
    pub events: Vec<Event>,
    pub cov: Vec<u8>,
    pub stats: Stats,
    /// Index of the op being run (for violation reports).
    pub op_index: usize,
    /// UFFD_FEATURE_WP_ASYNC on every userfaultfd (`uffd async`).
    pub uffd_async: bool,
    /// The Linux version whose user-visible behaviour the model follows where
    /// versions differ (the oracles set their kernel's; default 7.2, the base
    /// of the posted series).
    pub linux: (u32, u32),
    /// Other mappings share the arena's two 1 GiB ranges, so their PMD tables
    /// (and PUD entries) are always present: the oracles' executor keeps a
    /// guard page in each (`real::GUARD_LO`/`GUARD_HI`). Without it the PUD
    /// comes and goes with the arena's own VMAs (`Mm::pud`).
    pub arena_neighbours: bool,
}

/// The default `Kernel::linux`.
pub const LINUX_DEFAULT: (u32, u32) = (7, 2);

/// Upper bound on iterations of any retry loop before it is called a livelock
/// (finite fault plans end long before this).
pub const RETRY_LIMIT: u32 = 256;

impl Kernel {
    pub fn new(geom: Geometry, policy: Policy, alloc: FaultInjector) -> Kernel {
        Kernel {
            geom,
            policy,
            alloc,
            mms: vec![Mm::new(crate::prog::ARENA_PMDS, geom.ptrs)],
            folios: Vec::new(),
            tables: Vec::new(),
            swap: Vec::new(),
            live_tables: BTreeSet::new(),
            live_folios: BTreeSet::new(),
            live_swap: BTreeSet::new(),
            huge_zero_refcount: 0,
            next_anon_vma: 1,
            events: Vec::new(),
            cov: vec![0; COV_BITS],
            stats: Stats::default(),
            op_index: 0,
            uffd_async: false,
            linux: LINUX_DEFAULT,
            arena_neighbours: false,
        }
    }

    pub fn hit(&mut self, h: u32) {
        let i = (h as usize) % COV_BITS;
        self.cov[i] = self.cov[i].saturating_add(1);
    }

    pub fn ptrs(&self) -> usize {
        self.geom.ptrs
    }
    pub fn slots(&self) -> usize {
        crate::prog::ARENA_PMDS
    }
    pub fn pages(&self) -> usize {
        self.slots() * self.ptrs()
    }

    /// A violation found inside a kernel path.
    pub fn bug(
        &self,
        inv: Invariant,
        func: &'static str,
        mm: usize,
        page: usize,
        msg: String,
    ) -> KErr {
        KErr::Bug(Box::new(self.violation(inv, func, mm, page, msg)))
    }

    /// A violation of `inv` in `func` at page `page` of mm `mm`, now.
    pub fn violation(
        &self,
        inv: Invariant,
        func: &str,
        mm: usize,
        page: usize,
        msg: String,
    ) -> Violation {
        Violation {
            invariant: inv,
            severity: inv.default_severity(),
            function: func.to_string(),
            op_index: self.op_index,
            mm,
            addr: self.geom.addr_of(page),
            message: msg,
        }
    }

    pub fn event(&mut self, kind: EventKind, func: &'static str, mm: usize, lo: usize, hi: usize) {
        self.events.push(Event {
            kind,
            func,
            mm,
            lo,
            hi,
        });
    }

    /// The same violation with another severity (a site knows more than the invariant).
    pub fn bug_sev(
        &self,
        inv: Invariant,
        sev: crate::base::Severity,
        func: &'static str,
        mm: usize,
        page: usize,
        msg: String,
    ) -> KErr {
        match self.bug(inv, func, mm, page, msg) {
            KErr::Bug(v) => KErr::Bug(Box::new(v.with_severity(sev))),
            e => e,
        }
    }

    /// A retry loop went round once more: a livelock if it can never progress.
    /// `killable`: the loop goes through user mode (a fault that returns and
    /// refaults, or `restart_syscall()`), so SIGKILL ends it.
    pub fn retry_guard(
        &mut self,
        iters: &mut u32,
        func: &'static str,
        mm: usize,
        page: usize,
        killable: bool,
    ) -> KResult<()> {
        use crate::base::Severity;
        *iters += 1;
        self.stats.retries += 1;
        if self.alloc.pte_fails_forever() || *iters > RETRY_LIMIT {
            let (sev, how) = if killable {
                (
                    Severity::KillableLoop,
                    "the loop goes back through user mode (a fault that refaults, or restart_syscall()); SIGKILL ends it",
                )
            } else {
                (
                    Severity::UnkillableLoop,
                    "the loop has no exit (no error, no fatal-signal check) and never returns to user mode",
                )
            };
            return Err(self.bug_sev(
                Invariant::NoLivelock,
                sev,
                func,
                mm,
                page,
                format!(
                    "{func} retries the PMD split forever: every pte_alloc_one() fails from here on and {how}; detected at iteration {}",
                    iters
                ),
            ));
        }
        Ok(())
    }

    // ------------------------------------------------------------ folios

    /// Mark a folio freed (back to the page allocator).
    pub fn free_folio(&mut self, f: FolioId) {
        self.folios[f as usize].freed = true;
        self.live_folios.remove(&f);
    }

    pub fn folio_alloc(&mut self, nr: usize, data: Vec<u64>) -> FolioId {
        let id = self.folios.len() as FolioId;
        self.live_folios.insert(id);
        self.folios.push(Folio {
            nr,
            refcount: 0,
            entire_mapcount: 0,
            large_mapcount: 0,
            pincount: 0,
            anon_exclusive: vec![false; nr],
            data,
            lazyfree: false,
            node: 0,
            partially_mapped: false,
            anon_vma: 0,
            index: 0,
            dirty: false,
            freed: false,
        });
        id
    }

    /// `folio_put()` (n references): freeing happens at zero; below zero is a bug.
    pub fn folio_put(&mut self, f: FolioId, n: i64, func: &'static str, mm: usize) -> KResult<()> {
        let fo = &mut self.folios[f as usize];
        fo.refcount -= n;
        if fo.refcount < 0 || fo.freed {
            let rc = fo.refcount;
            return Err(self.bug_sev(
                Invariant::FolioCounts,
                crate::base::Severity::Crash,
                func,
                mm,
                0,
                format!("folio {f} refcount underflow ({rc}): put of a freed folio"),
            ));
        }
        if fo.refcount == 0 {
            self.free_folio(f);
        }
        Ok(())
    }

    /// Remove one PTE mapping of a page (`folio_remove_rmap_pte` + put).
    pub fn unmap_pte_page(&mut self, mm: usize, f: FolioId, func: &'static str) -> KResult<()> {
        self.folios[f as usize].large_mapcount -= 1;
        self.folio_put(f, 1, func, mm)
    }

    /// Free a swap slot reference (`swap_free`).
    pub fn swap_put(&mut self, s: SwapId) {
        self.swap[s as usize].count -= 1;
        if self.swap[s as usize].count == 0 {
            self.live_swap.remove(&s);
        }
    }

    // ------------------------------------------------------------ huge zero

    /// `mm_get_huge_zero_folio()`: the first user allocates (a THP allocation).
    pub fn mm_get_huge_zero_folio(&mut self, mm: usize) -> bool {
        if self.mms[mm].huge_zero {
            return true;
        }
        if self.huge_zero_refcount == 0 {
            if !self.alloc.alloc(AllocKind::Thp, "get_huge_zero_folio") {
                return false;
            }
            // One reference is kept for the shrinker.
            self.huge_zero_refcount = 1;
        }
        self.huge_zero_refcount += 1;
        self.mms[mm].huge_zero = true;
        true
    }

    /// `mm_put_huge_zero_folio()` at `__mmput`.
    pub fn mm_put_huge_zero_folio(&mut self, mm: usize) {
        if self.mms[mm].huge_zero {
            self.huge_zero_refcount -= 1;
            self.mms[mm].huge_zero = false;
        }
    }

    // ------------------------------------------------------------ contents

    /// What a read of `page` in `mm` returns without changing state
    /// (none, zero and unmapped read as 0).
    pub fn page_value(&self, mm: usize, page: usize) -> u64 {
        let slot = self.geom.slot_of(page);
        let i = page % self.ptrs();
        match self.mms[mm].pmds[slot] {
            Pmd::None | Pmd::HugeZero => 0,
            Pmd::Huge { folio, .. } | Pmd::Migration { folio, .. } => {
                self.folios[folio as usize].data[i]
            }
            Pmd::Swap { first } => self.swap[first as usize + i].data,
            Pmd::Table(t) => match self.pte(t, i) {
                Pte::None | Pte::Zero | Pte::Guard => 0,
                Pte::Present { folio, idx, .. } | Pte::Migration { folio, idx, .. } => {
                    self.folios[folio as usize].data[idx as usize]
                }
                Pte::Swap(s) => self.swap[s as usize].data,
            },
        }
    }

    /// Is `page` a guard marker?
    pub fn is_guard(&self, mm: usize, page: usize) -> bool {
        matches!(self.mms[mm].pmds[self.geom.slot_of(page)],
            Pmd::Table(t) if self.pte(t, page % self.ptrs()) == Pte::Guard)
    }

    /// Does `page` have a non-none entry (the uffd-wp bit can only live there)?
    pub fn populated(&self, mm: usize, page: usize) -> bool {
        match self.mms[mm].pmds[self.geom.slot_of(page)] {
            Pmd::None => false,
            Pmd::Table(t) => self.pte(t, page % self.ptrs()) != Pte::None,
            _ => true,
        }
    }

    /// Clear the uffd-wp bits of pages `[lo, hi)` (their entries went away or moved).
    pub fn clear_uffd_wp(&mut self, mm: usize, lo: usize, hi: usize) {
        self.mms[mm].uffd_wp[lo..hi]
            .iter_mut()
            .for_each(|b| *b = false);
    }

    /// The folio mapped at `page` (by PMD or PTE), if any.
    pub fn folio_at(&self, mm: usize, page: usize) -> Option<FolioId> {
        let slot = self.geom.slot_of(page);
        match self.mms[mm].pmds[slot] {
            Pmd::Huge { folio, .. } => Some(folio),
            Pmd::Table(t) => match self.pte(t, page % self.ptrs()) {
                Pte::Present { folio, .. } => Some(folio),
                _ => None,
            },
            _ => None,
        }
    }

    pub fn new_anon_vma(&mut self) -> u32 {
        let a = self.next_anon_vma;
        self.next_anon_vma += 1;
        a
    }

    /// `vmf_anon_prepare()` / `anon_vma_prepare()`
    pub fn anon_vma_prepare(&mut self, mm: usize, vi: usize) {
        if self.mms[mm].vmas[vi].anon_vma == 0 {
            // anon_vma and anon_vma_chain: accounted slab (mm/rmap.c SLAB_ACCOUNT).
            self.alloc.charge(Charge::Slab, "anon_vma_prepare");
            let a = self.new_anon_vma();
            self.mms[mm].vmas[vi].anon_vma = a;
            self.mms[mm].vmas[vi].chain.push(a);
        }
    }

    /// `__folio_set_anon()` (exclusive: the VMA's own anon_vma) or
    /// `folio_move_anon_rmap()`: `f` now belongs to the VMA at `page` of `mm`,
    /// its first page at `page`.
    pub fn folio_set_anon(&mut self, f: FolioId, mm: usize, page: usize) {
        if let Some(vi) = self.mms[mm].vma_at(page) {
            let v = &self.mms[mm].vmas[vi];
            let (a, idx) = (v.anon_vma, v.linear_page_index(page));
            let fo = &mut self.folios[f as usize];
            fo.anon_vma = a;
            fo.index = idx;
        }
    }

    /// `folio_move_anon_rmap()`: `f` now belongs to the anon_vma of the VMA at
    /// `page` (its index is unchanged).
    pub fn folio_move_anon_rmap(&mut self, f: FolioId, mm: usize, page: usize) {
        if let Some(vi) = self.mms[mm].vma_at(page) {
            self.folios[f as usize].anon_vma = self.mms[mm].vmas[vi].anon_vma;
        }
    }

    /// The strategy the policy gives a split caller.
    pub fn strategy(&self, c: SplitCaller) -> crate::model::policy::Strategy {
        self.policy.strategy(c)
    }
}
