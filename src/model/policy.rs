//! Policies: what each split caller does when `__split_huge_pmd()` cannot
//! allocate its PTE table, preset by preset, as posted.
//!
//! The presets follow the posted code caller by caller. Every (preset, caller)
//! cell carries the patch (version/number) and the kernel function it follows,
//! or says GUESS and why. The reference is the per-caller reading of v1, v2 and
//! v3 on Linux 7.2.13 (kernel-model.md, Corrections; the series notes cited in
//! the README): v1 is the RFC (2026-02-11) whose only code is v2 14's lazy
//! allocation on void split functions; v2 is RFC v2 (2026-02-26, 21 patches);
//! v3 is v3 (2026-03-27, 24 patches). v2 01-12 are v3 01-12 in code; v3 13
//! (pagemap_scan) has no v2 counterpart.

use std::fmt;

/// Every kernel site that splits a huge PMD and must cope with a failed split,
/// and that a process can reach on x86-64 anonymous memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SplitCaller {
    /// mm/memory.c `zap_pmd_range`: MADV_DONTNEED, or MADV_GUARD_INSTALL's
    /// zap, on part of a huge PMD.
    ZapPmdRange,
    /// mm/huge_memory.c `do_huge_pmd_wp_page`: CoW / unshare / huge-zero write
    /// fallback to 4K.
    DoHugePmdWpPage,
    /// mm/memory.c `wp_huge_pmd`: uffd-wp async write fault on a huge PMD.
    WpHugePmd,
    /// mm/huge_memory.c `copy_huge_pmd`: fork of a maybe-pinned anon THP.
    CopyHugePmd,
    /// mm/mprotect.c `change_pmd_range`: UFFDIO_WRITEPROTECT on part of a THP.
    ChangePmdRange,
    /// mm/mremap.c `move_page_tables`: an extent smaller than a PMD.
    MovePageTables,
    /// mm/userfaultfd.c `move_pages`: UFFDIO_MOVE of part of a THP.
    MovePages,
    /// fs/proc/task_mmu.c `pagemap_scan_thp_entry`: PAGEMAP_SCAN
    /// write-protect of part of a THP.
    PagemapScanThpEntry,
    /// mm/huge_memory.c `vma_adjust_trans_huge`: VMA split or merge at an
    /// unaligned address (munmap, mprotect, mlock, mbind, uffd (un)register,
    /// mremap).
    VmaAdjustTransHuge,
    /// mm/mremap.c `unmap_source_vma`: the source unmap after a successful
    /// move, whose VMA split may now fail (not a split caller itself: it
    /// decides what a failed `vma_adjust_trans_huge()` means to mremap).
    UnmapSourceVma,
    /// mm/rmap.c `try_to_unmap_one`: reclaim with TTU_SPLIT_HUGE_PMD.
    TryToUnmapOne,
    /// mm/rmap.c `try_to_migrate_one`: folio split (`unmap_folio`) with freeze.
    TryToMigrateOne,
    /// mm/madvise.c `madvise_cold_or_pageout_pte_range`: split_folio on a
    /// partial PMD.
    MadviseColdOrPageout,
    /// mm/huge_memory.c `madvise_free_huge_pmd`: split_folio on a partial PMD.
    MadviseFreeHugePmd,
}

impl SplitCaller {
    pub const ALL: [SplitCaller; 14] = [
        SplitCaller::ZapPmdRange,
        SplitCaller::DoHugePmdWpPage,
        SplitCaller::WpHugePmd,
        SplitCaller::CopyHugePmd,
        SplitCaller::ChangePmdRange,
        SplitCaller::MovePageTables,
        SplitCaller::MovePages,
        SplitCaller::PagemapScanThpEntry,
        SplitCaller::VmaAdjustTransHuge,
        SplitCaller::UnmapSourceVma,
        SplitCaller::TryToUnmapOne,
        SplitCaller::TryToMigrateOne,
        SplitCaller::MadviseColdOrPageout,
        SplitCaller::MadviseFreeHugePmd,
    ];

