//! Policies: what each split caller does when `__split_huge_pmd()` cannot
//! allocate its PTE table, preset by preset, as posted.
//!
//! The presets follow the posted code caller by caller. Every (preset, caller)
//! cell carries the patch (version/number) and the kernel function it follows,
//! or says GUESS and why. The reference is the per-caller reading of v1, v2
//! and v3 on Linux 7.2.13 (docs/model.md, Corrections and §10;
//! docs/policies.md): v1 is the RFC (2026-02-11) whose only code is v2 14's
//! lazy allocation on void split functions; v2 is RFC v2 (2026-02-26, 21 patches);
//! v3 is v3 (2026-03-27, 24 patches). v2 01-12 are v3 01-12 in code; v3 13
//! (pagemap_scan) has no v2 counterpart.

use std::fmt;

pub use crate::base::caller::{SplitCaller, Strategy};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Preset {
    Deposit,
    LazyV1,
    LazyV2,
    LazyV3,
    LazyFixed,
    /// v3 plus the v3 review's proposals (zap zeroes in place, mprotect
    /// splits up front) plus PMD-level swap entries for reclaim.
    LazyV4Proposed,
}

impl Preset {
    pub const ALL: [Preset; 6] = [
        Preset::Deposit,
        Preset::LazyV1,
        Preset::LazyV2,
        Preset::LazyV3,
        Preset::LazyFixed,
        Preset::LazyV4Proposed,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Preset::Deposit => "deposit",
            Preset::LazyV1 => "lazy-v1",
            Preset::LazyV2 => "lazy-v2",
            Preset::LazyV3 => "lazy-v3",
            Preset::LazyFixed => "lazy-fixed",
            Preset::LazyV4Proposed => "lazy-v4-proposed",
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
            Preset::LazyV4Proposed => "v3 plus the v3 review's proposals, not posted code: zap_pmd_range zeroes the covered part of the THP in place (Kiryl Shutsemau, v3 05/24), change_pmd_range splits up front (Kiryl Shutsemau, v3 07/24); reclaim swaps a PMD-mapped THP out as one PMD swap entry, with no table, when a contiguous swap cluster is free (\"mm: PMD-level swap entries for anonymous THPs\", v1 2026-04-27 .. v7 2026-09-14), else splits as v3",
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

        // lazy-v4-proposed: the two proposals, the rest as v3.
        (Preset::LazyV4Proposed, ZapPmdRange) => c(Zero, "proposal: Kiryl Shutsemau on v3 05/24 (2026-03-30), \"At very least you need to zero the skipped range\" · mm/memory.c:zap_pmd_range; the alternative, opt-in skip (same mail), is `--override zap_pmd_range=opt-in`"),
        (Preset::LazyV4Proposed, ChangePmdRange) => c(SplitUpfront, "proposal: Kiryl Shutsemau on v3 07/24 (2026-03-30), split page tables up front before change_protection() makes irreversible changes · mm/mprotect.c:change_pmd_range"),
        (Preset::LazyV4Proposed, caller) => {
            let v3 = cell(Preset::LazyV3, caller);
            Cell {
                strategy: v3.strategy,
                cite: match caller {
                    DoHugePmdWpPage => "as v3 04",
                    WpHugePmd => "as v3 06",
                    CopyHugePmd => "as v3 03 (a PMD swap entry is copied whole at fork: no split; GUESS for v7: the PMD swap series' v1 cover letter (2026-04-27) has copy_huge_non_present_pmd() duplicate the 512 slots with one folio_dup_swap(); the v3-v7 code was not read)",
                    MovePageTables => "as v3 10",
                    MovePages => "as v3 11",
                    PagemapScanThpEntry => "as v3 13",
                    VmaAdjustTransHuge => "as v3 02 (also splits a PMD swap entry at an unaligned VMA split, needing a table; GUESS for v7: v2 08/16 of the PMD swap series (2026-06-02) splits a swap PMD into 512 PTE swap entries in __split_huge_pmd_locked() with the deposited table, so under lazy allocation it needs one; the v3-v7 code was not read)",
                    UnmapSourceVma => "as v3: 7.2 mm/mremap.c:unmap_source_vma ignores a do_vmi_munmap() error; no proposal touches it",
                    TryToUnmapOne => "as v3 17; with a free contiguous swap cluster a PMD mapping becomes one PMD swap entry and needs no table (GUESS for v7: v1 12/13 and v2 15/16 of the PMD swap series install it in try_to_unmap_one() with set_pmd_swap_entry(); a THP without a contiguous cluster was split before; the v3-v7 code was not read)",
                    TryToMigrateOne => "as v3 17",
                    _ => v3.cite,
                },
            }
        }

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

    /// lazy-v4-proposed: reclaim swaps a PMD-mapped THP out as one PMD swap
    /// entry (no table) when a contiguous swap cluster is free ("mm:
    /// PMD-level swap entries for anonymous THPs", v7 00/29, 2026-09-14,
    /// Message-ID 20260914114320.12988-1-usama.arif@linux.dev); a split of
    /// that entry (partial munmap/mprotect/zap, a failed huge swap-in) needs
    /// a PTE table like any split.
    pub fn pmd_swap_entries(&self) -> bool {
        self.preset == Preset::LazyV4Proposed
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
        let (caller, strat) = crate::base::caller::parse_override(spec)?;
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
        if self.preset == Preset::LazyV4Proposed {
            out.push_str("  proposed strategies (v3 review, usable on any preset with --override):\n    zap_pmd_range=zero           Kiryl Shutsemau on v3 05/24 (2026-03-30): zero the covered part of the THP in place; the range reads zero, RSS is not dropped\n    zap_pmd_range=opt-in         Kiryl Shutsemau on v3 05/24 (2026-03-30): skip only for callers passing a ZAP_FLAG; no caller reaching a partial huge PMD (MADV_DONTNEED[_LOCKED], MADV_GUARD_INSTALL: mm/madvise.c) may keep the range, the whole-VMA zaps (unmap_vmas, the OOM reaper's zap_vma_for_reaping) never split: -ENOMEM for all\n    change_pmd_range=split-upfront  Kiryl Shutsemau on v3 07/24 (2026-03-30): split both partly covered huge PMDs before any entry changes, -ENOMEM with nothing changed\n");
        }
        if self.pmd_swap_entries() {
            out.push_str("  reclaim: a PMD-mapped THP swaps out as one PMD swap entry (no table) when `folio_alloc_swap()` gets a contiguous cluster (`fail swap-cluster` fails it), else v3's split; a PMD swap entry is zapped, copied at fork, moved and mprotected whole, swapped in whole by `do_huge_pmd_swap_page()` when a THP can be allocated, and split into PTE swap entries (a table) otherwise. GUESS for every path: modelled from the v7 cover letter (2026-09-14, Message-ID 20260914114320.12988-1-usama.arif@linux.dev) and what could be read of v1 and v2 (commit messages and the start of the diffs, on lkml.iu.edu: docs/policies.md lists them); the v3-v7 code was not found\n");
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
    fn proposed_strategies_only_for_their_caller() {
        let mut p = Policy::preset(Preset::LazyV3);
        p.apply_override("zap_pmd_range=zero").unwrap();
        p.apply_override("zap_pmd_range=opt-in").unwrap();
        p.apply_override("change_pmd_range=split-upfront").unwrap();
        assert_eq!(
            p.strategy(SplitCaller::ChangePmdRange),
            Strategy::SplitUpfront
        );
        for bad in [
            "change_pmd_range=zero",
            "copy_huge_pmd=opt-in",
            "zap_pmd_range=split-upfront",
        ] {
            let e = p.apply_override(bad).unwrap_err();
            assert!(e.contains("applies only to"), "{e}");
        }
        let v4 = Policy::preset(Preset::LazyV4Proposed);
        assert_eq!(v4.strategy(SplitCaller::ZapPmdRange), Strategy::Zero);
        assert_eq!(
            v4.strategy(SplitCaller::ChangePmdRange),
            Strategy::SplitUpfront
        );
        assert!(v4.pmd_swap_entries() && !v4.deposit);
        // Every other caller as v3.
        for c in SplitCaller::ALL {
            if !matches!(c, SplitCaller::ZapPmdRange | SplitCaller::ChangePmdRange) {
                assert_eq!(v4.strategy(c), Policy::preset(Preset::LazyV3).strategy(c));
            }
        }
        // Each preset cell's strategy applies to its caller.
        for pr in Preset::ALL {
            for c in SplitCaller::ALL {
                assert!(
                    cell(pr, c).strategy.applies_to(c),
                    "{} {}",
                    pr.name(),
                    c.name()
                );
            }
        }
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
            Preset::LazyV4Proposed,
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
                    || cell.cite.starts_with("proposal: ")
                    || cell.cite.starts_with("GUESS");
                assert!(cited, "{} {}: '{}'", p.name(), c.name(), cell.cite);
            }
        }
    }
}
