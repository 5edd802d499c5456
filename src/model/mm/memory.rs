//! mm/memory.c: the fault path, zap, fork's PTE copy, free_pgtables.

use super::huge_memory::{FaultRet, Split};
use super::*;
use crate::cov;
use crate::model::policy::Strategy;

/// The `zap_details` of a zap: which caller it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Zap {
    /// `unmap_vmas()` (munmap, exit): ZAP_FLAG_DROP_MARKER | ZAP_FLAG_UNMAP.
    Unmap,
    /// MADV_DONTNEED: `reclaim_pt` (an emptied PTE table is freed,
    /// CONFIG_PT_RECLAIM); guard markers stay.
    Dontneed,
    /// `zap_vma_range()` with no details (MADV_GUARD_INSTALL): markers stay.
    Single,
}

/// Where an access lands when no fault is needed.
enum Target {
    Zero,
    Page(FolioId, usize),
}

impl Kernel {
    /// THP allowed for this PMD: MADV_HUGEPAGE VMA covering the whole PMD.
    pub fn thp_eligible(&self, mm: usize, vi: usize, slot: usize) -> bool {
        let v = &self.mms[mm].vmas[vi];
        let s = self.geom.slot_start(slot);
        v.thp && v.start <= s && s + self.ptrs() <= v.end
    }

    fn follow(&self, mm: usize, page: usize, write: bool) -> Option<Target> {
        let slot = self.geom.slot_of(page);
        let i = page % self.ptrs();
        match self.mms[mm].pmds[slot] {
            Pmd::HugeZero if !write => Some(Target::Zero),
            Pmd::Huge {
                folio, write: w, ..
            } if w || !write => Some(Target::Page(folio, i)),
            Pmd::Table(t) => match self.pte(t, i) {
                Pte::Zero if !write => Some(Target::Zero),
                Pte::Present {
                    folio,
                    idx,
                    write: w,
                    ..
                } if w || !write => Some(Target::Page(folio, idx as usize)),
                _ => None,
            },
            _ => None,
        }
    }

    fn mark_dirty(&mut self, mm: usize, page: usize) {
        let slot = self.geom.slot_of(page);
        let i = page % self.ptrs();
        match self.mms[mm].pmds[slot] {
            Pmd::Huge { folio, write, .. } => {
                self.mms[mm].pmds[slot] = Pmd::Huge {
                    folio,
                    write,
                    dirty: true,
                }
            }
            Pmd::Table(t) => {
                if let Pte::Present {
                    folio, idx, write, ..
                } = self.pte(t, i)
                {
                    self.set_pte(
                        t,
                        i,
                        Pte::Present {
                            folio,
                            idx,
                            write,
                            dirty: true,
                        },
                    );
                }
            }
            _ => {}
        }
    }