    /// The kernel function name.
    pub fn name(self) -> &'static str {
        match self {
            SplitCaller::ZapPmdRange => "zap_pmd_range",
            SplitCaller::DoHugePmdWpPage => "do_huge_pmd_wp_page",
            SplitCaller::WpHugePmd => "wp_huge_pmd",
            SplitCaller::CopyHugePmd => "copy_huge_pmd",
            SplitCaller::ChangePmdRange => "change_pmd_range",
            SplitCaller::MovePageTables => "move_page_tables",
            SplitCaller::MovePages => "move_pages",
            SplitCaller::PagemapScanThpEntry => "pagemap_scan_thp_entry",
            SplitCaller::VmaAdjustTransHuge => "vma_adjust_trans_huge",
            SplitCaller::UnmapSourceVma => "unmap_source_vma",
            SplitCaller::TryToUnmapOne => "try_to_unmap_one",
            SplitCaller::TryToMigrateOne => "try_to_migrate_one",
            SplitCaller::MadviseColdOrPageout => "madvise_cold_or_pageout_pte_range",
            SplitCaller::MadviseFreeHugePmd => "madvise_free_huge_pmd",
        }
    }

    pub fn from_name(s: &str) -> Option<SplitCaller> {
        SplitCaller::ALL.iter().copied().find(|c| c.name() == s)
    }

    /// The split caller to override for a finding reported at kernel function
    /// `func` (where the harm shows): the caller itself, or the caller whose
    /// failure handling leads there.
    pub fn for_finding(func: &str) -> Option<SplitCaller> {
        SplitCaller::from_name(func).or(match func {
            // copy_huge_pmd() -EAGAIN → copy_pmd_range()'s "bad pmd"
            "copy_pmd_range" => Some(SplitCaller::CopyHugePmd),
            // The zap skip turns guard installation into a restart loop.
            "madvise_guard_install" => Some(SplitCaller::ZapPmdRange),
            // A straddling huge PMD is found at the next split of it.
            "__split_huge_pmd_locked" => Some(SplitCaller::VmaAdjustTransHuge),
            "pagemap_scan_pmd_entry" => Some(SplitCaller::PagemapScanThpEntry),
            "move_pages_pte" => Some(SplitCaller::MovePages),
            _ => None,
        })
    }

    /// The kernel call chain from the system call to where a finding reported
    /// at `func` shows its harm (7.2 files), for crash files and `repro`.
    pub fn call_chain(func: &str) -> Option<&'static str> {
        Some(match func {
            "zap_pmd_range" => "madvise(MADV_DONTNEED) → madvise_dontneed_single_vma → zap_vma_range_batched → zap_pmd_range → __split_huge_pmd (mm/madvise.c, mm/memory.c, mm/huge_memory.c); MADV_GUARD_INSTALL reaches it through madvise_guard_install → zap_vma_range",
            "madvise_guard_install" => "madvise(MADV_GUARD_INSTALL) → madvise_guard_install → zap_vma_range → zap_pmd_range → __split_huge_pmd; after MAX_MADVISE_GUARD_RETRIES (3) rounds restart_syscall() (mm/madvise.c, mm/memory.c)",
            "change_pmd_range" => "ioctl(UFFDIO_WRITEPROTECT) → mwriteprotect_range → uffd_wp_range → change_protection → change_pmd_range → __split_huge_pmd (mm/userfaultfd.c, mm/mprotect.c)",
            "unmap_source_vma" => "mremap → move_vma → copy_vma_and_data → move_page_tables (succeeds) → unmap_source_vma → do_vmi_munmap → __split_vma → vma_adjust_trans_huge → split_huge_pmd_address → __split_huge_pmd: -ENOMEM ignored (\"OOM: unable to split vma\") (mm/mremap.c, mm/vma.c, mm/huge_memory.c)",
            "pagemap_scan_pmd_entry" | "pagemap_scan_thp_entry" => "ioctl(PAGEMAP_SCAN) → do_pagemap_scan → walk_page_range → walk_pmd_range → pagemap_scan_pmd_entry → pagemap_scan_thp_entry → split_huge_pmd; -ENOENT, pte_offset_map_lock() NULL → ACTION_AGAIN → goto again (fs/proc/task_mmu.c, mm/pagewalk.c)",
            "copy_pmd_range" | "copy_huge_pmd" => "fork → dup_mmap → copy_page_range → copy_pmd_range → copy_huge_pmd (-EBUSY from folio_try_dup_anon_rmap_pmd on a pinned THP) → __split_huge_pmd; -EAGAIN → pmd_none_or_clear_bad(src_pmd) (kernel/fork.c, mm/memory.c, mm/huge_memory.c)",
            "vma_adjust_trans_huge" | "__split_huge_pmd_locked" => "munmap / mprotect / mlock / mbind / uffd (un)register / mremap → __split_vma (or commit_merge) → vma_adjust_trans_huge → split_huge_pmd_if_needed → split_huge_pmd_address → __split_huge_pmd (mm/vma.c, mm/huge_memory.c)",
            "do_huge_pmd_wp_page" => "write fault → handle_mm_fault → wp_huge_pmd → do_huge_pmd_wp_page (shared or pinned THP, or huge zero with no THP) → __split_huge_pmd; VM_FAULT_FALLBACK → handle_pte_fault: PMD still huge, return 0 (mm/memory.c, mm/huge_memory.c)",
            "wp_huge_pmd" => "write fault → handle_mm_fault → wp_huge_pmd (uffd-wp async: goto split) → __split_huge_pmd; VM_FAULT_FALLBACK → handle_pte_fault: PMD still huge, return 0 (mm/memory.c)",
            "move_page_tables" => "mremap → move_vma → copy_vma_and_data → move_page_tables → split_huge_pmd; pte_alloc(new_pmd); move_ptes() -EAGAIN → goto again (mm/mremap.c)",
            "move_pages" => "ioctl(UFFDIO_MOVE) → userfaultfd_move → move_pages → split_huge_pmd; continue (mm/userfaultfd.c)",
            "try_to_unmap_one" => "reclaim → shrink_folio_list → try_to_unmap(TTU_SPLIT_HUGE_PMD) → rmap_walk_anon → try_to_unmap_one → split_huge_pmd_locked (mm/vmscan.c, mm/rmap.c)",
            "try_to_migrate_one" => "split_folio → __folio_split → unmap_folio → try_to_migrate(TTU_SPLIT_HUGE_PMD) → try_to_migrate_one → split_huge_pmd_locked (mm/huge_memory.c, mm/rmap.c)",
            "madvise_cold_or_pageout_pte_range" => "madvise(MADV_COLD/MADV_PAGEOUT) → madvise_cold_or_pageout_pte_range → split_folio → try_to_migrate_one (mm/madvise.c, mm/huge_memory.c, mm/rmap.c)",
            "madvise_free_huge_pmd" => "madvise(MADV_FREE) → madvise_free_pte_range → madvise_free_huge_pmd → split_folio → try_to_migrate_one (mm/madvise.c, mm/huge_memory.c)",
            _ => return None,
        })
    }

    /// Advisory callers may skip a range by definition (MADV_COLD/PAGEOUT/FREE).
    pub fn advisory(self) -> bool {
        matches!(
            self,
            SplitCaller::MadviseColdOrPageout | SplitCaller::MadviseFreeHugePmd
        )
    }

    /// The user-visible consequence of a strategy, as the model runs it.
    pub fn describe(self, s: Strategy) -> &'static str {
        use SplitCaller::*;
        use Strategy::*;
        match (self, s) {
            (ZapPmdRange, Proceed) => "zap_pte_range() finds no table, returns addr, pmd--: the same PMD again, one allocation per pass; MADV_DONTNEED never returns while allocations fail (unkillable loop)",
            (ZapPmdRange, Skip) => "addr = next; continue: MADV_DONTNEED returns 0 and the range keeps its data (silent retention); MADV_GUARD_INSTALL sees the THP again, 3 zap rounds, restart_syscall() (killable loop)",
            (ZapPmdRange, Retry) => "retry the split until it succeeds (unkillable loop while allocations fail)",
            (ZapPmdRange, Error) => "-ENOMEM to MADV_DONTNEED / MADV_GUARD_INSTALL",
            (DoHugePmdWpPage | WpHugePmd, Proceed | Skip | Retry) => "VM_FAULT_FALLBACK; handle_pte_fault() finds the PMD still huge and returns 0: the access faults again without progress (killable loop)",
            (DoHugePmdWpPage | WpHugePmd, Error) => "VM_FAULT_OOM: a user fault is retried (pagefault_out_of_memory() warns, killable while allocations fail); GUP gets -ENOMEM",
            (CopyHugePmd, Proceed | Skip | Retry) => "-EAGAIN; copy_pmd_range() → pmd_none_or_clear_bad(): a huge PMD is pmd_bad(), \"bad pmd\", the parent's mapping is cleared (data loss, leaked folio and RSS), the child gets nothing, fork succeeds (crash)",
            (CopyHugePmd, Error) => "-ENOMEM: fork fails, the parent is unchanged",
            (ChangePmdRange, Proceed) => "change_pte_range() -EAGAIN: goto again without cond_resched(); UFFDIO_WRITEPROTECT never returns while allocations fail (unkillable loop)",
            (ChangePmdRange, Skip) => "the range keeps its old protection and the call returns 0 (silent skip)",
            (ChangePmdRange, Retry) => "cond_resched(); goto again: UFFDIO_WRITEPROTECT never returns while allocations fail (unkillable loop)",
            (ChangePmdRange, Error) => "-ENOMEM to UFFDIO_WRITEPROTECT (the PMDs before it already changed)",
            (MovePageTables, Proceed | Retry) => "pte_alloc(new_pmd): if the destination PMD already has a table, move_ptes() -EAGAIN, goto again (unkillable loop while allocations fail); else that allocation fails too: break, revert, -ENOMEM",
            (MovePageTables, Skip) => "the extent is not moved and mremap returns success (silent skip)",
            (MovePageTables, Error) => "break: copy_vma_and_data() moves the moved part back; mremap returns -ENOMEM with the old mapping intact",
            (MovePages, Proceed | Retry) => "continue: the same PMD again, skipping cond_resched() and the fatal-signal check (unkillable loop while allocations fail)",
            (MovePages, Skip) => "the move stops (-ENOMEM, or -EAGAIN with the bytes moved)",
            (MovePages, Error) => "err = -ENOMEM; break: -ENOMEM, or -EAGAIN with the bytes moved so far",
            (PagemapScanThpEntry, Proceed | Retry) => "-ENOENT; pagemap_scan_pmd_entry() finds the PMD still huge: ACTION_AGAIN, walk_pmd_range() goes again (unkillable loop while allocations fail)",
            (PagemapScanThpEntry, Skip) => "the THP is left writable and the scan returns success (silent skip)",
            (PagemapScanThpEntry, Error) => "back out the output, -ENOMEM from the ioctl",
            (VmaAdjustTransHuge, Proceed | Skip | Retry) => "the VMA split goes ahead with a huge PMD straddling the new boundary (VM_BUG_ON_VMA at its next split: crash)",
            (VmaAdjustTransHuge, Error) => "-ENOMEM before vma_prepare(): the VMA is unchanged and the syscall fails (madvise: -EAGAIN); an unaligned split allocates even without a THP there",
            (UnmapSourceVma, Proceed | Skip | Retry) => "do_vmi_munmap() of the source fails (its VMA split could not get a table) and unmap_source_vma() ignores it: mremap returns the new address and the old range stays mapped, empty (silent retention)",
            (UnmapSourceVma, Error) => "the source VMA is split before the move, so the failure aborts mremap with -ENOMEM before anything moved",
            (TryToUnmapOne | TryToMigrateOne, Proceed) => "a void split inside the rmap walk (no posting does this): the walk restarts on a still-huge PMD, VM_BUG_ON_FOLIO(!pvmw.pte) (crash)",
            (TryToUnmapOne | TryToMigrateOne, Skip | Retry | Error) => "ret = false: the rmap walk stops and the folio stays mapped (reclaim keeps it; split_folio() -EAGAIN); the PMD mappings split before it keep their tables",
            (MadviseColdOrPageout | MadviseFreeHugePmd, Proceed | Skip | Retry) => "split_folio() -EAGAIN: the range is skipped (advisory, allowed)",
            (MadviseColdOrPageout | MadviseFreeHugePmd, Error) => "-ENOMEM to madvise",
        }
    }
}

