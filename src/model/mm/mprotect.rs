//! mm/mprotect.c: `mprotect_fixup()`, `change_protection()` → `change_pmd_range()`.

use super::huge_memory::Split;
use super::*;
use crate::cov;
use crate::model::policy::Strategy;

/// What `change_protection()` changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// mprotect to read-only (write=false) or read-write.
    Prot { write: bool },
    /// MM_CP_UFFD_WP (on) / MM_CP_UFFD_WP_RESOLVE (off).
    UffdWp { on: bool },
}

impl Change {
    fn write_protects(self) -> bool {
        matches!(
            self,
            Change::Prot { write: false } | Change::UffdWp { on: true }
        )
    }
}

impl Kernel {
    /// `do_mprotect_pkey()`: VMA by VMA from `lo`, `mprotect_fixup()` on each; a
    /// hole stops the walk with -ENOMEM after the VMAs before it were changed
    /// (the first VMA must contain `lo`, else nothing changes).
    pub fn mprotect(&mut self, mm: usize, lo: usize, hi: usize, write: bool) -> KResult<()> {
        let mut at = lo;
        let mut r = Ok(());
        let mut changed = Vec::new();
        while at < hi {
            let Some(vi) = self.mms[mm].vma_at(at) else {
                cov!(self, "do_mprotect_pkey:hole");
                r = Err(Errno::ENOMEM.into());
                break;
            };
            let end = self.mms[mm].vmas[vi].end.min(hi);
            if let Err(e) = self.mprotect_fixup(mm, vi, at, end, write, &mut changed) {
                r = Err(e);
                break;
            }
            at = end;
        }
        self.vma_merge_at(mm, &changed);
        r
    }

    /// `mprotect_fixup()` on `[lo, hi)` inside VMA `vi`: nothing to do when the
    /// flags do not change (`newflags == oldflags`: no VMA split, no PMD split);
    /// else split the VMA at both ends and `change_protection()`.
    fn mprotect_fixup(
        &mut self,
        mm: usize,
        vi: usize,
        lo: usize,
        hi: usize,
        write: bool,
        changed: &mut Vec<usize>,
    ) -> KResult<()> {
        if self.mms[mm].vmas[vi].write == write {
            cov!(self, "mprotect_fixup:unchanged");
            return Ok(());
        }
        self.split_vma(mm, lo)?;
        self.split_vma(mm, hi)?;
        let vi = self.mms[mm].vma_at(lo).expect("split above");
        self.mms[mm].vmas[vi].write = write;
        changed.extend([lo, hi]);
        self.change_pmd_range(mm, lo, hi, Change::Prot { write })
    }

    /// `change_pmd_range()`
    pub fn change_pmd_range(
        &mut self,
        mm: usize,
        lo: usize,
        hi: usize,
        change: Change,
    ) -> KResult<()> {
        let p = self.ptrs();
        if self.strategy(SplitCaller::ChangePmdRange) == Strategy::SplitUpfront {
            self.change_pmd_range_split_upfront(mm, lo, hi)?;
        }
        let mut slot = lo / p;
        while slot * p < hi {
            let s_lo = lo.max(slot * p);
            let s_hi = hi.min(slot * p + p);
            let mut iters = 0;
            // change_pmd_prepare(): uffd-wp with markers (WP_UNPOPULATED, here
            // `uffd async`) populates a none PMD with a PTE table.
            let markers = self.uffd_async && change == (Change::UffdWp { on: true });
            loop {
                match self.mms[mm].pmds[slot] {
                    Pmd::None if markers => {
                        cov!(self, "change_pmd_prepare:pte_alloc");
                        self.pte_alloc(mm, slot, "change_pmd_prepare")?;
                        continue;
                    }
                    Pmd::None => break,
                    Pmd::Table(t) => {
                        // change_pte_range()
                        for page in s_lo..s_hi {
                            let i = page % p;
                            let e = self.pte(t, i);
                            if let Change::UffdWp { on } = change {
                                if e == Pte::Guard {
                                    // a guard marker takes no uffd-wp bit
                                } else if e != Pte::None || markers || !on {
                                    // a none PTE gets a uffd-wp marker (markers),
                                    // RESOLVE clears one
                                    self.mms[mm].uffd_wp[page] = on;
                                }
                            }
                            if change.write_protects() {
                                if let Pte::Present {
                                    folio, idx, dirty, ..
                                } = e
                                {
                                    self.set_pte(
                                        t,
                                        i,
                                        Pte::Present {
                                            folio,
                                            idx,
                                            write: false,
                                            dirty,
                                        },
                                    );
                                }
                            }
                        }
                        break;
                    }
                    _ => {
                        if s_lo == slot * p && s_hi == slot * p + p {
                            // change_huge_pmd()
                            if let Change::UffdWp { on } = change {
                                self.mms[mm].uffd_wp[s_lo..s_hi]
                                    .iter_mut()
                                    .for_each(|b| *b = on);
                            }
                            self.change_huge_pmd(mm, slot, !change.write_protects());
                            break;
                        }
                        cov!(self, "change_pmd_range:split");
                        match self.split_for(mm, slot, SplitCaller::ChangePmdRange, false)? {
                            Split::Done => continue,
                            Split::Failed(Strategy::Skip) => {
                                self.event(EventKind::Skipped, "change_pmd_range", mm, s_lo, s_hi);
                                break;
                            }
                            Split::Failed(_) => {
                                // change_pte_range() returns -EAGAIN: goto again.
                                self.retry_guard(&mut iters, "change_pmd_range", mm, s_lo, false)?;
                            }
                        }
                    }
                }
            }
            slot += 1;
        }
        Ok(())
    }
}

impl Kernel {
    /// The proposed `change_pmd_range=split-upfront` (Kiryl Shutsemau on v3
    /// 07/24, 2026-03-30: split page tables before change_protection() makes
    /// irreversible changes, as `vma_adjust_trans_huge()` does for a VMA
    /// split): only the PMDs at the two ends of `[lo, hi)` can be partly
    /// covered; split each huge one there before any entry changes, and
    /// return -ENOMEM, nothing changed, when a split cannot get its table.
    /// A split that succeeded stays (it changes no protection).
    fn change_pmd_range_split_upfront(&mut self, mm: usize, lo: usize, hi: usize) -> KResult<()> {
        let p = self.ptrs();
        if hi <= lo {
            return Ok(());
        }
        let mut ends = vec![lo / p];
        if (hi - 1) / p != lo / p {
            ends.push((hi - 1) / p);
        }
        for slot in ends {
            let partial = lo > slot * p || hi < slot * p + p;
            if partial && self.mms[mm].pmds[slot].is_huge() {
                cov!(self, "change_pmd_range:upfront_split");
                if let Err(e) = self.split_huge_pmd(mm, slot, SplitCaller::ChangePmdRange, false) {
                    cov!(self, "change_pmd_range:split_upfront_enomem");
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}