    /// An access to one page: faults until the access succeeds. A write stores
    /// `value`. Errors: EFAULT (no VMA / no permission). VM_FAULT_OOM is ENOMEM
    /// for a kernel access (`faultin_page()` → `vm_fault_to_errno()`); a `user`
    /// access retries the fault (`pagefault_out_of_memory()`), and spins while
    /// every allocation fails (`KErr::OomLoop`).
    pub fn access(
        &mut self,
        mm: usize,
        page: usize,
        write: bool,
        value: u64,
        user: bool,
    ) -> KResult<u64> {
        let mut retries = 0;
        let mut faults = 0;
        let mut oom_retries = 0u32;
        loop {
            let Some(vi) = self.mms[mm].vma_at(page) else {
                return Err(Errno::EFAULT.into());
            };
            if write && !self.mms[mm].vmas[vi].write {
                return Err(Errno::EFAULT.into());
            }
            if write && !self.uffd_async && self.mms[mm].uffd_wp[page] && self.populated(mm, page) {
                // handle_userfault(): the executor's handler resolves it.
                self.handle_userfault_wp(mm, page)?;
                if self.mms[mm].uffd_wp[page] {
                    // The handler's UFFDIO_WRITEPROTECT(off) returned success
                    // but the page is still protected (a caller that skipped
                    // its failed split): the fault is raised again, and the
                    // handler called again, through user space for ever.
                    self.retry_guard(&mut retries, "change_pmd_range", mm, page, true)?;
                }
                continue;
            }
            match self.follow(mm, page, write) {
                Some(Target::Zero) => return Ok(0),
                Some(Target::Page(f, i)) => {
                    if write {
                        self.folios[f as usize].data[i] = value;
                        self.mark_dirty(mm, page);
                        // A written page is not write-protected any more.
                        self.mms[mm].uffd_wp[page] = false;
                        return Ok(value);
                    }
                    return Ok(self.folios[f as usize].data[i]);
                }
                None => {}
            }
            let r = match self.handle_mm_fault(mm, vi, page, write) {
                Err(KErr::Errno(Errno::ENOMEM)) if user => {
                    // VM_FAULT_OOM: pagefault_out_of_memory() warns and the
                    // task faults again.
                    cov!(self, "pagefault_out_of_memory:retry");
                    oom_retries += 1;
                    if self.alloc.pte_fails_forever() || oom_retries > RETRY_LIMIT {
                        return Err(KErr::OomLoop("pagefault_out_of_memory"));
                    }
                    continue;
                }
                r => r?,
            };
            match r {
                FaultRet::Retry(func) => {
                    self.retry_guard(&mut retries, func, mm, page, true)?;
                }
                FaultRet::Done | FaultRet::Fallback => {
                    faults += 1;
                    if faults > 8 {
                        return Err(self.bug(
                            Invariant::KernelAssertion,
                            "handle_mm_fault",
                            mm,
                            page,
                            "model: fault reported success but the access still faults".into(),
                        ));
                    }
                }
            }
        }
    }

    /// `__handle_mm_fault()`
    pub fn handle_mm_fault(
        &mut self,
        mm: usize,
        vi: usize,
        page: usize,
        write: bool,
    ) -> KResult<FaultRet> {
        let slot = self.geom.slot_of(page);
        // __handle_mm_fault(): pud_alloc(), pmd_alloc().
        self.pmd_alloc(mm, slot);
        let mut fallback_from = None;
        match self.mms[mm].pmds[slot] {
            Pmd::None => {
                if self.thp_eligible(mm, vi, slot) {
                    // create_huge_pmd()
                    match self.do_huge_pmd_anonymous_page(mm, vi, slot, write)? {
                        FaultRet::Fallback => {}
                        r => return Ok(r),
                    }
                }
            }
            Pmd::Huge { write: w, .. } => {
                if !write || w {
                    return Ok(FaultRet::Done);
                }
                if let Some(r) = self.wp_huge_pmd_uffd(mm, slot, page)? {
                    match r {
                        FaultRet::Fallback => fallback_from = Some("wp_huge_pmd"),
                        r => return Ok(r),
                    }
                    return self.handle_pte_fault(mm, vi, page, write, fallback_from);
                }
                match self.do_huge_pmd_wp_page(mm, slot)? {
                    FaultRet::Fallback => fallback_from = Some("do_huge_pmd_wp_page"),
                    r => return Ok(r),
                }
            }
            Pmd::HugeZero => {
                if !write {
                    return Ok(FaultRet::Done);
                }
                if let Some(r) = self.wp_huge_pmd_uffd(mm, slot, page)? {
                    match r {
                        FaultRet::Fallback => fallback_from = Some("wp_huge_pmd"),
                        r => return Ok(r),
                    }
                    return self.handle_pte_fault(mm, vi, page, write, fallback_from);
                }
                match self.do_huge_pmd_wp_page(mm, slot)? {
                    FaultRet::Fallback => fallback_from = Some("do_huge_pmd_wp_page"),
                    r => return Ok(r),
                }
            }
            Pmd::Migration { .. } => return Ok(FaultRet::Retry("pmd_migration_entry_wait")),
            Pmd::Swap { .. } => match self.do_huge_pmd_swap_page(mm, vi, slot)? {
                // Split into PTE swap entries: do_swap_page() at PTE level.
                FaultRet::Fallback => {}
                r => return Ok(r),
            },
            Pmd::Table(_) => {}
        }
        self.handle_pte_fault(mm, vi, page, write, fallback_from)
    }