/// What a caller does when the split fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Strategy {
    /// `void` split: the caller carries on as if the PMD had been split;
    /// the consequence is whatever the kernel code then does (loop, skip, crash).
    Proceed,
    /// Skip the range and report success.
    Skip,
    /// Retry the split until it succeeds (v3 `change_pmd_range`: cond_resched + goto again).
    Retry,
    /// Return the error to user space (or ret=false for rmap walkers).
    Error,
}

impl Strategy {
    pub const ALL: [Strategy; 4] = [
        Strategy::Proceed,
        Strategy::Skip,
        Strategy::Retry,
        Strategy::Error,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Proceed => "proceed",
            Strategy::Skip => "skip",
            Strategy::Retry => "retry",
            Strategy::Error => "error",
        }
    }
    pub fn from_name(s: &str) -> Option<Strategy> {
        Strategy::ALL.iter().copied().find(|x| x.name() == s)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Preset {
    Deposit,
    LazyV1,
    LazyV2,
    LazyV3,
    LazyFixed,
}

impl Preset {
    pub const ALL: [Preset; 5] = [
        Preset::Deposit,
        Preset::LazyV1,
        Preset::LazyV2,
        Preset::LazyV3,
        Preset::LazyFixed,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Preset::Deposit => "deposit",
            Preset::LazyV1 => "lazy-v1",
            Preset::LazyV2 => "lazy-v2",
            Preset::LazyV3 => "lazy-v3",
            Preset::LazyFixed => "lazy-fixed",
        }
    }
    pub fn from_name(s: &str) -> Option<Preset> {
        Preset::ALL.iter().copied().find(|p| p.name() == s)
    }
    /// The names, for error messages.
    pub fn names() -> String {
        Preset::ALL.map(|p| p.name()).join(", ")
    }
    /// The preset named `s`, or the one message for an unknown name (every
    /// preset listed, from [`Preset::ALL`]).
    pub fn parse(s: &str) -> Result<Preset, String> {
        Preset::from_name(s).ok_or_else(|| format!("unknown policy '{s}' ({})", Preset::names()))
    }
    pub fn summary(self) -> &'static str {
        match self {
            Preset::Deposit => "today's kernel (and PowerPC hash): a PTE table is deposited with every anon huge PMD, split withdraws it and never fails",
            Preset::LazyV1 => "RFC v1 (2026-02-11): v2 14's lazy allocation on void split functions; every caller carries on as 7.2's code does",
            Preset::LazyV2 => "RFC v2 (2026-02-26, 21 patches): split returns -ENOMEM, callers as posted; pagemap_scan still ignores it",
            Preset::LazyV3 => "v3 (2026-03-27, 24 patches): split returns -ENOMEM, callers as posted",
            Preset::LazyFixed => "every caller returns the error (advisory madvise and reclaim may skip); MADV_DONTNEED and UFFDIO_WRITEPROTECT return -ENOMEM; the split allocates only for a huge PMD; the reference",
        }
    }
}

