//! mm/userfaultfd.c: UFFDIO_REGISTER / UFFDIO_UNREGISTER (mode WP),
//! UFFDIO_WRITEPROTECT (`mwriteprotect_range()`), UFFDIO_MOVE (`move_pages()`),
//! and the write-protect fault a handler resolves.
//!
//! Each process has at most one userfaultfd (the executor creates it on the
//! process's first uffd op). A VMA registered with it has `Vma::uffd_wp`.
//! With `uffd async` (UFFD_FEATURE_WP_ASYNC) the kernel resolves write faults
//! on protected pages itself; without it the executor's handler thread
//! resolves each one with UFFDIO_WRITEPROTECT mode 0 on the faulting page.

use super::huge_memory::Split;
use super::mprotect::Change;
use super::*;
use crate::cov;
use crate::model::policy::Strategy;

impl Kernel {
    /// `userfaultfd_register()` (mode WP): -EINVAL when no VMA meets the range;
    /// every VMA piece not yet registered is registered (`vma_modify_flags_uffd()`
    /// splits at the range ends, so `vma_adjust_trans_huge()`), merging equal
    /// neighbours.
    pub fn userfaultfd_register(&mut self, mm: usize, lo: usize, hi: usize) -> KResult<()> {
        if self.mms[mm].vma_pieces(lo, hi).is_empty() {
            return Err(Errno::EINVAL.into());
        }
        cov!(self, "userfaultfd_register");
        self.vma_modify(mm, lo, hi, &|v| v.uffd_wp = true)
    }

    /// `userfaultfd_unregister()`: per registered VMA piece, first
    /// `uffd_wp_range(.., false)` (a `change_protection()` that resolves every
    /// uffd-wp bit), then `userfaultfd_clear_vma()` (split, clear, merge).
    pub fn userfaultfd_unregister(&mut self, mm: usize, lo: usize, hi: usize) -> KResult<()> {
        let pieces = self.mms[mm].vma_pieces(lo, hi);
        if pieces.is_empty() {
            return Err(Errno::EINVAL.into());
        }
        cov!(self, "userfaultfd_unregister");
        for (s, e) in pieces {
            let Some(vi) = self.mms[mm].vma_at(s) else {
                continue;
            };
            if !self.mms[mm].vmas[vi].uffd_wp {
                continue;
            }
            // 7.2 ignores uffd_wp_range()'s result here: RESOLVE never fails
            // in 7.2 (no markers to populate), nor under v1-v3 (their
            // change_pmd_range loops). A policy whose change_pmd_range returns
            // -ENOMEM (lazy-fixed) must not drop it, or the range keeps its
            // uffd-wp bits after it is unregistered: the error is returned.
            self.change_pmd_range(mm, s, e, Change::UffdWp { on: false })?;
            self.vma_modify(mm, s, e, &|v| v.uffd_wp = false)?;
        }
        Ok(())
    }

    /// `mwriteprotect_range()` (UFFDIO_WRITEPROTECT): VMA by VMA over the range
    /// (holes are passed over); a VMA not registered for WP stops it with
    /// -ENOENT, as does a range with no VMA. `change_protection()` with
    /// MM_CP_UFFD_WP or MM_CP_UFFD_WP_RESOLVE; no VMA split.
    pub fn mwriteprotect_range(
        &mut self,
        mm: usize,
        lo: usize,
        hi: usize,
        on: bool,
    ) -> KResult<()> {
        let pieces = self.mms[mm].vma_pieces(lo, hi);
        if pieces.is_empty() {
            return Err(Errno::ENOENT.into());
        }
        cov!(self, "mwriteprotect_range");
        for (s, e) in pieces {
            let vi = self.mms[mm].vma_at(s).expect("piece of a VMA");
            if !self.mms[mm].vmas[vi].uffd_wp {
                cov!(self, "mwriteprotect_range:not_registered");
                return Err(Errno::ENOENT.into());
            }
            self.change_pmd_range(mm, s, e, Change::UffdWp { on })?;
        }
        Ok(())
    }

