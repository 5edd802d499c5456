//! mm/huge_memory.c: THP fault, CoW, split, zap, copy, move, protection change.

use super::*;
use crate::cov;
use crate::model::policy::Strategy;

/// What a fault handler tells `__handle_mm_fault()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultRet {
    Done,
    /// VM_FAULT_FALLBACK: continue at PTE level.
    Fallback,
    /// Returned 0 without resolving: the access faults again. Carries the function
    /// whose handling makes the fault repeat.
    Retry(&'static str),
}

fn p_of(k: &Kernel) -> usize {
    k.ptrs()
}

/// Outcome of a split for a caller whose strategy says to carry on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Done,
    /// The split failed and the caller's strategy is Proceed or Skip.
    Failed(Strategy),
}

impl Kernel {
    /// `__split_huge_pmd()`: Lazy allocates the table first and can fail with -ENOMEM.
    pub fn split_huge_pmd(
        &mut self,
        mm: usize,
        slot: usize,
        caller: SplitCaller,
        freeze: bool,
    ) -> KResult<()> {
        self.split_huge_pmd_named(mm, slot, caller.name(), freeze)
    }

    /// `__split_huge_pmd()` on behalf of kernel function `caller` (a split
    /// caller, or a split site with no strategy of its own such as
    /// `do_huge_pmd_swap_page`'s fallback).
    pub fn split_huge_pmd_named(
        &mut self,
        mm: usize,
        slot: usize,
        caller: &'static str,
        freeze: bool,
    ) -> KResult<()> {
        if !self.mms[mm].pmds[slot].is_huge() {
            return Ok(());
        }
        tracing::trace!(target: "splitfuzz::kernel", "__split_huge_pmd mm {mm} slot {slot} caller {caller} freeze {freeze}");
        let table = if self.policy.deposit {
            None
        } else {
            match self.pte_alloc_one(mm, "__split_huge_pmd") {
                Some(t) => Some(t),
                None => {
                    self.stats.thp_split_pmd_failed += 1;
                    let lo = self.geom.slot_start(slot);
                    self.event(EventKind::SplitFailed, caller, mm, lo, lo + self.ptrs());
                    tracing::debug!(target: "splitfuzz::kernel", "__split_huge_pmd from {caller} failed: -ENOMEM (THP_SPLIT_PMD_FAILED)");
                    cov!(self, "split_huge_pmd:enomem");
                    return Err(Errno::ENOMEM.into());
                }
            }
        };
        self.split_huge_pmd_locked(mm, slot, freeze, table, caller)?;
        Ok(())
    }

    /// A split on behalf of `caller` with its failure strategy applied:
    /// `Error` returns -ENOMEM, `Retry` loops (livelock-checked), others are
    /// handed back for the caller's own code path.
    pub fn split_for(
        &mut self,
        mm: usize,
        slot: usize,
        caller: SplitCaller,
        freeze: bool,
    ) -> KResult<Split> {
        let mut iters = 0;
        loop {
            match self.split_huge_pmd(mm, slot, caller, freeze) {
                Ok(()) => return Ok(Split::Done),
                Err(KErr::Errno(Errno::ENOMEM)) => match self.strategy(caller) {
                    // split-upfront: a split the up-front pass did not
                    // make fails like `error`.
                    Strategy::Error | Strategy::SplitUpfront => return Err(Errno::ENOMEM.into()),
                    Strategy::Retry => {
                        self.retry_guard(
                            &mut iters,
                            caller.name(),
                            mm,
                            self.geom.slot_start(slot),
                            false,
                        )?;
                    }
                    s => return Ok(Split::Failed(s)),
                },
                Err(e) => return Err(e),
            }
        }
    }