    /// `wp_huge_pmd()` for an anon VMA whose PMD carries the uffd-wp bit with
    /// UFFD_FEATURE_WP_ASYNC: `goto split` (`__split_huge_pmd()`), then
    /// VM_FAULT_FALLBACK to the PTE level, where `do_wp_page()` clears the bit.
    /// None when the fault is not one (sync uffd-wp was resolved by the
    /// handler before the fault).
    fn wp_huge_pmd_uffd(
        &mut self,
        mm: usize,
        slot: usize,
        page: usize,
    ) -> KResult<Option<FaultRet>> {
        if !(self.uffd_async && self.mms[mm].uffd_wp[page]) {
            return Ok(None);
        }
        cov!(self, "wp_huge_pmd:uffd_wp_async");
        match self.split_huge_pmd(mm, slot, SplitCaller::WpHugePmd, false) {
            Ok(()) => Ok(Some(FaultRet::Fallback)),
            Err(KErr::Errno(Errno::ENOMEM)) => match self.strategy(SplitCaller::WpHugePmd) {
                // VM_FAULT_OOM
                Strategy::Error => Err(Errno::ENOMEM.into()),
                // Void split: FALLBACK, handle_pte_fault() finds the PMD still
                // huge and returns 0: the access faults again.
                _ => Ok(Some(FaultRet::Retry("wp_huge_pmd"))),
            },
            Err(e) => Err(e),
        }
    }

    /// `handle_pte_fault()` (with the `__pte_alloc()` of `do_anonymous_page()`).
    fn handle_pte_fault(
        &mut self,
        mm: usize,
        vi: usize,
        page: usize,
        write: bool,
        fallback_from: Option<&'static str>,
    ) -> KResult<FaultRet> {
        let slot = self.geom.slot_of(page);
        let i = page % self.ptrs();
        if self.mms[mm].pmds[slot] == Pmd::None {
            // __pte_alloc() failure is VM_FAULT_OOM.
            self.pte_alloc(mm, slot, "__pte_alloc")?;
        }
        let Pmd::Table(t) = self.mms[mm].pmds[slot] else {
            // pte_offset_map_nolock() returns NULL on a huge PMD: return 0, re-fault.
            cov!(self, "handle_pte_fault:huge_retry");
            return Ok(FaultRet::Retry(fallback_from.unwrap_or("handle_pte_fault")));
        };
        match self.pte(t, i) {
            // handle_pte_marker(): a guard marker is VM_FAULT_SIGSEGV.
            Pte::Guard => Err(Errno::EFAULT.into()),
            Pte::None => {
                // do_anonymous_page()
                if !write {
                    cov!(self, "do_anonymous_page:zero");
                    self.set_pte(t, i, Pte::Zero);
                } else {
                    cov!(self, "do_anonymous_page:alloc");
                    self.anon_vma_prepare(mm, vi);
                    self.alloc.charge(Charge::Page, "do_anonymous_page");
                    let f = self.folio_alloc(1, vec![0]);
                    self.map_new_page(mm, t, i, f, true);
                }
                Ok(FaultRet::Done)
            }
            Pte::Zero => {
                if write {
                    cov!(self, "do_wp_page:zero");
                    self.anon_vma_prepare(mm, vi);
                    self.alloc.charge(Charge::Page, "wp_page_copy");
                    let f = self.folio_alloc(1, vec![0]);
                    self.map_new_page(mm, t, i, f, true);
                }
                Ok(FaultRet::Done)
            }
            Pte::Present {
                folio,
                idx,
                write: w,
                dirty,
            } => {
                if write && !w {
                    if self.uffd_async && self.mms[mm].uffd_wp[page] {
                        // do_wp_page(): uffd-wp async, pte_clear_uffd_wp().
                        cov!(self, "do_wp_page:uffd_wp_async");
                        self.mms[mm].uffd_wp[page] = false;
                    }
                    self.do_wp_page(mm, t, i, folio, idx as usize, dirty)?;
                }
                Ok(FaultRet::Done)
            }
            Pte::Swap(s) => {
                // do_swap_page(): a fresh exclusive folio with the swapped data.
                cov!(self, "do_swap_page");
                let data = self.swap[s as usize].data;
                self.swap_put(s);
                self.mms[mm].rss_swap -= 1;
                self.alloc.charge(Charge::Page, "do_swap_page");
                let f = self.folio_alloc(1, vec![data]);
                let w = write && self.mms[mm].vmas[vi].write;
                self.map_new_page(mm, t, i, f, w);
                Ok(FaultRet::Done)
            }
            Pte::Migration { .. } => Ok(FaultRet::Retry("migration_entry_wait")),
        }
    }

