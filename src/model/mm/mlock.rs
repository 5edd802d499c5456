//! mm/mlock.c: `mlock2()` / `munlock()` → `apply_vma_lock_flags()` →
//! `mlock_fixup()`, then `__mm_populate()` for mlock.
//!
//! VM_LOCKED splits VMAs (so `vma_adjust_trans_huge()`); the per-page walk
//! (`mlock_pte_range()`) mlocks a PMD-mapped THP whole and never splits. The
//! model keeps no per-folio mlock bit: a folio mapped in a VM_LOCKED VMA is
//! unevictable (reclaim keeps it).

use super::*;
use crate::cov;

impl Kernel {
    /// `apply_vma_lock_flags()`: the VMA at `lo` must exist (-ENOMEM); VMA by
    /// VMA, a hole stops the walk with -ENOMEM after the VMAs before it were
    /// changed.
    fn apply_vma_lock_flags(&mut self, mm: usize, lo: usize, hi: usize, lock: bool) -> KResult<()> {
        if self.mms[mm].vma_at(lo).is_none() {
            return Err(Errno::ENOMEM.into());
        }
        let mut at = lo;
        while at < hi {
            let Some(vi) = self.mms[mm].vma_at(at) else {
                cov!(self, "apply_vma_lock_flags:hole");
                return Err(Errno::ENOMEM.into());
            };
            let end = self.mms[mm].vmas[vi].end.min(hi);
            // mlock_fixup(): vma_modify_flags() (split, merge).
            self.vma_modify(mm, at, end, &|v| v.locked = lock)?;
            at = end;
        }
        Ok(())
    }

    /// `do_mlock()`: lock the VMAs, then `__mm_populate(start, len, 0)`: GUP
    /// over each VMA of the range (holes passed over), with FOLL_WRITE on a
    /// private writable VMA (breaking CoW, and faulting THPs in). GUP returns
    /// the pages it did before a failure, and `__mm_populate()` (mm/gup.c)
    /// resumes at the failed page, so a failure is retried once; a GUP call
    /// that fails on its first page ends it: -EFAULT becomes -ENOMEM and
    /// -ENOMEM -EAGAIN (`__mlock_posix_error_return()`).
    pub fn do_mlock(&mut self, mm: usize, lo: usize, hi: usize) -> KResult<()> {
        cov!(self, "do_mlock");
        self.apply_vma_lock_flags(mm, lo, hi, true)?;
        for (a, b) in self.mms[mm].vma_pieces(lo, hi) {
            let vi = self.mms[mm].vma_at(a).expect("piece of a VMA");
            let write = self.mms[mm].vmas[vi].write;
            // The first page of the current GUP call (populate_vma_page_range()).
            let mut call_start = a;
            let mut page = a;
            while page < b {
                let v = self.page_value(mm, page);
                match self.access(mm, page, write, v, false) {
                    Ok(_) => page += 1,
                    Err(KErr::Errno(Errno::EFAULT | Errno::ENOMEM)) if page > call_start => {
                        cov!(self, "__mm_populate:resume");
                        call_start = page;
                    }
                    Err(KErr::Errno(Errno::EFAULT)) => return Err(Errno::ENOMEM.into()),
                    Err(KErr::Errno(Errno::ENOMEM)) => return Err(Errno::EAGAIN.into()),
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// `munlock()`: `apply_vma_lock_flags(.., 0)`, no populate.
    pub fn do_munlock(&mut self, mm: usize, lo: usize, hi: usize) -> KResult<()> {
        cov!(self, "do_munlock");
        self.apply_vma_lock_flags(mm, lo, hi, false)
    }

    /// Is `f` mapped in a VM_LOCKED VMA of a live mm (so mlocked, unevictable)?
    pub fn folio_mlocked(&self, f: FolioId) -> bool {
        let p = self.ptrs();
        (0..self.mms.len()).any(|m| {
            let mm = &self.mms[m];
            mm.alive
                && mm.vmas.iter().filter(|v| v.locked).any(|v| {
                    (v.start..v.end).any(|page| match mm.pmds[page / p] {
                        Pmd::Huge { folio, .. } => folio == f,
                        Pmd::Table(t) => matches!(self.tables[t as usize].ptes[page % p],
                            Pte::Present { folio, .. } if folio == f),
                        _ => false,
                    })
                })
        })
    }
}