    /// `split_huge_pmd_locked()`: the split proper. Deposit withdraws; Lazy uses the
    /// table the caller allocated. Returns whether the PTEs are migration entries.
    pub fn split_huge_pmd_locked(
        &mut self,
        mm: usize,
        slot: usize,
        freeze: bool,
        table: Option<TableId>,
        func: &'static str,
    ) -> KResult<bool> {
        let p = self.ptrs();
        let haddr = self.geom.slot_start(slot);
        let pmd = self.mms[mm].pmds[slot];
        if !pmd.is_huge() {
            if let Some(t) = table {
                self.pte_free(t, "split_huge_pmd_locked")?;
            }
            return Ok(false);
        }
        // VM_BUG_ON_VMA(vma->vm_start > haddr || vma->vm_end < haddr + HPAGE_PMD_SIZE)
        let covered = self.mms[mm]
            .vma_at(haddr)
            .map(|vi| self.mms[mm].vmas[vi].end >= haddr + p)
            .unwrap_or(false);
        if !covered {
            return Err(self.bug(
                Invariant::KernelAssertion,
                "__split_huge_pmd_locked",
                mm,
                haddr,
                format!("VM_BUG_ON_VMA: huge PMD split on behalf of {func} is not inside one VMA"),
            ));
        }
        self.stats.thp_split_pmd += 1;
        let t = if self.policy.deposit {
            cov!(self, "split:withdraw");
            self.withdraw(mm, slot, "__split_huge_pmd_locked")?
        } else {
            let Some(t) = table else {
                return Err(self.bug(
                    Invariant::KernelAssertion,
                    "__split_huge_pmd_locked",
                    mm,
                    haddr,
                    format!("VM_BUG_ON(!pgtable): {func} split without a preallocated table"),
                ));
            };
            self.mm_inc_nr_ptes(mm);
            t
        };
        let mut frozen = false;
        match pmd {
            Pmd::HugeZero => {
                cov!(self, "split:zero");
                for i in 0..p {
                    self.set_pte(t, i, Pte::Zero);
                }
            }
            Pmd::Migration {
                folio,
                write,
                excl,
                dirty,
            } => {
                cov!(self, "split:migration");
                for i in 0..p {
                    self.set_pte(
                        t,
                        i,
                        Pte::Migration {
                            folio,
                            idx: i as u32,
                            write,
                            excl,
                            dirty,
                        },
                    );
                }
            }
            Pmd::Huge {
                folio,
                write,
                dirty,
            } => {
                let fo = &mut self.folios[folio as usize];
                if dirty {
                    fo.dirty = true;
                }
                let excl = fo.anon_exclusive[0];
                let mut freeze = freeze;
                // folio_try_share_anon_rmap_pmd() fails on a maybe-pinned folio.
                if freeze && excl && fo.pincount > 0 {
                    freeze = false;
                }
                if freeze {
                    cov!(self, "split:freeze");
                    let fo = &mut self.folios[folio as usize];
                    fo.anon_exclusive.iter_mut().for_each(|x| *x = false);
                    fo.entire_mapcount -= 1;
                    fo.large_mapcount -= 1;
                    for i in 0..p {
                        self.set_pte(
                            t,
                            i,
                            Pte::Migration {
                                folio,
                                idx: i as u32,
                                write,
                                excl,
                                dirty,
                            },
                        );
                    }
                    // put_page(): the PMD's reference.
                    self.folio_put(folio, 1, "__split_huge_pmd_locked", mm)?;
                    frozen = true;
                } else {
                    cov!(self, "split:present");
                    let fo = &mut self.folios[folio as usize];
                    fo.refcount += p as i64 - 1;
                    fo.large_mapcount += p as i64 - 1;
                    fo.entire_mapcount -= 1;
                    fo.anon_exclusive.iter_mut().for_each(|x| *x = excl);
                    for i in 0..p {
                        self.set_pte(
                            t,
                            i,
                            Pte::Present {
                                folio,
                                idx: i as u32,
                                write,
                                dirty,
                            },
                        );
                    }
                }
            }
            Pmd::Swap { first } => {
                // The PMD swap series' fallback (v7 00/29 cover letter):
                // the entry becomes PTE swap entries of the same slots.
                cov!(self, "split:pmd_swap_entry");
                for i in 0..p {
                    self.set_pte(t, i, Pte::Swap(first + i as u32));
                }
            }
            Pmd::None | Pmd::Table(_) => unreachable!("checked is_huge"),
        }
        self.pmd_populate(mm, slot, t);
        Ok(frozen)
    }