    /// Map a new exclusive order-0 folio at PTE `i` of table `t`.
    fn map_new_page(&mut self, mm: usize, t: TableId, i: usize, f: FolioId, write: bool) {
        if let Some(slot) = self.mms[mm].pmds.iter().position(|p| *p == Pmd::Table(t)) {
            self.folio_set_anon(f, mm, self.geom.slot_start(slot) + i);
        }
        let fo = &mut self.folios[f as usize];
        fo.refcount = 1;
        fo.large_mapcount = 1;
        fo.anon_exclusive[0] = true;
        self.mms[mm].rss_anon += 1;
        self.set_pte(
            t,
            i,
            Pte::Present {
                folio: f,
                idx: 0,
                write,
                dirty: write,
            },
        );
    }

    /// `do_wp_page()`: reuse an exclusive page, else copy 4K.
    fn do_wp_page(
        &mut self,
        mm: usize,
        t: TableId,
        i: usize,
        folio: FolioId,
        idx: usize,
        _dirty: bool,
    ) -> KResult<()> {
        let fo = &self.folios[folio as usize];
        if fo.anon_exclusive[idx] {
            cov!(self, "do_wp_page:reuse_exclusive");
            self.set_pte(
                t,
                i,
                Pte::Present {
                    folio,
                    idx: idx as u32,
                    write: true,
                    dirty: true,
                },
            );
            return Ok(());
        }
        if fo.nr > 1
            && fo.pincount == 0
            && fo.refcount == fo.large_mapcount
            && !self.folio_maybe_mapped_shared(folio)
        {
            // wp_can_reuse_anon_folio() for a large folio (CONFIG_MM_ID):
            // mapped by this mm only, no other reference. Unlike the small
            // folio's reuse, 7.2 (mm/memory.c __wp_can_reuse_large_anon_folio)
            // leaves folio->mapping alone: the folio may be mapped in other
            // VMAs of this mm, whose anon_vma is not this VMA's (found by the
            // unreachable table's witness: a folio moved to one VMA's
            // anon_vma was missed by the rmap walk of a later split).
            cov!(self, "do_wp_page:reuse_large");
            self.folios[folio as usize].anon_exclusive[idx] = true;
            self.set_pte(
                t,
                i,
                Pte::Present {
                    folio,
                    idx: idx as u32,
                    write: true,
                    dirty: true,
                },
            );
            return Ok(());
        }
        if fo.nr == 1 && fo.refcount == 1 && fo.pincount == 0 {
            cov!(self, "do_wp_page:reuse_sole");
            self.folios[folio as usize].anon_exclusive[0] = true;
            if let Some(slot) = self.mms[mm].pmds.iter().position(|p| *p == Pmd::Table(t)) {
                self.folio_move_anon_rmap(folio, mm, self.geom.slot_start(slot) + i);
            }
            self.set_pte(
                t,
                i,
                Pte::Present {
                    folio,
                    idx: 0,
                    write: true,
                    dirty: true,
                },
            );
            return Ok(());
        }
        // wp_page_copy()
        let data = fo.data[idx];
        cov!(self, "wp_page_copy");
        self.alloc.charge(Charge::Page, "wp_page_copy");
        let nf = self.folio_alloc(1, vec![data]);
        self.unmap_pte_page(mm, folio, "wp_page_copy")?;
        self.mms[mm].rss_anon -= 1;
        self.map_new_page(mm, t, i, nf, true);
        Ok(())
    }

