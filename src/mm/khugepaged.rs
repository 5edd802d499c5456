//! mm/khugepaged.c: `madvise_collapse()` → `collapse_huge_page()`.

use super::*;
use crate::cov;

impl Kernel {
    /// MADV_COLLAPSE over `[lo, hi)`: every PMD fully inside a VMA is collapsed.
    /// Returns the last error (a none PMD counts as -EINVAL, as in the kernel).
    pub fn madvise_collapse(&mut self, mm: usize, lo: usize, hi: usize) -> KResult<()> {
        let p = self.ptrs();
        let mut last = Ok(());
        for slot in lo.div_ceil(p)..hi / p {
            let s = slot * p;
            let Some(vi) = self.mms[mm].vma_at(s) else {
                continue;
            };
            if self.mms[mm].vmas[vi].end < s + p {
                continue;
            }
            match self.mms[mm].pmds[slot] {
                Pmd::None => last = Err(Errno::EINVAL),
                Pmd::Table(t) => {
                    if let Err(e) = self.collapse_huge_page(mm, vi, slot, t) {
                        match e {
                            KErr::Errno(e) => last = Err(e),
                            b => return Err(b),
                        }
                    }
                }
                _ => {}
            }
        }
        last.map_err(KErr::Errno)
    }

    /// `collapse_huge_page()`: copy 512 PTEs into a new THP mapped by the PMD. The
    /// old table is deposited (Deposit) or freed (Lazy, v3 `mm_dec_nr_ptes`).
    fn collapse_huge_page(&mut self, mm: usize, vi: usize, slot: usize, t: TableId) -> KResult<()> {
        let p = self.ptrs();
        let s = slot * p;
        // __collapse_huge_page_swapin()
        for i in 0..p {
            if let Pte::Swap(_) = self.pte(t, i) {
                self.access(mm, s + i, false, 0)?;
            }
        }
        if self.mms[mm].uffd_wp[s..s + p].iter().any(|b| *b) {
            // SCAN_PTE_UFFD_WP
            cov!(self, "collapse:uffd_wp");
            return Err(Errno::EAGAIN.into());
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
                Pte::None | Pte::Zero => {}
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