    /// `do_huge_pmd_anonymous_page()` / `__do_huge_pmd_anonymous_page()`.
    pub fn do_huge_pmd_anonymous_page(
        &mut self,
        mm: usize,
        vi: usize,
        slot: usize,
        write: bool,
    ) -> KResult<FaultRet> {
        self.anon_vma_prepare(mm, vi);
        let p = self.ptrs();
        if !write {
            // Read fault: map the huge zero folio (use_zero_page).
            let t = if self.policy.deposit {
                match self.pte_alloc_one(mm, "do_huge_pmd_anonymous_page") {
                    Some(t) => Some(t),
                    None => return Err(Errno::ENOMEM.into()),
                }
            } else {
                None
            };
            if !self.mm_get_huge_zero_folio(mm) {
                cov!(self, "huge_zero:alloc_fail");
                if let Some(t) = t {
                    self.pte_free(t, "do_huge_pmd_anonymous_page")?;
                }
                return Ok(FaultRet::Fallback);
            }
            // set_huge_zero_folio()
            if let Some(t) = t {
                self.deposit(mm, slot, t);
                self.mm_inc_nr_ptes(mm);
            }
            cov!(self, "huge_zero:map");
            self.mms[mm].pmds[slot] = Pmd::HugeZero;
            return Ok(FaultRet::Done);
        }
        if !self.alloc.alloc(AllocKind::Thp, "vma_alloc_anon_folio_pmd") {
            cov!(self, "thp_fault:fallback");
            return Ok(FaultRet::Fallback);
        }
        let f = self.folio_alloc(p, vec![0; p]);
        let t = if self.policy.deposit {
            match self.pte_alloc_one(mm, "__do_huge_pmd_anonymous_page") {
                Some(t) => Some(t),
                None => {
                    self.free_folio(f);
                    return Err(Errno::ENOMEM.into());
                }
            }
        } else {
            None
        };
        let w = self.mms[mm].vmas[vi].write;
        self.map_anon_folio_pmd(mm, slot, f, w);
        if let Some(t) = t {
            self.deposit(mm, slot, t);
            self.mm_inc_nr_ptes(mm);
        }
        cov!(self, "thp_fault:map");
        Ok(FaultRet::Done)
    }

    /// `map_anon_folio_pmd()`: new exclusive anon THP mapped by one PMD.
    pub fn map_anon_folio_pmd(&mut self, mm: usize, slot: usize, f: FolioId, write: bool) {
        self.folio_set_anon(f, mm, self.geom.slot_start(slot));
        let p = self.ptrs() as i64;
        let fo = &mut self.folios[f as usize];
        fo.refcount += 1;
        fo.entire_mapcount += 1;
        fo.large_mapcount += 1;
        fo.anon_exclusive.iter_mut().for_each(|x| *x = true);
        self.mms[mm].rss_anon += p;
        self.mms[mm].pmds[slot] = Pmd::Huge {
            folio: f,
            write,
            dirty: true,
        };
    }