    // ------------------------------------------------------------ zap

    /// `zap_pmd_range()` for pages `[lo, hi)` of one VMA, with the `zap_details`
    /// of its caller (see [`Zap`]).
    pub fn zap_pmd_range(&mut self, mm: usize, lo: usize, hi: usize, how: Zap) -> KResult<()> {
        let reclaim_pt = how == Zap::Dontneed;
        let p = self.ptrs();
        let mut slot = lo / p;
        while slot * p < hi {
            let s_lo = lo.max(slot * p);
            let s_hi = hi.min(slot * p + p);
            let full = s_lo == slot * p && s_hi == slot * p + p;
            let mut iters = 0;
            loop {
                match self.mms[mm].pmds[slot] {
                    Pmd::None => break,
                    Pmd::Table(t) => {
                        self.zap_pte_range(mm, t, s_lo, s_hi, how == Zap::Unmap)?;
                        if reclaim_pt
                            && full
                            && self.tables[t as usize].ptes.iter().all(|x| *x == Pte::None)
                        {
                            cov!(self, "zap_pte_range:reclaim_pt");
                            self.mms[mm].pmds[slot] = Pmd::None;
                            self.pte_free(t, "zap_pte_range")?;
                            self.mm_dec_nr_ptes(mm);
                        }
                        break;
                    }
                    _ => {
                        if full {
                            self.zap_huge_pmd(mm, slot)?;
                            break;
                        }
                        cov!(self, "zap_pmd_range:partial_split");
                        match self.split_for(mm, slot, SplitCaller::ZapPmdRange, false)? {
                            Split::Done => continue,
                            Split::Failed(Strategy::Skip) => {
                                // v3: addr = next; continue.
                                cov!(self, "zap_pmd_range:skip");
                                self.event(EventKind::Skipped, "zap_pmd_range", mm, s_lo, s_hi);
                                break;
                            }
                            Split::Failed(Strategy::Zero) => {
                                if self.zap_zero_huge_pmd(mm, slot, s_lo, s_hi)? {
                                    break;
                                }
                                return Err(Errno::ENOMEM.into());
                            }
                            Split::Failed(Strategy::OptIn) => {
                                // ZAP_FLAG opt-in (Kiryl Shutsemau on v3
                                // 05/24): none of the zap callers that reach
                                // a partial huge PMD (MADV_DONTNEED[_LOCKED],
                                // MADV_GUARD_INSTALL) may leave the range
                                // mapped, so none opts in: -ENOMEM. Whole-VMA
                                // zaps (unmap_vmas, the OOM reaper) never
                                // split. docs/policies.md.
                                cov!(self, "zap_pmd_range:opt_in_error");
                                return Err(Errno::ENOMEM.into());
                            }
                            Split::Failed(_) => {
                                // Void split: zap_pte_range() cannot map the PTEs, returns
                                // addr unchanged; pmd--: the same PMD again.
                                cov!(self, "zap_pmd_range:loop");
                                self.retry_guard(&mut iters, "zap_pmd_range", mm, s_lo, false)?;
                            }
                        }
                    }
                }
            }
            slot += 1;
        }
        Ok(())
    }

