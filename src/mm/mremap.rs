//! mm/mremap.c: `move_vma()` → `move_page_tables()` (`move_huge_pmd`,
//! `move_normal_pmd`, split + `move_ptes`).

use super::huge_memory::Split;
use super::*;
use crate::cov;
use crate::policy::Strategy;

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
        for (a, b) in pieces {
            self.mremap_to(mm, a, b - a, new + (a - old))?;
        }
        Ok(())
    }

    /// `mremap_to()` + `move_vma()` for a range inside one VMA.
    fn mremap_to(&mut self, mm: usize, old: usize, len: usize, new: usize) -> KResult<()> {
        let Some(vi) = self.mms[mm].vma_at(old) else {
            return Err(Errno::EFAULT.into());
        };
        if self.mms[mm].vmas[vi].end < old + len {
            return Err(Errno::EFAULT.into());
        }
        self.split_vma(mm, old)?;
        self.split_vma(mm, old + len)?;
        self.do_munmap(mm, new, new + len)?;
        let vi = self.mms[mm].vma_at(old).expect("split above");
        let mut vma = self.mms[mm].vmas[vi].clone();
        let moved = self.move_page_tables(mm, old, new, len, false)?;
        if moved < len {
            // Move back what was moved; the destination stays unmapped.
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
            self.free_pgtables(mm, new, new + len)?;
            return Err(Errno::ENOMEM.into());
        }
        vma.start = new;
        vma.end = new + len;
        let pos = self.mms[mm]
            .vmas
            .iter()
            .position(|v| v.start >= new)
            .unwrap_or(self.mms[mm].vmas.len());
        self.mms[mm].vmas.insert(pos, vma);
        // The old range is unmapped (do_vmi_munmap in move_vma).
        self.do_munmap(mm, old, old + len)?;
        self.vma_merge(mm);
        Ok(())
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
        'extents: while done < len {
            let o = old + done;
            let n = new + done;
            let extent = (p - o % p).min(p - n % p).min(len - done);
            let (os, ns) = (o / p, n / p);
            if extent == p {
                #[allow(clippy::collapsible_match)] // kernel order: huge first, then fall back
                match self.mms[mm].pmds[os] {
                    Pmd::None => {
                        done += p;
                        continue;
                    }
                    Pmd::Table(t) if self.mms[mm].pmds[ns] == Pmd::None => {
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
                        // move_ptes() returns -EAGAIN on the still-huge PMD: goto again.
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