    /// `do_huge_pmd_wp_page()`: write fault on a read-only huge PMD.
    pub fn do_huge_pmd_wp_page(&mut self, mm: usize, slot: usize) -> KResult<FaultRet> {
        let p = self.ptrs();
        match self.mms[mm].pmds[slot] {
            Pmd::HugeZero => {
                // do_huge_zero_wp_pmd(): a new THP replaces the zero PMD in place;
                // the deposited table (Deposit) stays attached.
                if self.alloc.alloc(AllocKind::Thp, "do_huge_zero_wp_pmd") {
                    cov!(self, "wp:zero_to_thp");
                    let f = self.folio_alloc(p, vec![0; p]);
                    self.map_anon_folio_pmd(mm, slot, f, true);
                    return Ok(FaultRet::Done);
                }
                cov!(self, "wp:zero_fallback");
            }
            Pmd::Huge { folio, dirty, .. } => {
                let fo = &self.folios[folio as usize];
                if fo.anon_exclusive[0] {
                    cov!(self, "wp:reuse_exclusive");
                    self.mms[mm].pmds[slot] = Pmd::Huge {
                        folio,
                        write: true,
                        dirty: true,
                    };
                    let _ = dirty;
                    return Ok(FaultRet::Done);
                }
                if fo.refcount == 1 && fo.pincount == 0 {
                    // folio_move_anon_rmap() + SetPageAnonExclusive: sole owner.
                    cov!(self, "wp:reuse_sole");
                    self.folio_move_anon_rmap(folio, mm, self.geom.slot_start(slot));
                    self.folios[folio as usize]
                        .anon_exclusive
                        .iter_mut()
                        .for_each(|x| *x = true);
                    self.mms[mm].pmds[slot] = Pmd::Huge {
                        folio,
                        write: true,
                        dirty: true,
                    };
                    return Ok(FaultRet::Done);
                }
                cov!(self, "wp:fallback_split");
            }
            _ => return Ok(FaultRet::Fallback),
        }
        // Fallback: split the PMD and CoW 4K at PTE level.
        match self.split_huge_pmd(mm, slot, SplitCaller::DoHugePmdWpPage, false) {
            Ok(()) => Ok(FaultRet::Fallback),
            Err(KErr::Errno(Errno::ENOMEM)) => match self.strategy(SplitCaller::DoHugePmdWpPage) {
                Strategy::Error => Err(Errno::ENOMEM.into()),
                // Void split: VM_FAULT_FALLBACK, handle_pte_fault() finds no table and
                // returns 0: the access faults again.
                _ => Ok(FaultRet::Retry("do_huge_pmd_wp_page")),
            },
            Err(e) => Err(e),
        }
    }

    /// `zap_huge_pmd()`: the whole PMD is unmapped.
    pub fn zap_huge_pmd(&mut self, mm: usize, slot: usize) -> KResult<()> {
        let p = self.ptrs() as i64;
        let pmd = self.mms[mm].pmds[slot];
        self.mms[mm].pmds[slot] = Pmd::None;
        let lo = self.geom.slot_start(slot);
        self.clear_uffd_wp(mm, lo, lo + self.ptrs());
        match pmd {
            Pmd::Huge { folio, .. } => {
                cov!(self, "zap_huge_pmd:anon");
                let fo = &mut self.folios[folio as usize];
                fo.entire_mapcount -= 1;
                fo.large_mapcount -= 1;
                self.mms[mm].rss_anon -= p;
                if self.policy.deposit {
                    self.zap_deposited_table(mm, slot, "zap_huge_pmd")?;
                }
                self.folio_put(folio, 1, "zap_huge_pmd", mm)?;
            }
            Pmd::HugeZero => {
                cov!(self, "zap_huge_pmd:zero");
                if self.policy.deposit {
                    self.zap_deposited_table(mm, slot, "zap_huge_pmd")?;
                }
            }
            Pmd::Migration { .. } => {
                self.mms[mm].rss_anon -= p;
                if self.policy.deposit {
                    self.zap_deposited_table(mm, slot, "zap_huge_pmd")?;
                }
            }
            Pmd::Swap { first } => self.zap_huge_swap_pmd(mm, first),
            Pmd::None | Pmd::Table(_) => {}
        }
        Ok(())
    }

