//! mm/madvise.c: MADV_DONTNEED, MADV_FREE, MADV_COLD, MADV_PAGEOUT (MADV_COLLAPSE
//! is in khugepaged.rs). None of them splits VMAs.

use super::memory::Zap;
use super::*;
use crate::cov;
use crate::model::policy::Strategy;
use crate::prog::Advice;

impl Kernel {
    pub fn madvise(&mut self, mm: usize, lo: usize, hi: usize, advice: Advice) -> KResult<()> {
        let mut restarts = 0u32;
        loop {
            match self.madvise_once(mm, lo, hi, advice) {
                // restart_syscall(): back to user mode, the same madvise() again.
                Err(KErr::Errno(Errno::ERESTART)) => {
                    cov!(self, "madvise:restart_syscall");
                    self.retry_guard(&mut restarts, "madvise_guard_install", mm, lo, true)?;
                }
                r => return r,
            }
        }
    }

    /// `reclaim ADDR`: the executor pages the folio out with MADV_PAGEOUT
    /// over each run of this mm's pages that map it, in address order,
    /// stopping at the first error. When no run meets a VM_LOCKED VMA that is
    /// the folio's reclaim (`shrink_folio`, every mapping mm); when one does,
    /// it is the madvise walk run by run: madvise_pageout() refuses a
    /// VM_LOCKED VMA with -EINVAL (mm/madvise.c can_madv_lru_vma()), after
    /// the VMAs before it in the walk were paged out.
    pub fn reclaim_op(&mut self, mm: usize, f: FolioId) -> KResult<()> {
        let runs = self.mapped_runs(mm, f);
        let locked = runs.iter().any(|&(a, b)| {
            self.mms[mm].vma_pieces(a, b).iter().any(|&(x, _)| {
                self.mms[mm]
                    .vma_at(x)
                    .is_some_and(|vi| self.mms[mm].vmas[vi].locked)
            })
        });
        if !locked {
            self.shrink_folio(f)?;
            return Ok(());
        }
        cov!(self, "reclaim:vm_locked");
        for (a, b) in runs {
            self.madvise_once(mm, a, b, Advice::Pageout)?;
        }
        Ok(())
    }

    /// The runs of consecutive pages of mm `mm` that map folio `f`, in
    /// address order (what the executor reads from pagemap).
    fn mapped_runs(&self, mm: usize, f: FolioId) -> Vec<(usize, usize)> {
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for page in 0..self.pages() {
            if self.folio_at(mm, page) == Some(f) {
                match runs.last_mut() {
                    Some(r) if r.1 == page => r.1 = page + 1,
                    _ => runs.push((page, page + 1)),
                }
            }
        }
        runs
    }

    fn madvise_once(&mut self, mm: usize, lo: usize, hi: usize, advice: Advice) -> KResult<()> {
        let ranges = self.mms[mm].vma_pieces(lo, hi);
        let covered: usize = ranges.iter().map(|(a, b)| b - a).sum();
        // madvise_walk_vmas(): one VMA at a time; an error aborts the walk.
        for &(a, b) in &ranges {
            let locked = self.mms[mm]
                .vma_at(a)
                .is_some_and(|vi| self.mms[mm].vmas[vi].locked);
            // madvise_dontneed_free_valid_vma(), can_madv_lru_vma(),
            // is_valid_guard_vma(): VM_LOCKED refuses these with -EINVAL.
            if locked
                && matches!(
                    advice,
                    Advice::Dontneed
                        | Advice::Free
                        | Advice::Cold
                        | Advice::Pageout
                        | Advice::GuardInstall
                )
            {
                cov!(self, "madvise:vm_locked");
                return Err(Errno::EINVAL.into());
            }
            match advice {
                Advice::GuardInstall => self.madvise_guard_install(mm, a, b)?,
                Advice::GuardRemove => self.madvise_guard_remove(mm, a, b),
                // madvise_dontneed_single_vma() → zap_page_range_single(reclaim_pt)
                Advice::Dontneed => self.zap_pmd_range(mm, a, b, Zap::Dontneed)?,
                Advice::Free => self.madvise_free_pte_range(mm, a, b)?,
                Advice::Cold => self.madvise_cold_or_pageout_pte_range(mm, a, b, false)?,
                Advice::Pageout => self.madvise_cold_or_pageout_pte_range(mm, a, b, true)?,
                Advice::Collapse => self.madvise_collapse(mm, a, b)?,
            }
        }
        if covered < hi - lo {
            // Unmapped parts: -ENOMEM after applying to the mapped ones.
            return Err(Errno::ENOMEM.into());
        }
        Ok(())
    }