    /// A write fault on a uffd-wp protected page of a registered VMA without
    /// WP_ASYNC: `handle_userfault()` blocks the task, and the executor's
    /// handler resolves the fault with UFFDIO_WRITEPROTECT mode 0 on that page.
    /// While that ioctl keeps failing the task stays blocked (the handler
    /// retries): the op never returns.
    pub fn handle_userfault_wp(&mut self, mm: usize, page: usize) -> KResult<()> {
        cov!(self, "handle_userfault:wp");
        let mut tries = 0u32;
        loop {
            match self.mwriteprotect_range(mm, page, page + 1, false) {
                Ok(()) => return Ok(()),
                Err(KErr::Errno(Errno::ENOMEM)) => {
                    tries += 1;
                    if self.alloc.pte_fails_forever() || tries > RETRY_LIMIT {
                        return Err(KErr::OomLoop("handle_userfault"));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `move_pages()` (UFFDIO_MOVE, mode 0). Returns Ok when all of `len` pages
    /// moved; a short move is -EAGAIN to user space (the ioctl reports the
    /// bytes moved), no move at all returns the error that stopped it.
    pub fn uffd_move(&mut self, mm: usize, dst: usize, src: usize, len: usize) -> KResult<()> {
        let p = self.ptrs();
        // find_vmas_mm_locked() (or uffd_lock_vma()): the VMA containing dst,
        // given an anon_vma at once (find_vma_and_prepare_anon()), before
        // the source is looked up and before any check can fail: a failed
        // UFFDIO_MOVE still leaves the destination VMA faulted-in as far as
        // merges and mremap's copy_vma() are concerned (found by vm run on
        // the v3 kernel); then the VMA containing src.
        let Some(dvi) = self.mms[mm].vma_at(dst) else {
            return Err(Errno::ENOENT.into());
        };
        self.anon_vma_prepare(mm, dvi);
        let Some(svi) = self.mms[mm].vma_at(src) else {
            return Err(Errno::ENOENT.into());
        };
        let (dv, sv) = (
            self.mms[mm].vmas[dvi].clone(),
            self.mms[mm].vmas[svi].clone(),
        );
        // userfaultfd_move(): the ranges must not overlap. Both ranges inside
        // one VMA each; validate_move_areas().
        if (src < dst + len && dst < src + len)
            || src + len > sv.end
            || dst + len > dv.end
            || sv.write != dv.write
            || sv.locked != dv.locked
            || !sv.write
            || !dv.uffd_wp
        {
            cov!(self, "move_pages:einval");
            return Err(Errno::EINVAL.into());
        }
        cov!(self, "move_pages");
        let (mut s, mut d) = (src, dst);
        let end = src + len;
        let mut moved = 0;
        let mut err = None;
        let mut iters = 0;
        let mut again = 0;
        while s < end {
            let (sslot, dslot) = (s / p, d / p);
            if self.mms[mm].pmds[dslot].is_huge()
                && !matches!(self.mms[mm].pmds[dslot], Pmd::Migration { .. })
            {
                err = Some(Errno::EEXIST);
                break;
            }
            if self.mms[mm].pmds[sslot].is_huge() {
                // The source PMD was found: mm_alloc_pmd(mm, dst_addr), so the
                // destination's PUD and PMD levels exist from here on
                // (mm/userfaultfd.c move_pages()); the PTE path below gets them
                // from pte_alloc(). Without it a THP moved whole sat under a
                // PUD the model took for absent, and a later VMA split there
                // skipped vma_adjust_trans_huge(): a false vma-containment
                // finding under every preset, deposit included.
                self.pmd_alloc(mm, dslot);
                let splits = s % p != 0 || d % p != 0 || end - s < p;
                if splits || self.mms[mm].pmds[dslot] != Pmd::None {
                    if let Pmd::Huge { folio, .. } = self.mms[mm].pmds[sslot] {
                        if !self.folios[folio as usize].anon_exclusive[0] {
                            err = Some(Errno::EBUSY);
                            break;
                        }
                    }
                    cov!(self, "move_pages:split");
                    match self.split_for(mm, sslot, SplitCaller::MovePages, false) {
                        Ok(Split::Done) => {}
                        Ok(Split::Failed(Strategy::Skip)) => {
                            self.event(EventKind::Skipped, "move_pages", mm, s, s + 1);
                            err = Some(Errno::ENOMEM);
                            break;
                        }
                        Ok(Split::Failed(_)) => {
                            // Void split: `continue` goes round to the same
                            // still-huge PMD, skipping cond_resched() and the
                            // fatal-signal check.
                            cov!(self, "move_pages:loop");
                            self.retry_guard(&mut iters, "move_pages", mm, s, false)?;
                        }
                        Err(KErr::Errno(e)) => {
                            err = Some(e);
                            break;
                        }
                        Err(b) => return Err(b),
                    }
                    continue;
                }
                match self.move_pages_huge_pmd(mm, dslot, sslot) {
                    Ok(()) => {
                        s += p;
                        d += p;
                        moved += p;
                        continue;
                    }
                    Err(KErr::Errno(e)) => {
                        err = Some(e);
                        break;
                    }
                    Err(b) => return Err(b),
                }
            }
            if self.mms[mm].pmds[sslot] == Pmd::None {
                err = Some(Errno::ENOENT);
                break;
            }
            if let Err(e) = self.pte_alloc(mm, dslot, "move_pages") {
                match e {
                    KErr::Errno(e) => err = Some(e),
                    b => return Err(b),
                }
                break;
            }
            match self.move_pages_pte(mm, d, s)? {
                Ok(()) => {
                    s += 1;
                    d += 1;
                    moved += 1;
                }
                Err(Errno::EAGAIN) => {
                    // The large folio was split (progress: its pages are
                    // small now): look at the same page again.
                    again += 1;
                    if again > RETRY_LIMIT {
                        return Err(self.bug(
                            Invariant::NoLivelock,
                            "move_pages_pte",
                            mm,
                            s,
                            "move_pages_pte() keeps returning -EAGAIN".into(),
                        ));
                    }
                }
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        match err {
            None => Ok(()),
            Some(_) if moved > 0 => Err(Errno::EAGAIN.into()),
            Some(e) => Err(e.into()),
        }
    }

    /// `move_pages_huge_pmd()`: move a whole exclusive THP (or the huge zero
    /// PMD) to an empty aligned destination; the deposit follows (deposit only).
    fn move_pages_huge_pmd(&mut self, mm: usize, dslot: usize, sslot: usize) -> KResult<()> {
        let p = self.ptrs();
        match self.mms[mm].pmds[sslot] {
            Pmd::Huge { folio, dirty, .. } => {
                let fo = &self.folios[folio as usize];
                if !fo.anon_exclusive[0] || fo.pincount > 0 {
                    return Err(Errno::EBUSY.into());
                }
                self.mms[mm].pmds[dslot] = Pmd::Huge {
                    folio,
                    write: true,
                    dirty,
                };
                self.folio_set_anon(folio, mm, self.geom.slot_start(dslot));
            }
            Pmd::HugeZero => self.mms[mm].pmds[dslot] = Pmd::HugeZero,
            // lazy-v4-proposed: a PMD swap entry moves whole, as PTE swap
            // entries do (move_swap_pte()). GUESS: the PMD swap series (v7
            // 00/29) lists UFFDIO_MOVE among its consumers; code not read.
            Pmd::Swap { first } => {
                cov!(self, "move_pages_huge_pmd:swap");
                self.mms[mm].pmds[dslot] = Pmd::Swap { first };
            }
            _ => return Err(Errno::EAGAIN.into()),
        }
        cov!(self, "move_pages_huge_pmd");
        self.mms[mm].pmds[sslot] = Pmd::None;
        let (so, dn) = (sslot * p, dslot * p);
        self.clear_uffd_wp(mm, so, so + p);
        self.clear_uffd_wp(mm, dn, dn + p);
        if self.policy.deposit {
            let t = self.withdraw(mm, sslot, "move_pages_huge_pmd")?;
            self.deposit(mm, dslot, t);
        }
        Ok(())
    }

    /// `move_pages_ptes()` for one page: the destination PTE must be none, the
    /// source present (or a swap entry) and exclusive; a large folio is split
    /// first (-EAGAIN: look again).
    fn move_pages_pte(&mut self, mm: usize, d: usize, s: usize) -> KResult<Result<(), Errno>> {
        let p = self.ptrs();
        let (Some(st), Some(dt)) = (self.table_of(mm, s / p), self.table_of(mm, d / p)) else {
            return Ok(Err(Errno::EAGAIN));
        };
        let (si, di) = (s % p, d % p);
        // The destination must be pte_none(): a uffd-wp marker is not.
        if self.pte(dt, di) != Pte::None || self.mms[mm].uffd_wp[d] {
            return Ok(Err(Errno::EEXIST));
        }
        match self.pte(st, si) {
            Pte::None => Ok(Err(Errno::ENOENT)),
            Pte::Guard => Ok(Err(Errno::EFAULT)),
            Pte::Migration { .. } => Ok(Err(Errno::EAGAIN)),
            Pte::Zero => {
                cov!(self, "move_zeropage_pte");
                self.set_pte(st, si, Pte::None);
                self.set_pte(dt, di, Pte::Zero);
                self.mms[mm].uffd_wp[s] = false;
                Ok(Ok(()))
            }
            Pte::Swap(sw) => {
                cov!(self, "move_swap_pte");
                self.set_pte(st, si, Pte::None);
                self.set_pte(dt, di, Pte::Swap(sw));
                self.mms[mm].uffd_wp[s] = false;
                Ok(Ok(()))
            }
            Pte::Present {
                folio, idx, dirty, ..
            } => {
                let fo = &self.folios[folio as usize];
                if !fo.anon_exclusive[idx as usize] {
                    return Ok(Err(Errno::EBUSY));
                }
                if fo.nr > 1 {
                    cov!(self, "move_pages_pte:split_folio");
                    return match self.split_folio(folio)? {
                        Some(_) => Ok(Err(Errno::EAGAIN)),
                        // split_folio() -EAGAIN/-EBUSY ends the move.
                        None => Ok(Err(Errno::EBUSY)),
                    };
                }
                if fo.pincount > 0 {
                    return Ok(Err(Errno::EBUSY));
                }
                cov!(self, "move_present_ptes");
                // folio_move_anon_rmap(src_folio, dst_vma); index = the linear
                // page index at the destination.
                self.folio_set_anon(folio, mm, d);
                let w = self.mms[mm]
                    .vma_at(d)
                    .is_some_and(|vi| self.mms[mm].vmas[vi].write);
                self.set_pte(st, si, Pte::None);
                self.set_pte(
                    dt,
                    di,
                    Pte::Present {
                        folio,
                        idx,
                        write: w,
                        dirty,
                    },
                );
                self.mms[mm].uffd_wp[s] = false;
                Ok(Ok(()))
            }
        }
    }
}