/// One cell of a preset: the strategy and where it comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cell {
    pub strategy: Strategy,
    /// "v3 05 · mm/memory.c:zap_pmd_range", or "GUESS: ..." with the reason.
    pub cite: &'static str,
}

const fn c(strategy: Strategy, cite: &'static str) -> Cell {
    Cell { strategy, cite }
}

/// The preset table: each caller under each preset, cited.
pub fn cell(p: Preset, caller: SplitCaller) -> Cell {
    use SplitCaller::*;
    use Strategy::*;
    match (p, caller) {
        // A PMD split never fails under deposit. A folio split does (a pin):
        // the madvise PTE loops then leave the folio in place, in every kernel.
        (Preset::Deposit, MadviseColdOrPageout | MadviseFreeHugePmd) => c(Skip, "7.2 mm/madvise.c: a failed split_folio() (a pin) skips the range"),
        (Preset::Deposit, _) => c(Error, "7.2: __split_huge_pmd() withdraws the deposited table and cannot fail"),

        (Preset::LazyV1, ZapPmdRange) => c(Proceed, "v1 (v2 14 on void split) · 7.2 mm/memory.c:zap_pmd_range, zap_pte_range"),
        (Preset::LazyV2, ZapPmdRange) => c(Skip, "v2 05 · mm/memory.c:zap_pmd_range"),
        (Preset::LazyV3, ZapPmdRange) => c(Skip, "v3 05 · mm/memory.c:zap_pmd_range"),
        (Preset::LazyFixed, ZapPmdRange) => c(Error, "fix: return -ENOMEM from the zap (Kiryl Shutsemau / David Hildenbrand review of v3 05, 2026-03-30)"),

        (Preset::LazyV1, DoHugePmdWpPage) => c(Proceed, "v1 · 7.2 mm/huge_memory.c:do_huge_pmd_wp_page fallback, mm/memory.c:handle_pte_fault"),
        (Preset::LazyV2, DoHugePmdWpPage) => c(Error, "v2 04 · mm/huge_memory.c:do_huge_pmd_wp_page (VM_FAULT_OOM)"),
        (Preset::LazyV3, DoHugePmdWpPage) => c(Error, "v3 04 · mm/huge_memory.c:do_huge_pmd_wp_page (VM_FAULT_OOM)"),
        (Preset::LazyFixed, DoHugePmdWpPage) => c(Error, "as v3 04 (VM_FAULT_OOM)"),

        (Preset::LazyV1, WpHugePmd) => c(Proceed, "v1 · 7.2 mm/memory.c:wp_huge_pmd split label, handle_pte_fault"),
        (Preset::LazyV2, WpHugePmd) => c(Error, "v2 06 · mm/memory.c:wp_huge_pmd (VM_FAULT_OOM)"),
        (Preset::LazyV3, WpHugePmd) => c(Error, "v3 06 · mm/memory.c:wp_huge_pmd (VM_FAULT_OOM)"),
        (Preset::LazyFixed, WpHugePmd) => c(Error, "as v3 06 (VM_FAULT_OOM)"),

        (Preset::LazyV1, CopyHugePmd) => c(Proceed, "v1 · 7.2 mm/huge_memory.c:copy_huge_pmd -EAGAIN, mm/memory.c:copy_pmd_range pmd_none_or_clear_bad"),
        (Preset::LazyV2, CopyHugePmd) => c(Error, "v2 03 · mm/huge_memory.c:copy_huge_pmd (-ENOMEM)"),
        (Preset::LazyV3, CopyHugePmd) => c(Error, "v3 03 · mm/huge_memory.c:copy_huge_pmd (-ENOMEM)"),
        (Preset::LazyFixed, CopyHugePmd) => c(Error, "as v3 03"),

        (Preset::LazyV1, ChangePmdRange) => c(Proceed, "v1 · 7.2 mm/mprotect.c:change_pmd_range, change_pte_range -EAGAIN"),
        (Preset::LazyV2, ChangePmdRange) => c(Retry, "v2 07 · mm/mprotect.c:change_pmd_range (cond_resched; goto again)"),
        (Preset::LazyV3, ChangePmdRange) => c(Retry, "v3 07 · mm/mprotect.c:change_pmd_range (cond_resched; goto again)"),
        (Preset::LazyFixed, ChangePmdRange) => c(Error, "fix: return -ENOMEM (Kiryl Shutsemau asks to split up front, review of v3 07, 2026-03-30)"),

        (Preset::LazyV1, MovePageTables) => c(Proceed, "v1 · 7.2 mm/mremap.c:move_page_tables (pte_alloc(new_pmd), move_ptes -EAGAIN, goto again)"),
        (Preset::LazyV2, MovePageTables) => c(Error, "v2 10 · mm/mremap.c:move_page_tables (break; 7.2 copy_vma_and_data reverts)"),
        (Preset::LazyV3, MovePageTables) => c(Error, "v3 10 · mm/mremap.c:move_page_tables (break; 7.2 copy_vma_and_data reverts)"),
        (Preset::LazyFixed, MovePageTables) => c(Error, "as v3 10"),

        (Preset::LazyV1, MovePages) => c(Proceed, "v1 · 7.2 mm/userfaultfd.c:move_pages (split_huge_pmd; continue)"),
        (Preset::LazyV2, MovePages) => c(Error, "v2 11 · mm/userfaultfd.c:move_pages"),
        (Preset::LazyV3, MovePages) => c(Error, "v3 11 · mm/userfaultfd.c:move_pages"),
        (Preset::LazyFixed, MovePages) => c(Error, "as v3 11"),

        (Preset::LazyV1, PagemapScanThpEntry) => c(Proceed, "v1 · 7.2 fs/proc/task_mmu.c:pagemap_scan_thp_entry, pagemap_scan_pmd_entry ACTION_AGAIN"),
        (Preset::LazyV2, PagemapScanThpEntry) => c(Proceed, "v2: no patch for this caller; v2 13's __must_check result is ignored (kernel test bot, Usama's reply to v2 13, 2026-02-27) · fs/proc/task_mmu.c:pagemap_scan_thp_entry"),
        (Preset::LazyV3, PagemapScanThpEntry) => c(Error, "v3 13 · fs/proc/task_mmu.c:pagemap_scan_thp_entry (-ENOMEM)"),
        (Preset::LazyFixed, PagemapScanThpEntry) => c(Error, "as v3 13"),

        (Preset::LazyV1, VmaAdjustTransHuge) => c(Proceed, "v1 · seed __split_huge_pmd on 7.2 mm/huge_memory.c:vma_adjust_trans_huge (after vma_prepare, void)"),
        (Preset::LazyV2, VmaAdjustTransHuge) => c(Error, "v2 02 · mm/vma.c:__split_vma, commit_merge (before vma_prepare)"),
        (Preset::LazyV3, VmaAdjustTransHuge) => c(Error, "v3 02 · mm/vma.c:__split_vma, commit_merge (before vma_prepare)"),
        (Preset::LazyFixed, VmaAdjustTransHuge) => c(Error, "as v3 02"),

        (Preset::LazyV1, UnmapSourceVma) => c(Skip, "7.2 mm/mremap.c:unmap_source_vma ignores a do_vmi_munmap() error (unreached under v1: its VMA split cannot fail)"),
        (Preset::LazyV2, UnmapSourceVma) => c(Skip, "7.2 mm/mremap.c:unmap_source_vma ignores a do_vmi_munmap() error (\"OOM: unable to split vma\"); no v2 patch touches it"),
        (Preset::LazyV3, UnmapSourceVma) => c(Skip, "7.2 mm/mremap.c:unmap_source_vma ignores a do_vmi_munmap() error (\"OOM: unable to split vma\"); no v3 patch touches it"),
        (Preset::LazyFixed, UnmapSourceVma) => c(Error, "fix: split the source VMA before the move so the failure aborts mremap"),

        (Preset::LazyV1, TryToUnmapOne) => c(Error, "v1 = v2 14 rmap hunk · mm/rmap.c:try_to_unmap_one (prealloc before the walk, ret = false)"),
        (Preset::LazyV2, TryToUnmapOne) => c(Error, "v2 14 · mm/rmap.c:try_to_unmap_one (ret = false)"),
        (Preset::LazyV3, TryToUnmapOne) => c(Error, "v3 17 · mm/rmap.c:try_to_unmap_one (ret = false)"),
        (Preset::LazyFixed, TryToUnmapOne) => c(Error, "as v3 17"),

        (Preset::LazyV1, TryToMigrateOne) => c(Error, "v1 = v2 14 rmap hunk · mm/rmap.c:try_to_migrate_one (ret = false)"),
        (Preset::LazyV2, TryToMigrateOne) => c(Error, "v2 14 · mm/rmap.c:try_to_migrate_one (ret = false)"),
        (Preset::LazyV3, TryToMigrateOne) => c(Error, "v3 17 · mm/rmap.c:try_to_migrate_one (ret = false)"),
        (Preset::LazyFixed, TryToMigrateOne) => c(Error, "as v3 17"),

        (Preset::LazyV1 | Preset::LazyV2 | Preset::LazyV3 | Preset::LazyFixed, MadviseColdOrPageout) => c(Skip, "7.2 mm/madvise.c:madvise_cold_or_pageout_pte_range: split_folio() error → return 0 (unchanged by every version)"),
        (Preset::LazyV1 | Preset::LazyV2 | Preset::LazyV3 | Preset::LazyFixed, MadviseFreeHugePmd) => c(Skip, "7.2 mm/huge_memory.c:madvise_free_huge_pmd: split_folio() result ignored (unchanged by every version)"),
    }
}