    /// `madvise_guard_install()` on `[lo, hi)` of one VMA: mark the VMA
    /// VMA_MAYBE_GUARD, then up to MAX_MADVISE_GUARD_RETRIES (3) times walk the
    /// range installing guard markers in none PTEs (`__pte_alloc()` for a none
    /// PMD: -ENOMEM); a huge PMD or a populated PTE stops the walk and
    /// `zap_vma_range()` zaps the whole range (keeping guard markers) before the
    /// next try. After three tries it returns `restart_syscall()`.
    fn madvise_guard_install(&mut self, mm: usize, lo: usize, hi: usize) -> KResult<()> {
        let p = self.ptrs();
        let vi = self.mms[mm].vma_at(lo).expect("piece of a VMA");
        self.mms[mm].vmas[vi].maybe_guard = true;
        self.anon_vma_prepare(mm, vi);
        for _ in 0..3 {
            let mut need_zap = false;
            let mut slot = lo / p;
            'walk: while slot * p < hi {
                let s_lo = lo.max(slot * p);
                let s_hi = hi.min(slot * p + p);
                match self.mms[mm].pmds[slot] {
                    // guard_install_pmd_entry(): pmd_trans_huge → zap first.
                    Pmd::Huge { .. } | Pmd::HugeZero => {
                        need_zap = true;
                        break 'walk;
                    }
                    Pmd::Migration { .. } | Pmd::Swap { .. } => {
                        need_zap = true;
                        break 'walk;
                    }
                    Pmd::None => {
                        // walk_pmd_range() with install_pte: __pte_alloc().
                        self.pte_alloc(mm, slot, "walk_pmd_range")?;
                    }
                    Pmd::Table(_) => {}
                }
                let t = self.table_of(mm, slot).expect("a table");
                for page in s_lo..s_hi {
                    match self.pte(t, page % p) {
                        Pte::None => {
                            cov!(self, "guard_install_set_pte");
                            self.set_pte(t, page % p, Pte::Guard);
                        }
                        Pte::Guard => {}
                        _ => {
                            need_zap = true;
                            break 'walk;
                        }
                    }
                }
                slot += 1;
            }
            if !need_zap {
                return Ok(());
            }
            cov!(self, "madvise_guard_install:zap");
            self.zap_pmd_range(mm, lo, hi, Zap::Single)?;
        }
        Err(Errno::ERESTART.into())
    }

    /// `madvise_guard_remove()`: huge PMDs are passed over (ACTION_CONTINUE);
    /// guard markers are cleared. Never splits.
    fn madvise_guard_remove(&mut self, mm: usize, lo: usize, hi: usize) {
        let p = self.ptrs();
        for page in lo..hi {
            if let Some(t) = self.table_of(mm, page / p) {
                if self.pte(t, page % p) == Pte::Guard {
                    // pte_clear_not_present_full(): the whole entry goes, a
                    // uffd-wp bit PAGEMAP_SCAN put on the marker with it.
                    cov!(self, "guard_remove_pte_entry");
                    self.set_pte(t, page % p, Pte::None);
                    self.mms[mm].uffd_wp[page] = false;
                }
            }
        }
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

    /// A large folio mapped whole by PTEs of one mm and nothing else: the
    /// "mapcount == folio_nr_pages()" test of the madvise PTE loops (the model
    /// also requires no extra reference, as `exclusive_folio()` does).
    fn exclusive_pte_mapped(&self, f: FolioId) -> bool {
        let fo = &self.folios[f as usize];
        fo.large_mapcount == fo.nr as i64 && fo.refcount == fo.nr as i64
    }

    /// `madvise_folio_pte_batch()`: how many PTEs from `t[i]` on (at most
    /// `max`) map consecutive pages of the same folio.
    fn folio_pte_batch(&self, t: TableId, i: usize, max: usize, f: FolioId, idx: u32) -> usize {
        let max = max.min(self.folios[f as usize].nr - idx as usize);
        (0..max)
            .take_while(|&k| {
                matches!(self.pte(t, i + k),
                    Pte::Present { folio, idx: j, .. } if folio == f && j == idx + k as u32)
            })
            .count()
    }

    /// The PTE loops' handling of a large folio whose batch at `page` covers
    /// `nr` PTEs: a partial batch splits the folio, unless it is shared with
    /// another mm. Returns how far to advance (0: the split succeeded, look at
    /// `page` again) or None when the whole folio lies in the range.
    fn madvise_pte_large(
        &mut self,
        mm: usize,
        f: FolioId,
        nr: usize,
        caller: SplitCaller,
        page: usize,
    ) -> KResult<Option<usize>> {
        if nr == self.folios[f as usize].nr {
            return Ok(None);
        }
        if self.folio_maybe_mapped_shared(f) {
            cov!(self, "madvise_pte:shared_large_folio");
            return Ok(Some(nr));
        }
        if self.madvise_split_folio(mm, f, caller, page, page + nr)? {
            Ok(Some(0))
        } else {
            Ok(Some(nr))
        }
    }

    /// `madvise_free_pte_range()` with `madvise_free_huge_pmd()`.
    fn madvise_free_pte_range(&mut self, mm: usize, lo: usize, hi: usize) -> KResult<()> {
        let p = self.ptrs();
        let caller = SplitCaller::MadviseFreeHugePmd;
        let mut slot = lo / p;
        while slot * p < hi {
            let s_lo = lo.max(slot * p);
            let s_hi = hi.min(slot * p + p);
            if let Pmd::Huge { folio, write, .. } = self.mms[mm].pmds[slot] {
                // "If other processes are mapping this folio, we couldn't
                // discard the folio unless they all do MADV_FREE": skip it.
                if self.folio_maybe_mapped_shared(folio) {
                    cov!(self, "madvise_free_huge_pmd:shared");
                    slot += 1;
                    continue;
                }
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
                self.madvise_split_folio(mm, folio, caller, s_lo, s_hi)?;
            }
            if let Pmd::Swap { first } = self.mms[mm].pmds[slot] {
                // lazy-v4-proposed: a whole PMD swap entry is freed in place
                // (as free_swap_and_cache() does per PTE); a partial one is
                // left alone (advisory). GUESS: the PMD swap series' cover
                // letter (v7 00/29) frees a whole one and splits a partial
                // one; its code was not read.
                if s_hi - s_lo == p {
                    cov!(self, "madvise_free_huge_pmd:swap_entry");
                    self.mms[mm].pmds[slot] = Pmd::None;
                    self.zap_huge_swap_pmd(mm, first);
                    self.clear_uffd_wp(mm, s_lo, s_hi);
                }
                slot += 1;
                continue;
            }
            if let Pmd::Table(t) = self.mms[mm].pmds[slot] {
                let mut page = s_lo;
                while page < s_hi {
                    let i = page % p;
                    match self.pte(t, i) {
                        Pte::Swap(s) => {
                            // free_swap_and_cache(): the data is dropped.
                            self.swap_put(s);
                            self.mms[mm].rss_swap -= 1;
                            self.set_pte(t, i, Pte::None);
                            self.mms[mm].uffd_wp[page] = false;
                        }
                        Pte::Present { folio, idx, .. } if self.folios[folio as usize].nr > 1 => {
                            let nr = self.folio_pte_batch(t, i, s_hi - page, folio, idx);
                            if let Some(adv) =
                                self.madvise_pte_large(mm, folio, nr, caller, page)?
                            {
                                page += adv;
                                continue;
                            }
                            if self.exclusive_pte_mapped(folio) {
                                cov!(self, "madvise_free_pte_range:lazyfree_large");
                                self.folio_mark_lazyfree(t, i, nr, folio);
                            }
                            page += nr;
                            continue;
                        }
                        Pte::Present { .. } => self.lazyfree_pte(t, i),
                        _ => {}
                    }
                    page += 1;
                }
            }
            slot += 1;
        }
        Ok(())
    }

    fn lazyfree_pte(&mut self, t: TableId, i: usize) {
        if let Pte::Present { folio, .. } = self.pte(t, i) {
            if self.folios[folio as usize].nr == 1 && self.exclusive_folio(folio) {
                cov!(self, "madvise_free_pte_range:lazyfree");
                self.folio_mark_lazyfree(t, i, 1, folio);
            }
        }
    }

    /// Clear the dirty bit of the `nr` PTEs from `t[i]` (clear_young_dirty_ptes())
    /// and of their folio, and `folio_mark_lazyfree()` it.
    fn folio_mark_lazyfree(&mut self, t: TableId, i: usize, nr: usize, folio: FolioId) {
        for k in i..i + nr {
            if let Pte::Present {
                folio, idx, write, ..
            } = self.pte(t, k)
            {
                let clean = Pte::Present {
                    folio,
                    idx,
                    write,
                    dirty: false,
                };
                self.set_pte(t, k, clean);
            }
        }
        let fo = &mut self.folios[folio as usize];
        fo.dirty = false;
        fo.lazyfree = true;
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
        let caller = SplitCaller::MadviseColdOrPageout;
        let mut list: Vec<FolioId> = Vec::new();
        let mut slot = lo / p;
        while slot * p < hi {
            let s_lo = lo.max(slot * p);
            let s_hi = hi.min(slot * p + p);
            if let Pmd::Huge { folio, .. } = self.mms[mm].pmds[slot] {
                // "Do not interfere with other mappings of this folio"
                if self.folio_maybe_mapped_shared(folio) {
                    cov!(self, "madvise_cold:shared");
                    slot += 1;
                    continue;
                }
                if s_hi - s_lo == p {
                    if self.exclusive_folio(folio) {
                        cov!(self, "madvise_cold:huge");
                        list.push(folio);
                    }
                    slot += 1;
                    continue;
                }
                self.madvise_split_folio(mm, folio, caller, s_lo, s_hi)?;
            }
            if let Pmd::Table(t) = self.mms[mm].pmds[slot] {
                let mut page = s_lo;
                while page < s_hi {
                    let i = page % p;
                    let Pte::Present { folio, idx, .. } = self.pte(t, i) else {
                        page += 1;
                        continue;
                    };
                    let mut nr = 1;
                    let exclusive = if self.folios[folio as usize].nr > 1 {
                        nr = self.folio_pte_batch(t, i, s_hi - page, folio, idx);
                        if let Some(adv) = self.madvise_pte_large(mm, folio, nr, caller, page)? {
                            page += adv;
                            continue;
                        }
                        self.exclusive_pte_mapped(folio)
                    } else {
                        self.exclusive_folio(folio)
                    };
                    if exclusive && !list.contains(&folio) {
                        list.push(folio);
                    }
                    page += nr;
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
