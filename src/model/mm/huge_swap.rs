//! PMD-level swap entries (lazy-v4-proposed only): the series "mm: PMD-level
//! swap entries for anonymous THPs" (Usama Arif, v1 2026-04-27 .. v7
//! 2026-09-14, 29 patches; v7 00/29 Message-ID
//! 20260914114320.12988-1-usama.arif@linux.dev).
//!
//! GUESS, all of it: the series' code was not found in the mirrors searched
//! (find_string on its subject, its function names and the cover letter's
//! Message-ID found only a digest of the v7 cover letter). The model follows
//! the cover letter as that digest states it: reclaim turns the PMD mapping
//! of a THP into one PMD swap entry in place, with no PTE table, when the
//! folio got a PMD-order contiguous swap cluster; `do_huge_pmd_swap_page()`
//! maps the THP back whole; fork, zap, UFFDIO_MOVE, mremap, swapoff and the
//! other consumers handle the entry, and `__split_huge_pmd_locked()` splits
//! it into PTE swap entries "as the fallback when a PMD-order resource is
//! unavailable". Under lazy allocation that split needs a PTE table like
//! any other split: the table the swap-out saved is owed again at swap-in
//! (no THP to swap into), at a partial munmap/mprotect/zap, at a VMA split.
//! Not modelled: swapoff (no op), swap-cache sharing between mms (each
//! swap-in makes its own folio, as the model's PTE swap-in does), zswap.

use super::huge_memory::FaultRet;
use super::*;
use crate::cov;

impl Kernel {
    /// Reclaim's PMD path with a contiguous cluster: the huge PMD at `slot`
    /// of `mm`, mapping `f`, becomes one PMD swap entry of the cluster
    /// `first..first+PTRS` (swap-out writes the folio's data there once).
    /// Returns false when the mapping cannot be unmapped (a pinned
    /// exclusive folio: `folio_try_share_anon_rmap_pmd()` fails).
    pub fn set_pmd_swap_entry(
        &mut self,
        mm: usize,
        slot: usize,
        f: FolioId,
        first: SwapId,
    ) -> KResult<bool> {
        let p = self.ptrs();
        let Pmd::Huge { dirty, .. } = self.mms[mm].pmds[slot] else {
            return Ok(false);
        };
        let fo = &mut self.folios[f as usize];
        if fo.anon_exclusive[0] && fo.pincount > 0 {
            cov!(self, "set_pmd_swap_entry:pinned");
            return Ok(false);
        }
        if dirty {
            fo.dirty = true;
        }
        fo.lazyfree = false;
        fo.entire_mapcount -= 1;
        fo.large_mapcount -= 1;
        for i in 0..p {
            self.swap[first as usize + i].count += 1;
            self.live_swap.insert(first + i as u32);
        }
        self.mms[mm].pmds[slot] = Pmd::Swap { first };
        self.mms[mm].rss_anon -= p as i64;
        self.mms[mm].rss_swap += p as i64;
        cov!(self, "set_pmd_swap_entry");
        self.folio_put(f, 1, "set_pmd_swap_entry", mm)?;
        Ok(true)
    }

    /// `folio_alloc_swap()` of a PMD-sized folio got a contiguous cluster:
    /// reserve its slots with the folio's data (count 0 until entries point
    /// at them; slots no entry took are dropped by [`Kernel::swap_cluster_release`]).
    pub fn swap_cluster_alloc(&mut self, f: FolioId) -> SwapId {
        let first = self.swap.len() as SwapId;
        let data = self.folios[f as usize].data.clone();
        for d in data {
            self.swap.push(SwapSlot { data: d, count: 0 });
        }
        first
    }

    /// The reclaim is over: slots of the cluster no entry references are
    /// free again (the folio stayed, or only PTEs took slots of their own).
    pub fn swap_cluster_release(&mut self, first: SwapId) {
        for i in 0..self.ptrs() {
            let s = first + i as u32;
            if self.swap[s as usize].count == 0 {
                self.live_swap.remove(&s);
            }
        }
    }

    /// `zap_huge_pmd()` of a PMD swap entry: every slot loses this reference.
    pub fn zap_huge_swap_pmd(&mut self, mm: usize, first: SwapId) {
        cov!(self, "zap_huge_pmd:swap");
        let p = self.ptrs();
        for i in 0..p {
            self.swap_put(first + i as u32);
        }
        self.mms[mm].rss_swap -= p as i64;
    }

    /// `copy_huge_pmd()` of a PMD swap entry at fork: the child gets the
    /// same entry, each slot one more reference (swap_duplicate); no table.
    pub fn copy_huge_swap_pmd(&mut self, dst: usize, slot: usize, first: SwapId) {
        cov!(self, "copy_huge_pmd:swap");
        let p = self.ptrs();
        for i in 0..p {
            self.swap[first as usize + i].count += 1;
        }
        self.mms[dst].rss_swap += p as i64;
        self.mms[dst].pmds[slot] = Pmd::Swap { first };
    }

    /// `do_huge_pmd_swap_page()`: a fault on a PMD swap entry. A THP can be
    /// allocated: map it whole with the swapped data. Else split the entry
    /// into PTE swap entries (the table is allocated here, -ENOMEM =
    /// VM_FAULT_OOM) and fall back to `do_swap_page()` at PTE level.
    pub fn do_huge_pmd_swap_page(
        &mut self,
        mm: usize,
        vi: usize,
        slot: usize,
    ) -> KResult<FaultRet> {
        let Pmd::Swap { first } = self.mms[mm].pmds[slot] else {
            return Ok(FaultRet::Done);
        };
        let p = self.ptrs();
        if self.alloc.alloc(AllocKind::Thp, "do_huge_pmd_swap_page") {
            cov!(self, "do_huge_pmd_swap_page:thp");
            let data: Vec<u64> = (0..p).map(|i| self.swap[first as usize + i].data).collect();
            for i in 0..p {
                self.swap_put(first + i as u32);
            }
            self.mms[mm].rss_swap -= p as i64;
            self.mms[mm].pmds[slot] = Pmd::None;
            let f = self.folio_alloc(p, data);
            // The entry's uffd-wp bits stay with the pages (as do_swap_page()
            // keeps pte_swp_uffd_wp() as pte_mkuffd_wp()): a THP with any
            // write-protected page is mapped read-only, so a write goes
            // through the uffd-wp fault path (wp_huge_pmd()).
            let lo = self.geom.slot_start(slot);
            let wp = self.mms[mm].uffd_wp[lo..lo + p].iter().any(|b| *b);
            let w = self.mms[mm].vmas[vi].write && !wp;
            self.map_anon_folio_pmd(mm, slot, f, w);
            return Ok(FaultRet::Done);
        }
        cov!(self, "do_huge_pmd_swap_page:fallback_split");
        self.split_huge_pmd_named(mm, slot, "do_huge_pmd_swap_page", false)?;
        Ok(FaultRet::Fallback)
    }
}