    /// `copy_huge_pmd()`: fork of one huge PMD. `Ok(false)` = -EAGAIN (copy at PTE level).
    pub fn copy_huge_pmd(&mut self, dst: usize, src: usize, slot: usize) -> KResult<bool> {
        let p = self.ptrs() as i64;
        let t = if self.policy.deposit {
            match self.pte_alloc_one(dst, "copy_huge_pmd") {
                Some(t) => Some(t),
                None => return Err(Errno::ENOMEM.into()),
            }
        } else {
            None
        };
        match self.mms[src].pmds[slot] {
            Pmd::HugeZero => {
                cov!(self, "copy_huge_pmd:zero");
                self.mm_get_huge_zero_folio(dst);
                if let Some(t) = t {
                    self.mm_inc_nr_ptes(dst);
                    self.deposit(dst, slot, t);
                }
                self.mms[dst].pmds[slot] = Pmd::HugeZero;
                Ok(true)
            }
            Pmd::Huge { folio, dirty, .. } => {
                let fo = &self.folios[folio as usize];
                if fo.anon_exclusive[0] && fo.pincount > 0 {
                    // folio_try_dup_anon_rmap_pmd() == -EBUSY: split src, copy PTEs.
                    cov!(self, "copy_huge_pmd:pinned");
                    if let Some(t) = t {
                        self.pte_free(t, "copy_huge_pmd")?;
                    }
                    return match self.split_for(src, slot, SplitCaller::CopyHugePmd, false)? {
                        Split::Done => Ok(false),
                        // Void split: -EAGAIN all the same; copy_pte_range() follows.
                        Split::Failed(_) => Ok(false),
                    };
                }
                cov!(self, "copy_huge_pmd:share");
                let fo = &mut self.folios[folio as usize];
                fo.refcount += 1;
                fo.entire_mapcount += 1;
                fo.large_mapcount += 1;
                fo.anon_exclusive.iter_mut().for_each(|x| *x = false);
                self.mms[dst].rss_anon += p;
                if let Some(t) = t {
                    self.mm_inc_nr_ptes(dst);
                    self.deposit(dst, slot, t);
                }
                self.mms[src].pmds[slot] = Pmd::Huge {
                    folio,
                    write: false,
                    dirty,
                };
                self.mms[dst].pmds[slot] = Pmd::Huge {
                    folio,
                    write: false,
                    dirty,
                };
                Ok(true)
            }
            Pmd::Swap { first } => {
                // lazy-v4-proposed only (no deposit, `t` is None).
                self.copy_huge_swap_pmd(dst, slot, first);
                Ok(true)
            }
            _ => {
                if let Some(t) = t {
                    self.pte_free(t, "copy_huge_pmd")?;
                }
                Ok(false)
            }
        }
    }

    /// `move_huge_pmd()`: mremap of a whole aligned huge PMD. Returns false when the
    /// destination PMD is not none (the caller falls back to a split).
    pub fn move_huge_pmd(&mut self, mm: usize, old: usize, new: usize) -> KResult<bool> {
        if self.mms[mm].pmds[new] != Pmd::None {
            return Ok(false);
        }
        let pmd = std::mem::replace(&mut self.mms[mm].pmds[old], Pmd::None);
        // No UFFD_FEATURE_EVENT_REMAP: a moved entry loses its uffd-wp bit.
        let (o, n) = (self.geom.slot_start(old), self.geom.slot_start(new));
        self.clear_uffd_wp(mm, o, o + self.ptrs());
        self.clear_uffd_wp(mm, n, n + self.ptrs());
        // pmd_move_must_withdraw(): the deposit follows when the PMD table differs.
        if self.policy.deposit && self.geom.pmd_table_of(old) != self.geom.pmd_table_of(new) {
            cov!(self, "move_huge_pmd:withdraw_deposit");
            let t = self.withdraw(mm, old, "move_huge_pmd")?;
            self.deposit(mm, new, t);
        }
        self.mms[mm].pmds[new] = pmd;
        cov!(self, "move_huge_pmd");
        Ok(true)
    }

