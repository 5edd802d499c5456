//! Policies: what each split caller does when `__split_huge_pmd()` cannot allocate
//! its PTE table (kernel-model.md §5 and §12).

use std::fmt;

/// Every kernel site that splits a huge PMD and must cope with a failed split.
/// The names are the kernel functions (kernel-model.md §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SplitCaller {
    /// mm/memory.c `zap_pmd_range`: partial MADV_DONTNEED / zap of part of a PMD.
    ZapPmdRange,
    /// mm/huge_memory.c `do_huge_pmd_wp_page`: CoW fallback to 4K.
    DoHugePmdWpPage,
    /// mm/huge_memory.c `copy_huge_pmd`: fork of a pinned anon THP.
    CopyHugePmd,
    /// mm/mprotect.c `change_pmd_range`: protection change on part of a huge PMD.
    ChangePmdRange,
    /// mm/pagewalk.c `walk_pmd_range`: walkers with a `pte_entry`.
    WalkPmdRange,
    /// mm/mremap.c `move_page_tables`: extent smaller than a PMD or misaligned.
    MovePageTables,
    /// mm/huge_memory.c `vma_adjust_trans_huge`: VMA split through a huge PMD.
    VmaAdjustTransHuge,
    /// mm/rmap.c `try_to_unmap_one`: reclaim with TTU_SPLIT_HUGE_PMD.
    TryToUnmapOne,
    /// mm/rmap.c `try_to_migrate_one`: folio split (unmap_folio) with freeze.
    TryToMigrateOne,
    /// mm/madvise.c `madvise_cold_or_pageout_pte_range`: split_folio on a partial PMD.
    MadviseColdOrPageout,
    /// mm/madvise.c `madvise_free_huge_pmd`: split_folio on a partial PMD.
    MadviseFreeHugePmd,
}

impl SplitCaller {
    pub const ALL: [SplitCaller; 11] = [
        SplitCaller::ZapPmdRange,
        SplitCaller::DoHugePmdWpPage,
        SplitCaller::CopyHugePmd,
        SplitCaller::ChangePmdRange,
        SplitCaller::WalkPmdRange,
        SplitCaller::MovePageTables,
        SplitCaller::VmaAdjustTransHuge,
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
            SplitCaller::CopyHugePmd => "copy_huge_pmd",
            SplitCaller::ChangePmdRange => "change_pmd_range",
            SplitCaller::WalkPmdRange => "walk_pmd_range",
            SplitCaller::MovePageTables => "move_page_tables",
            SplitCaller::VmaAdjustTransHuge => "vma_adjust_trans_huge",
            SplitCaller::TryToUnmapOne => "try_to_unmap_one",
            SplitCaller::TryToMigrateOne => "try_to_migrate_one",
            SplitCaller::MadviseColdOrPageout => "madvise_cold_or_pageout_pte_range",
            SplitCaller::MadviseFreeHugePmd => "madvise_free_huge_pmd",
        }
    }

    pub fn from_name(s: &str) -> Option<SplitCaller> {
        SplitCaller::ALL.iter().copied().find(|c| c.name() == s)
    }

    /// Advisory callers may skip a range by definition (MADV_COLD/PAGEOUT/FREE).
    pub fn advisory(self) -> bool {
        matches!(
            self,
            SplitCaller::MadviseColdOrPageout | SplitCaller::MadviseFreeHugePmd
        )
    }

    /// Where the user-visible consequence of each strategy is documented.
    pub fn describe(self, s: Strategy) -> &'static str {
        use SplitCaller::*;
        use Strategy::*;
        match (self, s) {
            (_, Error) => "return -ENOMEM / VM_FAULT_OOM / ret=false to the caller",
            (ZapPmdRange, Proceed) => {
                "zap_pte_range finds no table, returns addr, pmd-- : same PMD again (LOOP)"
            }
            (ZapPmdRange, Skip) => {
                "addr = next; continue: range not zapped, madvise returns 0 (SKIP)"
            }
            (DoHugePmdWpPage, Proceed | Skip) => {
                "VM_FAULT_FALLBACK, handle_pte_fault sees no table, returns 0: re-fault (LOOP)"
            }
            (CopyHugePmd, Proceed | Skip) => {
                "-EAGAIN, copy_pte_range finds no src table, returns 0: child range empty (SKIP)"
            }
            (ChangePmdRange, Proceed) => "change_pte_range -EAGAIN: goto again (LOOP)",
            (ChangePmdRange, Skip) => "range left with old protection, returns success (SKIP)",
            (WalkPmdRange, Proceed) => "walk_pte_range: ACTION_AGAIN, goto again (LOOP)",
            (WalkPmdRange, Skip) => "PMD not walked, walk returns 0 (SKIP)",
            (MovePageTables, Proceed) => "move_ptes -EAGAIN: goto again (LOOP)",
            (MovePageTables, Skip) => "extent not moved, mremap returns success (SKIP)",
            (VmaAdjustTransHuge, Proceed | Skip) => {
                "VMA split completes with a huge PMD straddling the boundary"
            }
            (TryToUnmapOne, Proceed) => {
                "walk restarted, PMD still huge: VM_BUG_ON_FOLIO(!pvmw.pte) (CRASH)"
            }
            (TryToMigrateOne, Proceed) => {
                "PMD still mapped while the folio is split (CRASH, GUESS)"
            }
            (TryToUnmapOne | TryToMigrateOne, Skip) => "ret=false: folio stays mapped",
            (MadviseColdOrPageout | MadviseFreeHugePmd, Proceed | Skip) => {
                "split_folio error ignored, range skipped (advisory)"
            }
            (_, Retry) => "retry the split until it succeeds (LOOP under sustained OOM)",
        }
    }
}