/// A policy: deposit or lazy, plus the per-caller failure handling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub preset: Preset,
    /// `true`: deposit a table at fault/fork/zero-fault (split withdraws, never fails).
    pub deposit: bool,
    strategies: [Strategy; SplitCaller::ALL.len()],
    pub overrides: Vec<(SplitCaller, Strategy)>,
}

impl Policy {
    pub fn preset(p: Preset) -> Policy {
        Policy {
            preset: p,
            deposit: p == Preset::Deposit,
            strategies: SplitCaller::ALL.map(|c| cell(p, c).strategy),
            overrides: Vec::new(),
        }
    }

    /// lazy-fixed: `__split_huge_pmd()` looks at the PMD before it allocates
    /// (pmd_trans_huge() without the lock, again under it), so a VMA split
    /// where no THP is mapped never allocates and never fails. v2/v3
    /// allocate first (their `__split_huge_pmd()`), so an unaligned
    /// mprotect/munmap/mremap of small pages can fail with -ENOMEM, and
    /// mremap's source unmap can fail after copy_vma() merged an unfaulted
    /// moved VMA back into its source (mm/vma.c copy_vma(): "vma_merge with
    /// self"), which splitting the source first cannot prevent.
    pub fn split_checks_pmd_first(&self) -> bool {
        self.preset == Preset::LazyFixed
    }

