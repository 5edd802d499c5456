//! mm/madvise.c: MADV_DONTNEED, MADV_FREE, MADV_COLD, MADV_PAGEOUT (MADV_COLLAPSE
//! is in khugepaged.rs). None of them splits VMAs.

use super::*;
use crate::cov;
use crate::policy::Strategy;
use crate::program::Advice;

impl Kernel {
    pub fn madvise(&mut self, mm: usize, lo: usize, hi: usize, advice: Advice) -> KResult<()> {
        let ranges: Vec<(usize, usize)> = self.mms[mm]
            .vmas
            .iter()
            .filter(|v| v.start < hi && lo < v.end)
            .map(|v| (v.start.max(lo), v.end.min(hi)))
            .collect();
        let covered: usize = ranges.iter().map(|(a, b)| b - a).sum();
        if advice == Advice::Collapse {
            self.madvise_collapse(mm, lo, hi)?;
        } else {
            for &(a, b) in &ranges {
                match advice {
                    // madvise_dontneed_single_vma() → zap_page_range_single(reclaim_pt)
                    Advice::Dontneed => self.zap_pmd_range(mm, a, b, true)?,
                    Advice::Free => self.madvise_free_pte_range(mm, a, b)?,
                    Advice::Cold => self.madvise_cold_or_pageout_pte_range(mm, a, b, false)?,
                    Advice::Pageout => self.madvise_cold_or_pageout_pte_range(mm, a, b, true)?,
                    Advice::Collapse => unreachable!(),
                }
            }
        }
        if covered < hi - lo {
            // Unmapped parts: -ENOMEM after applying to the mapped ones.
            return Err(Errno::ENOMEM.into());
        }
        Ok(())
    }

    /// `split_folio()` on behalf of an advisory madvise caller; its failure is
    /// handled per the caller's strategy (advisory skip by default).
    fn madvise_split_folio(
        &mut self,
        mm: usize,
        f: FolioId,
        caller: SplitCaller,
        lo: usize,
        hi: usize,
    ) -> KResult<bool> {
        if self.split_folio(f)?.is_some() {
            return Ok(true);
        }
        cov!(self, "madvise:split_folio_failed");
        match self.strategy(caller) {
            Strategy::Error => Err(Errno::ENOMEM.into()),
            _ => {
                self.event(EventKind::Skipped, caller.name(), mm, lo, hi);
                Ok(false)
            }
        }
    }

    fn exclusive_folio(&self, f: FolioId) -> bool {
        let fo = &self.folios[f as usize];
        // !folio_maybe_mapped_shared(), no pins: one mapping holding the only reference.
        fo.refcount == 1 && fo.large_mapcount == 1
    }

    /// `madvise_free_pte_range()` with `madvise_free_huge_pmd()`.
    fn madvise_free_pte_range(&mut self, mm: usize, lo: usize, hi: usize) -> KResult<()> {
        let p = self.ptrs();
        let mut slot = lo / p;
        while slot * p < hi {
            let s_lo = lo.max(slot * p);
            let s_hi = hi.min(slot * p + p);
            if let Pmd::Huge { folio, write, .. } = self.mms[mm].pmds[slot] {
                if s_hi - s_lo == p {
                    if self.exclusive_folio(folio) {
                        cov!(self, "madvise_free_huge_pmd:lazyfree");
                        self.mms[mm].pmds[slot] = Pmd::Huge {
                            folio,
                            write,
                            dirty: false,
                        };
                        let fo = &mut self.folios[folio as usize];
                        fo.dirty = false;
                        fo.lazyfree = true;
                    }
                    slot += 1;
                    continue;
                }
                // Partial: split_folio(), result ignored.
                self.madvise_split_folio(mm, folio, SplitCaller::MadviseFreeHugePmd, s_lo, s_hi)?;
            }
            if let Pmd::Table(t) = self.mms[mm].pmds[slot] {
                for page in s_lo..s_hi {
                    let i = page % p;
                    match self.pte(t, i) {
                        Pte::Swap(s) => {
                            // free_swap_and_cache(): the data is dropped.
                            self.swap_put(s);
                            self.mms[mm].rss_swap -= 1;
                            self.set_pte(t, i, Pte::None);
                            self.mms[mm].uffd_wp[page] = false;
                        }
                        Pte::Present { folio, .. } if self.folios[folio as usize].nr > 1 => {
                            if !self.madvise_split_folio(
                                mm,
                                folio,
                                SplitCaller::MadviseFreeHugePmd,
                                page,
                                page + 1,
                            )? {
                                continue;
                            }
                            self.lazyfree_pte(t, i);
                        }
                        Pte::Present { .. } => self.lazyfree_pte(t, i),
                        _ => {}
                    }
                }
            }
            slot += 1;
        }
        Ok(())
    }

    fn lazyfree_pte(&mut self, t: TableId, i: usize) {
        if let Pte::Present {
            folio, idx, write, ..
        } = self.pte(t, i)
        {
            if self.folios[folio as usize].nr == 1 && self.exclusive_folio(folio) {
                cov!(self, "madvise_free_pte_range:lazyfree");
                self.set_pte(
                    t,
                    i,
                    Pte::Present {
                        folio,
                        idx,
                        write,
                        dirty: false,
                    },
                );
                let fo = &mut self.folios[folio as usize];
                fo.dirty = false;
                fo.lazyfree = true;
            }
        }
    }

    /// `madvise_cold_or_pageout_pte_range()`; pageout reclaims the collected folios.
    fn madvise_cold_or_pageout_pte_range(
        &mut self,
        mm: usize,
        lo: usize,
        hi: usize,
        pageout: bool,
    ) -> KResult<()> {
        let p = self.ptrs();
        let mut list: Vec<FolioId> = Vec::new();
        let mut slot = lo / p;
        while slot * p < hi {
            let s_lo = lo.max(slot * p);
            let s_hi = hi.min(slot * p + p);
            if let Pmd::Huge { folio, .. } = self.mms[mm].pmds[slot] {
                if s_hi - s_lo == p {
                    if self.exclusive_folio(folio) {
                        cov!(self, "madvise_cold:huge");
                        list.push(folio);
                    }
                    slot += 1;
                    continue;
                }
                self.madvise_split_folio(mm, folio, SplitCaller::MadviseColdOrPageout, s_lo, s_hi)?;
            }
            if let Pmd::Table(t) = self.mms[mm].pmds[slot] {
                for page in s_lo..s_hi {
                    let i = page % p;
                    if let Pte::Present { folio, .. } = self.pte(t, i) {
                        if self.folios[folio as usize].nr > 1
                            && !self.madvise_split_folio(
                                mm,
                                folio,
                                SplitCaller::MadviseColdOrPageout,
                                page,
                                page + 1,
                            )?
                        {
                            continue;
                        }
                        if let Pte::Present { folio, .. } = self.pte(t, i) {
                            if self.exclusive_folio(folio) && !list.contains(&folio) {
                                list.push(folio);
                            }
                        }
                    }
                }
            }
            slot += 1;
        }
        if pageout {
            // reclaim_pages()
            for f in list {
                self.shrink_folio(f)?;
            }
        }
        Ok(())
    }
}
