//! The split callers (every kernel site that splits a huge PMD and must cope
//! with a failed split) and the strategies a caller can take: the vocabulary
//! of policies, overrides and findings. Imports nothing of the crate; the
//! presets that assign a strategy to each caller are `model::policy`.

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
            // zap_pmd_range=zero zeroes a THP another mapping still sees.
            "folio_zero_range" => Some(SplitCaller::ZapPmdRange),
            _ => None,
        })
    }

    /// The kernel call chain from the system call to where a finding reported
    /// at `func` shows its harm (7.2 files), for crash files and `repro`.
    pub fn call_chain(func: &str) -> Option<&'static str> {
        Some(match func {
            "folio_zero_range" => "madvise(MADV_DONTNEED) → madvise_dontneed_single_vma → zap_vma_range_batched → zap_pmd_range → __split_huge_pmd fails → (proposed, Kiryl Shutsemau on v3 05/24) the covered part of the THP is zeroed in place: every other mapping of the folio sees the zeros (mm/madvise.c, mm/memory.c)",
            "zap_pmd_range" => "madvise(MADV_DONTNEED) → madvise_dontneed_single_vma → zap_vma_range_batched → zap_pmd_range → __split_huge_pmd (mm/madvise.c, mm/memory.c, mm/huge_memory.c); MADV_GUARD_INSTALL reaches it through madvise_guard_install → zap_vma_range",
            "madvise_guard_install" => "madvise(MADV_GUARD_INSTALL) → madvise_guard_install → zap_vma_range → zap_pmd_range → __split_huge_pmd; after MAX_MADVISE_GUARD_RETRIES (3) rounds restart_syscall() (mm/madvise.c, mm/memory.c)",
            "change_pmd_range" => "ioctl(UFFDIO_WRITEPROTECT) → mwriteprotect_range → uffd_wp_range → change_protection → change_pmd_range → __split_huge_pmd (mm/userfaultfd.c, mm/mprotect.c)",
            "unmap_source_vma" => "mremap → move_vma → copy_vma_and_data → move_page_tables (succeeds; or falls short and is moved back, and the new range is unmapped instead) → unmap_source_vma → do_vmi_munmap → __split_vma → vma_adjust_trans_huge → split_huge_pmd_address → __split_huge_pmd: -ENOMEM ignored (\"OOM: unable to split vma\") (mm/mremap.c, mm/vma.c, mm/huge_memory.c)",
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
            (UnmapSourceVma, Proceed | Skip | Retry) => "do_vmi_munmap() of the source fails (its VMA split could not get a table) and unmap_source_vma() ignores it: mremap returns the new address and the old range stays mapped, empty (silent retention); on the error path (a short move moved back), the new range is the one unmapped, so mremap returns -ENOMEM with the new range left mapped",
            (UnmapSourceVma, Error) => "the source VMA is split before the move, so the failure aborts mremap with -ENOMEM before anything moved",
            (TryToUnmapOne | TryToMigrateOne, Proceed) => "a void split inside the rmap walk (no posting does this): the walk restarts on a still-huge PMD, VM_BUG_ON_FOLIO(!pvmw.pte) (crash)",
            (TryToUnmapOne | TryToMigrateOne, Skip | Retry | Error) => "ret = false: the rmap walk stops and the folio stays mapped (reclaim keeps it; split_folio() -EAGAIN); the PMD mappings split before it keep their tables",
            (MadviseColdOrPageout | MadviseFreeHugePmd, Proceed | Skip | Retry) => "split_folio() -EAGAIN: the range is skipped (advisory, allowed)",
            (MadviseColdOrPageout | MadviseFreeHugePmd, Error) => "-ENOMEM to madvise",
            (ZapPmdRange, Zero) => "the covered pages of the THP are zeroed in place and the call returns 0: the range reads zero (MADV_DONTNEED's visible effect) but stays mapped (RSS not dropped); every other mapping of the folio (a fork child, a pin) sees the zeros too; MADV_GUARD_INSTALL still finds the THP (killable loop)",
            (ZapPmdRange, OptIn) => "skip only for a zap caller that passes the opt-in flag; no caller reaching a partial huge PMD opts in (MADV_DONTNEED, MADV_DONTNEED_LOCKED, MADV_GUARD_INSTALL), so -ENOMEM to each",
            (ChangePmdRange, SplitUpfront) => "both partly covered huge PMDs are split before any entry changes; a failed split returns -ENOMEM with nothing changed",
            (_, Zero | OptIn | SplitUpfront) => "not applicable to this caller (rejected by --override)",
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
    /// `zap_pmd_range` only: zero the covered part of the THP in place and
    /// report success (Kiryl Shutsemau on v3 05/24, 2026-03-30: "At very
    /// least you need to zero the skipped range").
    Zero,
    /// `zap_pmd_range` only: skip for the zap callers that opt in with a
    /// zap flag, -ENOMEM for the rest (Kiryl Shutsemau on v3 05/24,
    /// 2026-03-30: "it has to be opt-in. Maybe a ZAP_FLAG_...").
    OptIn,
    /// `change_pmd_range` only: split every partly covered huge PMD before
    /// any entry changes, -ENOMEM with nothing changed (Kiryl Shutsemau on
    /// v3 07/24, 2026-03-30: split page tables up front, as
    /// `vma_adjust_trans_huge()` does for VMA splits).
    SplitUpfront,
}

impl Strategy {
    pub const ALL: [Strategy; 7] = [
        Strategy::Proceed,
        Strategy::Skip,
        Strategy::Retry,
        Strategy::Error,
        Strategy::Zero,
        Strategy::OptIn,
        Strategy::SplitUpfront,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Proceed => "proceed",
            Strategy::Skip => "skip",
            Strategy::Retry => "retry",
            Strategy::Error => "error",
            Strategy::Zero => "zero",
            Strategy::OptIn => "opt-in",
            Strategy::SplitUpfront => "split-upfront",
        }
    }
    /// The one caller a proposed (v3 review) strategy is defined for; None
    /// for the four general strategies, which apply to every caller.
    pub fn only_for(self) -> Option<SplitCaller> {
        match self {
            Strategy::Zero | Strategy::OptIn => Some(SplitCaller::ZapPmdRange),
            Strategy::SplitUpfront => Some(SplitCaller::ChangePmdRange),
            _ => None,
        }
    }
    /// Can `caller` take this strategy?
    pub fn applies_to(self, caller: SplitCaller) -> bool {
        self.only_for().is_none_or(|c| c == caller)
    }
    pub fn from_name(s: &str) -> Option<Strategy> {
        Strategy::ALL.iter().copied().find(|x| x.name() == s)
    }
}

/// Parse an override `CALLER=STRATEGY` (a harm site names its caller:
/// `SplitCaller::for_finding`).
pub fn parse_override(spec: &str) -> Result<(SplitCaller, Strategy), String> {
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
        format!(
            "unknown strategy '{s}' (known: {})",
            Strategy::ALL.map(|s| s.name()).join(", ")
        )
    })?;
    if let Some(only) = strat.only_for().filter(|o| *o != caller) {
        return Err(format!(
            "strategy '{}' applies only to {}, not {}",
            strat.name(),
            only.name(),
            caller.name()
        ));
    }
    Ok((caller, strat))
}
