//! mm/mremap.c: `move_vma()` → `move_page_tables()` (`move_huge_pmd`,
//! `move_normal_pmd`, split + `move_ptes`).

use super::huge_memory::Split;
use super::*;
use crate::cov;
use crate::model::policy::Strategy;

impl Kernel {
    /// `mremap(old, len, len, MREMAP_MAYMOVE|MREMAP_FIXED, new)`: a move-only
    /// mremap, `remap_move()` (6.17+): every VMA in `[old, old + len)` is moved
    /// by `mremap_to()` in turn, keeping the gaps between them; no gap is allowed
    /// at the start (-EFAULT); the first failure returns with the VMAs before
    /// it already moved.
    pub fn mremap(&mut self, mm: usize, old: usize, len: usize, new: usize) -> KResult<()> {
        // check_mremap_params(): vrm_overlaps()
        if old < new + len && new < old + len {
            return Err(Errno::EINVAL.into());
        }
        let end = old + len;
        // The destination never overlaps the source range, so the source VMAs
        // can be listed up front (the kernel re-walks after each move).
        let pieces = self.mms[mm].vma_pieces(old, end);
        match pieces.first() {
            Some(&(a, _)) if a == old => {}
            _ => return Err(Errno::EFAULT.into()),
        }
        if pieces.len() > 1 {
            cov!(self, "remap_move:multi_vma");
        }
        for (i, (a, b)) in pieces.into_iter().enumerate() {
            // remap_move(): vma_multi_allowed() refuses a uffd-armed VMA in a
            // multi-VMA move: -EFAULT before anything moved when it is the
            // first and the range goes on past it, after the earlier moves
            // when it is not the first.
            let vi = self.mms[mm].vma_at(a).expect("piece of a VMA");
            if self.mms[mm].vmas[vi].uffd_wp && (i > 0 || self.mms[mm].vmas[vi].end < end) {
                cov!(self, "remap_move:uffd_multi");
                return Err(Errno::EFAULT.into());
            }
            self.mremap_to(mm, a, b - a, new + (a - old))?;
        }
        Ok(())
    }

    /// `mremap_to()` + `move_vma()` for a range inside one VMA, in 7.2's
    /// order: unmap the destination (MREMAP_FIXED), `copy_vma()` the new VMA,
    /// `move_page_tables()` (a short move is moved back, the new range unmapped,
    /// -ENOMEM), then `unmap_source_vma()`, whose VMA split may fail: 7.2 then
    /// keeps the (now empty) source range mapped and mremap still succeeds
    /// (`SplitCaller::UnmapSourceVma` skip); `error` splits the source first.
    fn mremap_to(&mut self, mm: usize, old: usize, len: usize, new: usize) -> KResult<()> {
        let Some(vi) = self.mms[mm].vma_at(old) else {
            return Err(Errno::EFAULT.into());
        };
        if self.mms[mm].vmas[vi].end < old + len {
            return Err(Errno::EFAULT.into());
        }
        let presplit = self.strategy(SplitCaller::UnmapSourceVma) == Strategy::Error;
        if presplit {
            self.split_vma(mm, old)?;
            self.split_vma(mm, old + len)?;
        }
        self.do_munmap(mm, new, new + len)?;
        let vi = self.mms[mm].vma_at(old).expect("checked above");
        let mut vma = self.mms[mm].vmas[vi].clone();
        // copy_vma(): new_pgoff = vm_pgoff + the offset of `old` in the VMA;
        // a VMA never faulted (no anon_vma) takes the new address's instead.
        if vma.anon_vma == 0 {
            vma.pgoff = new;
        } else {
            vma.pgoff += old - vma.start;
        }
        vma.start = new;
        vma.end = new + len;
        let pos = self.mms[mm]
            .vmas
            .iter()
            .position(|v| v.start >= new)
            .unwrap_or(self.mms[mm].vmas.len());
        if !self.merges_with_neighbour(mm, &vma) {
            // copy_vma(): vm_area_dup() + anon_vma_clone() unless it merges.
            self.alloc.charge(Charge::Slab, "copy_vma");
        }
        self.mms[mm].vmas.insert(pos, vma);
        // copy_vma(): vma_merge_copied_range() with the destination's
        // neighbours, before any page table moves: the source's later unmap
        // (or the revert's) then splits the merged VMA (found by vm run on the
        // v3 kernel: a never-faulted VMA moved into a hole of itself merges
        // with both sides, and unmap_source_vma() splits it at a PMD).
        self.vma_merge_at(mm, &[new, new + len]);
        let moved = self.move_page_tables(mm, old, new, len, false)?;
        if moved < len {
            // copy_vma_and_data(): move back what was moved, then unmap the
            // new range instead of the old one.
            cov!(self, "move_vma:revert");
            let back = self.move_page_tables(mm, new, old, moved, true)?;
            if back != moved {
                return Err(self.bug(
                    Invariant::KernelAssertion,
                    "move_vma",
                    mm,
                    new,
                    "model: reverting a partial move_page_tables() failed".into(),
                ));
            }
            // move_vma() then runs unmap_source_vma() on the new range: the
            // same call as below, with the same ignored error.
            self.unmap_source_vma(mm, new, len, true)?;
            return Err(Errno::ENOMEM.into());
        }
        // mremap_userfaultfd_prep(): no UFFD_FEATURE_EVENT_REMAP, so the new
        // VMA drops its uffd registration (userfaultfd_reset_ctx()).
        if let Some(vi) = self.mms[mm].vma_at(new) {
            self.mms[mm].vmas[vi].uffd_wp = false;
        }
        self.unmap_source_vma(mm, old, len, false)
    }

