//! mm/khugepaged.c: `madvise_collapse()` → `collapse_huge_page()`.

use super::*;
use crate::cov;

impl Kernel {
    /// `madvise_collapse()` on `[lo, hi)` inside one VMA (madvise_walk_vmas()
    /// calls it per VMA and stops at the first error). -EINVAL when the VMA
    /// cannot hold an aligned PMD (`thp_vma_allowable_order()` →
    /// `thp_vma_suitable_order()`); else every aligned PMD in the range is
    /// scanned, and unless all end up PMD-mapped the last failure's errno is
    /// returned (`madvise_collapse_errno()`): a none PMD (SCAN_PMD_NULL) or an
    /// empty table -EINVAL, pins -EAGAIN; a failed THP allocation
    /// (SCAN_ALLOC_HUGE_PAGE_FAIL) aborts with -ENOMEM.
    pub fn madvise_collapse(&mut self, mm: usize, lo: usize, hi: usize) -> KResult<()> {
        let p = self.ptrs();
        let Some(vi) = self.mms[mm].vma_at(lo) else {
            return Ok(());
        };
        let (vs, ve) = (self.mms[mm].vmas[vi].start, self.mms[mm].vmas[vi].end);
        let suitable = ve >= p && {
            let haddr = (ve - p) / p * p;
            haddr >= vs && haddr + p <= ve
        };
        // __thp_vma_allowable_orders() also refuses (outside the fault path) a
        // VMA that has no anon_vma yet: never faulted → -EINVAL.
        if !suitable || self.mms[mm].vmas[vi].anon_vma == 0 {
            cov!(self, "madvise_collapse:not_allowable");
            return Err(Errno::EINVAL.into());
        }
        let (hstart, hend) = (lo.div_ceil(p), hi / p);
        if hstart >= hend && self.linux > (6, 18) {
            // 7.2 madvise_collapse(): `if (hstart >= hend) return 0;` (6.18
            // has no such check: see below).
            cov!(self, "madvise_collapse:no_aligned_pmd");
            return Ok(());
        }
        if hstart > hend {
            // Inside one PMD with neither end aligned: `(hend - hstart) >>
            // HPAGE_PMD_SHIFT` wraps, so thps never matches: -EINVAL (SCAN_FAIL).
            cov!(self, "madvise_collapse:inside_one_pmd");
            return Err(Errno::EINVAL.into());
        }
        let mut thps = 0;
        let mut last = Errno::EINVAL;
        for slot in hstart..hend {
            match self.mms[mm].pmds[slot] {
                // SCAN_PMD_NULL (pmd none, or a non-present migration PMD)
                // (a PMD swap entry is not present either: SCAN_PMD_NULL)
                Pmd::None | Pmd::Migration { .. } | Pmd::Swap { .. } => last = Errno::EINVAL,
                Pmd::Table(t) => match self.collapse_huge_page(mm, vi, slot, t) {
                    Ok(()) => thps += 1,
                    Err(KErr::Errno(Errno::ENOMEM)) => return Err(Errno::ENOMEM.into()),
                    Err(KErr::Errno(e)) => last = e,
                    Err(b) => return Err(b),
                },
                // SCAN_PMD_MAPPED
                _ => thps += 1,
            }
        }
        if thps == hend - hstart {
            Ok(())
        } else {
            Err(last.into())
        }
    }

    /// `collapse_huge_page()`: copy 512 PTEs into a new THP mapped by the PMD. The
    /// old table is deposited (Deposit) or freed (Lazy, v3 `mm_dec_nr_ptes`).
    fn collapse_huge_page(&mut self, mm: usize, vi: usize, slot: usize, t: TableId) -> KResult<()> {
        let p = self.ptrs();
        let s = slot * p;
        // hpage_collapse_scan_pmd(): uffd-wp on a PTE or a marker is
        // SCAN_PTE_UFFD_WP (-EINVAL); a uffd-armed VMA allows no none or zero
        // PTE (collapse_max_ptes_none() == 0: SCAN_EXCEED_NONE_PTE, -EBUSY).
        if self.mms[mm].uffd_wp[s..s + p].iter().any(|b| *b) {
            cov!(self, "collapse:uffd_wp");
            return Err(Errno::EINVAL.into());
        }
        if self.mms[mm].vmas[vi].uffd_wp
            && (0..p).any(|i| matches!(self.pte(t, i), Pte::None | Pte::Zero))
        {
            cov!(self, "collapse:uffd_armed_none");
            return Err(Errno::EBUSY.into());
        }
        // __collapse_huge_page_swapin(): a guard marker is VM_FAULT_SIGSEGV
        // there (SCAN_FAIL, -EINVAL).
        for i in 0..p {
            match self.pte(t, i) {
                Pte::Swap(_) => {
                    self.access(mm, s + i, false, 0, false)?;
                }
                Pte::Guard => {
                    cov!(self, "collapse:guard");
                    return Err(Errno::EINVAL.into());
                }
                _ => {}
            }
        }
        let mut present = 0;
        for i in 0..p {
            match self.pte(t, i) {
                Pte::Present { folio, .. } => {
                    if self.folios[folio as usize].pincount > 0 {
                        cov!(self, "collapse:pinned");
                        return Err(Errno::EAGAIN.into());
                    }
                    present += 1;
                }
                Pte::Migration { .. } | Pte::Swap(_) => return Err(Errno::EAGAIN.into()),
                Pte::None | Pte::Zero | Pte::Guard => {}
            }
        }
        if present == 0 {
            // none_or_zero > max_ptes_none (511): SCAN_EXCEED_NONE_PTE.
            return Err(Errno::EINVAL.into());
        }
        if !self.alloc.alloc(AllocKind::Thp, "collapse_huge_page") {
            cov!(self, "collapse:alloc_fail");
            return Err(Errno::ENOMEM.into());
        }
        let data: Vec<u64> = (0..p).map(|i| self.page_value(mm, s + i)).collect();
        let nf = self.folio_alloc(p, data);
        for i in 0..p {
            if let Pte::Present { folio, .. } = self.pte(t, i) {
                self.mms[mm].rss_anon -= 1;
                self.unmap_pte_page(mm, folio, "collapse_huge_page")?;
            }
            self.set_pte(t, i, Pte::None);
        }
        self.mms[mm].pmds[slot] = Pmd::None;
        let w = self.mms[mm].vmas[vi].write;
        self.map_anon_folio_pmd(mm, slot, nf, w);
        if self.policy.deposit {
            cov!(self, "collapse:deposit_old_table");
            self.deposit(mm, slot, t);
        } else {
            cov!(self, "collapse:free_old_table");
            self.pte_free(t, "collapse_huge_page")?;
            self.mm_dec_nr_ptes(mm);
        }
        Ok(())
    }
}