/// What a caller does when the split fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Strategy {
    /// `void` split (RFC v1): the caller carries on as if the PMD had been split;
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
    LazyV3,
    LazyFixed,
}

impl Preset {
    pub const ALL: [Preset; 4] = [
        Preset::Deposit,
        Preset::LazyV1,
        Preset::LazyV3,
        Preset::LazyFixed,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Preset::Deposit => "deposit",
            Preset::LazyV1 => "lazy-v1",
            Preset::LazyV3 => "lazy-v3",
            Preset::LazyFixed => "lazy-fixed",
        }
    }
    pub fn from_name(s: &str) -> Option<Preset> {
        Preset::ALL.iter().copied().find(|p| p.name() == s)
    }
    pub fn summary(self) -> &'static str {
        match self {
            Preset::Deposit => "today's kernel (and PowerPC hash): a PTE table is deposited with every anon huge PMD, split withdraws it and never fails",
            Preset::LazyV1 => "RFC v1 (2026-02-11): table allocated at split time, split_huge_pmd() stays void",
            Preset::LazyV3 => "v3 (2026-03-27, 24 patches): split returns -ENOMEM, callers as posted",
            Preset::LazyFixed => "every caller handles -ENOMEM (error or bounded retry); MADV_DONTNEED returns -ENOMEM; the reference",
        }
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
        use SplitCaller::*;
        use Strategy::*;
        let strategies = SplitCaller::ALL.map(|c| match p {
            // Split never fails under deposit; the table below is never consulted.
            Preset::Deposit => Error,
            // RFC v1: void split everywhere; what follows is the kernel code (§5 column 3).
            Preset::LazyV1 => Proceed,
            // v3 (§5 column 4).
            Preset::LazyV3 => match c {
                ZapPmdRange => Skip,
                ChangePmdRange => Retry,
                MadviseColdOrPageout | MadviseFreeHugePmd => Skip,
                _ => Error,
            },
            Preset::LazyFixed => match c {
                MadviseColdOrPageout | MadviseFreeHugePmd => Skip,
                _ => Error,
            },
        });
        Policy {
            preset: p,
            deposit: p == Preset::Deposit,
            strategies,
            overrides: Vec::new(),
        }
    }

    pub fn strategy(&self, c: SplitCaller) -> Strategy {
        self.strategies[c as usize]
    }

    pub fn set(&mut self, c: SplitCaller, s: Strategy) {
        self.strategies[c as usize] = s;
        self.overrides.retain(|(x, _)| *x != c);
        self.overrides.push((c, s));
    }

    /// Parse `caller=strategy`.
    pub fn apply_override(&mut self, spec: &str) -> Result<(), String> {
        let (c, s) = spec
            .split_once('=')
            .ok_or_else(|| format!("override '{spec}' is not caller=strategy"))?;
        let caller = SplitCaller::from_name(c.trim()).ok_or_else(|| {
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

    /// A printable table of the policy.
    pub fn table(&self) -> String {
        let mut out = format!("{}: {}\n", self.label(), self.preset.summary());
        if self.deposit {
            out.push_str(
                "  deposit at fault/fork/zero-fault; __split_huge_pmd withdraws, never fails\n",
            );
            return out;
        }
        out.push_str("  no deposit; __split_huge_pmd calls pte_alloc_one() and can fail\n");
        for c in SplitCaller::ALL {
            let s = self.strategy(c);
            out.push_str(&format!(
                "  {:<36} {:<8} {}\n",
                c.name(),
                s.name(),
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
        for p in Preset::ALL {
            assert_eq!(Preset::from_name(p.name()), Some(p));
        }
        let mut p = Policy::preset(Preset::LazyV3);
        assert_eq!(p.strategy(SplitCaller::ZapPmdRange), Strategy::Skip);
        p.apply_override("zap_pmd_range=error").unwrap();
        assert_eq!(p.strategy(SplitCaller::ZapPmdRange), Strategy::Error);
        assert_eq!(p.label(), "lazy-v3+zap_pmd_range=error");
        assert!(p.apply_override("nope=error").is_err());
        assert!(p.apply_override("zap_pmd_range=sometimes").is_err());
    }
}