    /// `change_huge_pmd()`: write-protect a whole huge PMD (making it writable is
    /// left to the next write fault, which reuses an exclusive folio).
    pub fn change_huge_pmd(&mut self, mm: usize, slot: usize, write: bool) {
        if let Pmd::Huge { folio, dirty, .. } = self.mms[mm].pmds[slot] {
            if !write {
                self.mms[mm].pmds[slot] = Pmd::Huge {
                    folio,
                    write: false,
                    dirty,
                };
            }
        }
    }

    /// `vma_adjust_trans_huge()` → `split_huge_pmd_if_needed()`: before a VMA
    /// boundary moves to the unaligned `page`, and the aligned 2 MiB around it
    /// lies in the VMA, `split_huge_pmd_address()`. That finds the PMD whenever
    /// the PUD is present (`mm_find_pmd()`) and calls `__split_huge_pmd()`,
    /// which under the lazy policies allocates before looking at the PMD: the
    /// allocation (and its failure) happens even when there is no THP there.
    pub fn vma_adjust_trans_huge(&mut self, mm: usize, page: usize) -> KResult<()> {
        let p = self.ptrs();
        if page % p == 0 || page >= self.pages() {
            return Ok(());
        }
        let slot = page / p;
        let inside = self.mms[mm]
            .vma_at(page)
            .map(|vi| &self.mms[mm].vmas[vi])
            .is_some_and(|v| v.start <= slot * p && slot * p + p <= v.end);
        if !inside || !self.pud_present(mm, slot) {
            return Ok(());
        }
        if self.mms[mm].pmds[slot].is_huge() {
            cov!(self, "vma_adjust_trans_huge:split");
        }
        match self.split_huge_pmd_address(mm, slot, SplitCaller::VmaAdjustTransHuge)? {
            Split::Done => Ok(()),
            // Void split: the VMA split goes ahead (with the huge PMD, if any,
            // straddling it).
            Split::Failed(_) => Ok(()),
        }
    }

    /// `split_huge_pmd_address()` → `__split_huge_pmd()` without the
    /// `pmd_is_huge()` test of `split_huge_pmd()`: the lazy table is allocated
    /// first, and freed by `split_huge_pmd_locked()` when the PMD is not huge.
    pub fn split_huge_pmd_address(
        &mut self,
        mm: usize,
        slot: usize,
        caller: SplitCaller,
    ) -> KResult<Split> {
        if self.policy.deposit {
            self.split_huge_pmd_locked(mm, slot, false, None, caller.name())?;
            return Ok(Split::Done);
        }
        if self.policy.split_checks_pmd_first() && !self.mms[mm].pmds[slot].is_huge() {
            // Nothing to split: no table needed.
            cov!(self, "split_huge_pmd_address:not_huge");
            return Ok(Split::Done);
        }
        let mut iters = 0;
        loop {
            match self.pte_alloc_one(mm, "__split_huge_pmd") {
                Some(t) => {
                    self.split_huge_pmd_locked(mm, slot, false, Some(t), caller.name())?;
                    return Ok(Split::Done);
                }
                None => {
                    self.stats.thp_split_pmd_failed += 1;
                    let lo = self.geom.slot_start(slot);
                    self.event(
                        EventKind::SplitFailed,
                        caller.name(),
                        mm,
                        lo,
                        lo + p_of(self),
                    );
                    cov!(self, "split_huge_pmd_address:enomem");
                    match self.strategy(caller) {
                        Strategy::Error => return Err(Errno::ENOMEM.into()),
                        Strategy::Retry => {
                            self.retry_guard(&mut iters, caller.name(), mm, lo, false)?
                        }
                        s => return Ok(Split::Failed(s)),
                    }
                }
            }
        }
    }
}