    /// `unmap_source_vma()`: `do_vmi_munmap()` of `[addr, addr + len)`, whose
    /// error it drops ("OOM: unable to split vma, just get accounts right").
    /// `move_vma()` calls it for the source after a move, and for the new range
    /// after `copy_vma_and_data()` moved a short move back; either way a failed
    /// VMA split leaves that range mapped.
    fn unmap_source_vma(
        &mut self,
        mm: usize,
        addr: usize,
        len: usize,
        revert: bool,
    ) -> KResult<()> {
        match self.do_munmap(mm, addr, addr + len) {
            Ok(()) => Ok(()),
            Err(KErr::Errno(_)) => {
                if revert {
                    cov!(self, "unmap_source_vma:revert_split_failed");
                } else {
                    cov!(self, "unmap_source_vma:split_failed");
                }
                self.event(EventKind::Skipped, "unmap_source_vma", mm, addr, addr + len);
                Ok(())
            }
            Err(b) => Err(b),
        }
    }

    /// `move_page_tables()`: returns how many pages were moved.
    pub fn move_page_tables(
        &mut self,
        mm: usize,
        old: usize,
        new: usize,
        len: usize,
        revert: bool,
    ) -> KResult<usize> {
        let p = self.ptrs();
        let mut done = 0;
        // uffd_supports_page_table_move(): a VMA registered with uffd (and no
        // UFFD_FEATURE_EVENT_REMAP) moves PTE by PTE to drop the uffd-wp bits,
        // never a whole table (move_normal_pmd()).
        let uffd = self.mms[mm]
            .vma_at(old)
            .is_some_and(|vi| self.mms[mm].vmas[vi].uffd_wp);
        'extents: while done < len {
            let o = old + done;
            let n = new + done;
            let extent = (p - o % p).min(p - n % p).min(len - done);
            let (os, ns) = (o / p, n / p);
            if self.mms[mm].pmds[os] != Pmd::None {
                // get_old_pmd() found one: alloc_new_pmd().
                self.pmd_alloc(mm, ns);
            }
            if extent == p {
                #[allow(clippy::collapsible_match)] // kernel order: huge first, then fall back
                match self.mms[mm].pmds[os] {
                    Pmd::None => {
                        done += p;
                        continue;
                    }
                    Pmd::Table(t) if self.mms[mm].pmds[ns] == Pmd::None && !uffd => {
                        // move_normal_pmd()
                        cov!(self, "move_normal_pmd");
                        self.mms[mm].pmds[os] = Pmd::None;
                        self.mms[mm].pmds[ns] = Pmd::Table(t);
                        self.clear_uffd_wp(mm, o, o + p);
                        self.clear_uffd_wp(mm, n, n + p);
                        done += p;
                        continue;
                    }
                    pmd if pmd.is_huge() => {
                        if self.move_huge_pmd(mm, os, ns)? {
                            done += p;
                            continue;
                        }
                    }
                    _ => {}
                }
            }
            let mut iters = 0;
            while self.mms[mm].pmds[os].is_huge() {
                if revert {
                    return Ok(done);
                }
                cov!(self, "move_page_tables:split");
                match self.split_for(mm, os, SplitCaller::MovePageTables, false) {
                    Ok(Split::Done) => {}
                    Ok(Split::Failed(Strategy::Skip)) => {
                        self.event(EventKind::Skipped, "move_page_tables", mm, o, o + extent);
                        done += extent;
                        continue 'extents;
                    }
                    Ok(Split::Failed(_)) => {
                        // Void split: pte_alloc(new_pmd) (a failure breaks out),
                        // then move_ptes() returns -EAGAIN on the still-huge
                        // PMD: goto again.
                        if self.pte_alloc(mm, ns, "move_page_tables").is_err() {
                            return Ok(done);
                        }
                        self.retry_guard(&mut iters, "move_page_tables", mm, o, false)?;
                    }
                    Err(KErr::Errno(_)) => return Ok(done),
                    Err(b) => return Err(b),
                }
            }
            let Pmd::Table(ot) = self.mms[mm].pmds[os] else {
                done += extent;
                continue;
            };
            if revert && (0..extent).all(|k| self.pte(ot, (o + k) % p) == Pte::None) {
                // Nothing to move back here: the revert needs no table (the kernel
                // would allocate one, and a failure there would change nothing).
                done += extent;
                continue;
            }
            if self.pte_alloc(mm, ns, "move_page_tables").is_err() {
                return Ok(done);
            }
            let Pmd::Table(nt) = self.mms[mm].pmds[ns] else {
                return Ok(done);
            };
            // move_ptes()
            for k in 0..extent {
                let e = self.pte(ot, (o + k) % p);
                self.set_pte(ot, (o + k) % p, Pte::None);
                self.set_pte(nt, (n + k) % p, e);
                // No UFFD_FEATURE_EVENT_REMAP: moved PTEs lose their uffd-wp bit.
                self.mms[mm].uffd_wp[o + k] = false;
                self.mms[mm].uffd_wp[n + k] = false;
            }
            done += extent;
        }
        Ok(done)
    }
}