    /// The proposed `zap_pmd_range=zero` (Kiryl Shutsemau on v3 05/24,
    /// 2026-03-30): the split of the huge PMD at `slot` failed, so zero pages
    /// `[lo, hi)` of the THP in place and leave it mapped. The range then
    /// reads zero, as after MADV_DONTNEED, but nothing is unmapped or freed
    /// (RSS unchanged), and the uffd-wp bits of the range go as with a zap.
    /// The folio is written whoever else maps or pins it: the proposal says
    /// nothing about a shared THP, so the model zeroes it as written (a fork
    /// child then reads the zeros: `no-silent-skip folio_zero_range`).
    /// Returns false when there is nothing to zero in place (a PMD swap
    /// entry: no page to write; GUESS, the proposal predates the PMD swap
    /// series), and the caller returns -ENOMEM.
    fn zap_zero_huge_pmd(&mut self, mm: usize, slot: usize, lo: usize, hi: usize) -> KResult<bool> {
        let base = self.geom.slot_start(slot);
        match self.mms[mm].pmds[slot] {
            Pmd::HugeZero => cov!(self, "zap_pmd_range:zero_huge_zero"),
            Pmd::Huge { folio, .. } => {
                cov!(self, "zap_pmd_range:zero_in_place");
                let fo = &mut self.folios[folio as usize];
                fo.data[lo - base..hi - base]
                    .iter_mut()
                    .for_each(|d| *d = 0);
                self.event(EventKind::ZeroedInPlace, "folio_zero_range", mm, lo, hi);
            }
            _ => {
                cov!(self, "zap_pmd_range:zero_impossible");
                return Ok(false);
            }
        }
        self.mms[mm].uffd_wp[lo..hi]
            .iter_mut()
            .for_each(|b| *b = false);
        Ok(true)
    }

    /// `zap_pte_range()`. Guard markers stay unless `drop_markers`
    /// (ZAP_FLAG_DROP_MARKER: `unmap_vmas()`).
    pub fn zap_pte_range(
        &mut self,
        mm: usize,
        t: TableId,
        lo: usize,
        hi: usize,
        drop_markers: bool,
    ) -> KResult<()> {
        let p = self.ptrs();
        for page in lo..hi {
            let i = page % p;
            match self.pte(t, i) {
                Pte::Guard if !drop_markers => continue,
                Pte::None | Pte::Zero | Pte::Guard => {}
                Pte::Present { folio, .. } => {
                    self.mms[mm].rss_anon -= 1;
                    self.unmap_pte_page(mm, folio, "zap_pte_range")?;
                }
                Pte::Migration { .. } => self.mms[mm].rss_anon -= 1,
                Pte::Swap(s) => {
                    self.swap_put(s);
                    self.mms[mm].rss_swap -= 1;
                }
            }
            self.set_pte(t, i, Pte::None);
            self.mms[mm].uffd_wp[page] = false;
        }
        Ok(())
    }

    // ------------------------------------------------------------ fork

