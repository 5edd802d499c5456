//! mm/pagewalk.c: `walk_page_range()` with a `pte_entry` walker (no `pmd_entry`):
//! `walk_pmd_range()` splits every huge PMD it meets, whatever the range.

use super::huge_memory::Split;
use super::*;
use crate::cov;
use crate::policy::Strategy;

impl Kernel {
    /// Returns, per page of `[lo, hi)`, whether `pte_entry`/`pte_hole` saw it.
    pub fn walk_page_range(&mut self, mm: usize, lo: usize, hi: usize) -> KResult<Vec<bool>> {
        let p = self.ptrs();
        let mut seen = vec![false; hi - lo];
        let ranges = self.mms[mm].vma_pieces(lo, hi);
        for (a, b) in ranges {
            let mut slot = a / p;
            while slot * p < b {
                let s_lo = a.max(slot * p);
                let s_hi = b.min(slot * p + p);
                let mut iters = 0;
                loop {
                    match self.mms[mm].pmds[slot] {
                        Pmd::None | Pmd::Table(_) => {
                            // pte_hole / walk_pte_range(): every PTE is visited.
                            seen[s_lo - lo..s_hi - lo]
                                .iter_mut()
                                .for_each(|x| *x = true);
                            break;
                        }
                        _ => {
                            cov!(self, "walk_pmd_range:split");
                            match self.split_for(mm, slot, SplitCaller::WalkPmdRange, false)? {
                                Split::Done => continue,
                                Split::Failed(Strategy::Skip) => {
                                    self.event(
                                        EventKind::Skipped,
                                        "walk_pmd_range",
                                        mm,
                                        s_lo,
                                        s_hi,
                                    );
                                    break;
                                }
                                Split::Failed(_) => {
                                    // walk_pte_range(): pte_offset_map_lock() NULL → ACTION_AGAIN.
                                    self.retry_guard(
                                        &mut iters,
                                        "walk_pmd_range",
                                        mm,
                                        s_lo,
                                        false,
                                    )?;
                                }
                            }
                        }
                    }
                }
                slot += 1;
            }
        }
        Ok(seen)
    }
}
