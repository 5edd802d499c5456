//! mm/mprotect.c: `mprotect_fixup()`, `change_protection()` → `change_pmd_range()`.

use super::huge_memory::Split;
use super::*;
use crate::cov;
use crate::policy::Strategy;

impl Kernel {
    pub fn mprotect(&mut self, mm: usize, lo: usize, hi: usize, write: bool) -> KResult<()> {
        // ENOMEM: part of the range is not mapped.
        let mut at = lo;
        while at < hi {
            let Some(vi) = self.mms[mm].vma_at(at) else {
                return Err(Errno::ENOMEM.into());
            };
            at = self.mms[mm].vmas[vi].end;
        }
        self.split_vma(mm, lo)?;
        self.split_vma(mm, hi)?;
        for v in self.mms[mm].vmas.iter_mut() {
            if v.start >= lo && v.end <= hi {
                v.write = write;
            }
        }
        let r = self.change_pmd_range(mm, lo, hi, write);
        self.vma_merge(mm);
        r
    }

    /// `change_pmd_range()`
    pub fn change_pmd_range(
        &mut self,
        mm: usize,
        lo: usize,
        hi: usize,
        write: bool,
    ) -> KResult<()> {
        let p = self.ptrs();
        let mut slot = lo / p;
        while slot * p < hi {
            let s_lo = lo.max(slot * p);
            let s_hi = hi.min(slot * p + p);
            let mut iters = 0;
            loop {
                match self.mms[mm].pmds[slot] {
                    Pmd::None => break,
                    Pmd::Table(t) => {
                        // change_pte_range()
                        if !write {
                            for page in s_lo..s_hi {
                                let i = page % p;
                                if let Pte::Present {
                                    folio, idx, dirty, ..
                                } = self.pte(t, i)
                                {
                                    self.set_pte(
                                        t,
                                        i,
                                        Pte::Present {
                                            folio,
                                            idx,
                                            write: false,
                                            dirty,
                                        },
                                    );
                                }
                            }
                        }
                        break;
                    }
                    _ => {
                        if s_lo == slot * p && s_hi == slot * p + p {
                            self.change_huge_pmd(mm, slot, write);
                            break;
                        }
                        cov!(self, "change_pmd_range:split");
                        match self.split_for(mm, slot, SplitCaller::ChangePmdRange, false)? {
                            Split::Done => continue,
                            Split::Failed(Strategy::Skip) => {
                                self.event(EventKind::Skipped, "change_pmd_range", mm, s_lo, s_hi);
                                break;
                            }
                            Split::Failed(_) => {
                                // change_pte_range() returns -EAGAIN: goto again.
                                self.retry_guard(&mut iters, "change_pmd_range", mm, s_lo)?;
                            }
                        }
                    }
                }
            }
            slot += 1;
        }
        Ok(())
    }
}