    pub fn strategy(&self, c: SplitCaller) -> Strategy {
        self.strategies[c as usize]
    }

    pub fn set(&mut self, c: SplitCaller, s: Strategy) {
        self.strategies[c as usize] = s;
        self.overrides.retain(|(x, _)| *x != c);
        self.overrides.push((c, s));
    }

    /// Parse `caller=strategy`. The caller may also be named by the function
    /// where a finding shows its harm (`copy_pmd_range` → `copy_huge_pmd`).
    pub fn apply_override(&mut self, spec: &str) -> Result<(), String> {
        let (c, s) = spec
            .split_once('=')
            .ok_or_else(|| format!("override '{spec}' is not caller=strategy"))?;
        let caller = SplitCaller::for_finding(c.trim()).ok_or_else(|| {
            format!(
                "unknown split caller '{c}' (known: {})",
                SplitCaller::ALL.map(|c| c.name()).join(", ")
            )
        })?;
        let strat = Strategy::from_name(s.trim()).ok_or_else(|| {
            format!("unknown strategy '{s}' (known: proceed, skip, retry, error)")
        })?;
        self.set(caller, strat);
        Ok(())
    }

    /// The name used in paths and reports: the preset plus any overrides.
    pub fn label(&self) -> String {
        let mut s = self.preset.name().to_string();
        for (c, st) in &self.overrides {
            s.push_str(&format!("+{}={}", c.name(), st.name()));
        }
        s
    }