    /// `copy_pte_range()` for pages `[lo, hi)` within one PMD slot.
    pub fn copy_pte_range(
        &mut self,
        dst: usize,
        src: usize,
        dst_vma_write: bool,
        lo: usize,
        hi: usize,
    ) -> KResult<()> {
        let p = self.ptrs();
        let slot = lo / p;
        self.pte_alloc(dst, slot, "copy_pte_range")?;
        let Pmd::Table(st) = self.mms[src].pmds[slot] else {
            if self.mms[src].pmds[slot].is_huge() {
                // pte_offset_map_rw_nolock(src) is NULL on the still-huge PMD: return 0.
                cov!(self, "copy_pte_range:skip_huge_src");
                self.event(EventKind::Skipped, "copy_huge_pmd", dst, lo, hi);
            }
            return Ok(());
        };
        let Pmd::Table(dt) = self.mms[dst].pmds[slot] else {
            unreachable!("pte_alloc installed a table")
        };
        for page in lo..hi {
            let i = page % p;
            let new = match self.pte(st, i) {
                Pte::None => Pte::None,
                // copy_nonpresent_pte() → copy_pte_marker(): guard markers are copied.
                Pte::Guard => Pte::Guard,
                Pte::Zero => Pte::Zero,
                Pte::Swap(s) => {
                    self.swap[s as usize].count += 1;
                    self.mms[dst].rss_swap += 1;
                    Pte::Swap(s)
                }
                Pte::Migration { .. } => Pte::None,
                Pte::Present {
                    folio,
                    idx,
                    write,
                    dirty,
                } => {
                    let fo = &self.folios[folio as usize];
                    self.mms[dst].rss_anon += 1;
                    if fo.anon_exclusive[idx as usize] && fo.pincount > 0 {
                        // copy_present_page(): the child gets its own copy of a pinned page.
                        let data = fo.data[idx as usize];
                        cov!(self, "copy_present_page");
                        self.alloc.charge(Charge::Page, "copy_present_page");
                        let nf = self.folio_alloc(1, vec![data]);
                        self.folio_set_anon(nf, dst, page);
                        let f = &mut self.folios[nf as usize];
                        f.refcount = 1;
                        f.large_mapcount = 1;
                        f.anon_exclusive[0] = true;
                        Pte::Present {
                            folio: nf,
                            idx: 0,
                            write: dst_vma_write,
                            dirty: true,
                        }
                    } else {
                        let fo = &mut self.folios[folio as usize];
                        fo.refcount += 1;
                        fo.large_mapcount += 1;
                        fo.anon_exclusive[idx as usize] = false;
                        let _ = write;
                        self.set_pte(
                            st,
                            i,
                            Pte::Present {
                                folio,
                                idx,
                                write: false,
                                dirty,
                            },
                        );
                        Pte::Present {
                            folio,
                            idx,
                            write: false,
                            dirty,
                        }
                    }
                }
            };
            self.set_pte(dt, i, new);
        }
        Ok(())
    }

    // ------------------------------------------------------------ free_pgtables

    /// `free_pgtables()` → `free_pte_range()` for PMD slots overlapping `[lo, hi)`
    /// that no VMA uses any more.
    pub fn free_pgtables(&mut self, mm: usize, lo: usize, hi: usize) -> KResult<()> {
        let p = self.ptrs();
        // free_pmd_range(): the PMD table goes when the whole 1 GiB lies
        // between the neighbouring VMAs (floor, ceiling).
        for r in 0..2 {
            let (a, b) = (8 * r * p, 8 * (r + 1) * p);
            if lo < b && a < hi && !self.mms[mm].vmas.iter().any(|v| v.start < b && a < v.end) {
                self.mms[mm].pud[r] = false;
            }
        }
        for slot in lo / p..hi.div_ceil(p) {
            let s = slot * p;
            if self.mms[mm]
                .vmas
                .iter()
                .any(|v| v.start < s + p && s < v.end)
            {
                continue;
            }
            match self.mms[mm].pmds[slot] {
                Pmd::None => {}
                Pmd::Table(t) => {
                    self.mms[mm].pmds[slot] = Pmd::None;
                    self.pte_free(t, "free_pte_range")?;
                    self.mm_dec_nr_ptes(mm);
                }
                _ => {
                    // pmd_none_or_clear_bad(): clears without freeing anything.
                    return Err(self.bug(
                        Invariant::KernelAssertion,
                        "free_pte_range",
                        mm,
                        s,
                        "bad pmd: a huge PMD is left in a range being freed (pmd_clear_bad leaks its rss and deposited table)".into(),
                    ));
                }
            }
        }
        Ok(())
    }
}