    /// A printable table of the policy: per caller the strategy, its source,
    /// and what the model then does.
    pub fn table(&self) -> String {
        let mut out = format!("{}: {}\n", self.label(), self.preset.summary());
        if self.deposit {
            out.push_str(
                "  deposit at fault/fork/zero-fault; __split_huge_pmd withdraws, never fails\n",
            );
            return out;
        }
        if self.split_checks_pmd_first() {
            out.push_str("  no deposit; __split_huge_pmd calls pte_alloc_one() only when the PMD is huge (a lockless check first, rechecked under the lock), and can fail\n");
        } else {
            out.push_str("  no deposit; __split_huge_pmd calls pte_alloc_one() on an anon VMA before looking at the PMD, and can fail\n");
        }
        for c in SplitCaller::ALL {
            let s = self.strategy(c);
            let base = cell(self.preset, c);
            let cite = if s == base.strategy {
                base.cite
            } else {
                "override"
            };
            out.push_str(&format!(
                "  {:<34} {:<8} {}\n  {:<34} {:<8} consequence: {}\n",
                c.name(),
                s.name(),
                cite,
                "",
                "",
                c.describe(s)
            ));
        }
        out
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn presets_roundtrip_and_override() {
        let unknown = Preset::parse("bogus").unwrap_err();
        for p in Preset::ALL {
            assert_eq!(Preset::from_name(p.name()), Some(p));
            assert_eq!(Preset::parse(p.name()), Ok(p));
            assert!(unknown.contains(p.name()), "{unknown}");
        }
        let mut p = Policy::preset(Preset::LazyV3);
        assert_eq!(p.strategy(SplitCaller::ZapPmdRange), Strategy::Skip);
        p.apply_override("zap_pmd_range=error").unwrap();
        assert_eq!(p.strategy(SplitCaller::ZapPmdRange), Strategy::Error);
        assert_eq!(p.label(), "lazy-v3+zap_pmd_range=error");
        assert!(p.apply_override("nope=error").is_err());
        assert!(p.apply_override("zap_pmd_range=sometimes").is_err());
        // The harm site names its caller.
        p.apply_override("copy_pmd_range=proceed").unwrap();
        assert_eq!(p.strategy(SplitCaller::CopyHugePmd), Strategy::Proceed);
    }

    #[test]
    fn every_caller_has_a_call_chain() {
        for c in SplitCaller::ALL {
            assert!(SplitCaller::call_chain(c.name()).is_some(), "{}", c.name());
        }
    }

    #[test]
    fn every_lazy_cell_is_cited_or_a_guess() {
        for p in [
            Preset::LazyV1,
            Preset::LazyV2,
            Preset::LazyV3,
            Preset::LazyFixed,
        ] {
            for c in SplitCaller::ALL {
                let cell = cell(p, c);
                let cited = cell.cite.contains("v1")
                    || cell.cite.contains("v2 ")
                    || cell.cite.contains("v3 ")
                    || cell.cite.starts_with("7.2")
                    || cell.cite.starts_with("v2:")
                    || cell.cite.starts_with("fix:")
                    || cell.cite.starts_with("as v3")
                    || cell.cite.starts_with("GUESS");
                assert!(cited, "{} {}: '{}'", p.name(), c.name(), cell.cite);
            }
        }
    }
}
