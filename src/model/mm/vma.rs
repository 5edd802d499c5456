//! mm/vma.c + mm/mmap.c: VMA split/merge, mmap(MAP_FIXED), munmap.

use super::*;
use crate::cov;

impl Kernel {
    /// `__split_vma()` at `at` (a no-op when `at` is not strictly inside a VMA).
    /// v3 moved `vma_adjust_trans_huge()` before `vma_prepare()`, so a failed
    /// split aborts cleanly; a void split lets the VMA split go ahead.
    pub fn split_vma(&mut self, mm: usize, at: usize) -> KResult<()> {
        let Some(vi) = self.mms[mm].vma_at(at) else {
            return Ok(());
        };
        if self.mms[mm].vmas[vi].start == at {
            return Ok(());
        }
        // vm_area_dup() + anon_vma_clone() (accounted slab, SLAB_ACCOUNT in
        // mm/vma_init.c and mm/rmap.c): before vma_adjust_trans_huge() in 7.2
        // (a void split), after it where the split comes first and may fail
        // (v2/v3 02: before vma_prepare(), mm/vma.c:__split_vma).
        let split_first = !self.policy.deposit
            && self.strategy(crate::model::policy::SplitCaller::VmaAdjustTransHuge)
                == crate::model::policy::Strategy::Error;
        if !split_first {
            self.alloc.charge(Charge::Slab, "__split_vma");
        }
        self.vma_adjust_trans_huge(mm, at)?;
        if split_first {
            self.alloc.charge(Charge::Slab, "__split_vma");
        }
        let mut right = self.mms[mm].vmas[vi].clone();
        right.pgoff += at - right.start;
        right.start = at;
        self.mms[mm].vmas[vi].end = at;
        self.mms[mm].vmas.insert(vi + 1, right);
        cov!(self, "__split_vma");
        if let Some(msg) = self.straddling_huge_pmd(mm, at) {
            return Err(self.bug(
                Invariant::VmaContainment,
                "vma_adjust_trans_huge",
                mm,
                at,
                msg,
            ));
        }
        Ok(())
    }

    /// `vma_merge_existing_range()` / `vma_merge_new_range()`: the kernel merges
    /// only where an operation changed or created a VMA, at the range's ends
    /// (with `prev`/`next`), never two untouched neighbours. So the model
    /// merges only at the addresses in `at` (the ends of the ranges an op
    /// changed); two equal VMAs that an op split and then failed on stay
    /// apart, as in the kernel (mm/vma.c vma_modify(): a failed second
    /// split_vma() returns with the first split kept).
    pub fn vma_merge_at(&mut self, mm: usize, at: &[usize]) {
        let v = &mut self.mms[mm].vmas;
        let mut i = 0;
        while i + 1 < v.len() {
            let (a, b) = (&v[i], &v[i + 1]);
            if !at.contains(&a.end) {
                i += 1;
                continue;
            }
            if a.can_merge_with_next(b) {
                let b = v.remove(i + 1);
                v[i].end = b.end;
                v[i].anon_vma = v[i].anon_vma.max(b.anon_vma);
                for a in b.chain {
                    if !v[i].chain.contains(&a) {
                        v[i].chain.push(a);
                    }
                }
                v[i].maybe_guard |= b.maybe_guard;
            } else {
                i += 1;
            }
        }
    }

    /// `vma_modify_flags()` and friends over `[lo, hi)`: for each VMA piece whose
    /// flags `change` alters, split the VMA at the piece's ends (`__split_vma()`,
    /// so `vma_adjust_trans_huge()`) and apply it; merge equal neighbours at the
    /// end. Pieces whose flags stay the same are left alone (no split). Stops at
    /// the first error; the pieces before it stay changed.
    pub fn vma_modify(
        &mut self,
        mm: usize,
        lo: usize,
        hi: usize,
        change: &dyn Fn(&mut Vma),
    ) -> KResult<()> {
        let mut r = Ok(());
        let mut changed = Vec::new();
        for (s, e) in self.mms[mm].vma_pieces(lo, hi) {
            let vi = self.mms[mm].vma_at(s).expect("piece of a VMA");
            let mut nv = self.mms[mm].vmas[vi].clone();
            change(&mut nv);
            if nv.same_flags(&self.mms[mm].vmas[vi])
                && nv.maybe_guard == self.mms[mm].vmas[vi].maybe_guard
            {
                continue;
            }
            if let Err(err) = self.split_vma(mm, s).and_then(|_| self.split_vma(mm, e)) {
                r = Err(err);
                break;
            }
            let vi = self.mms[mm].vma_at(s).expect("split above");
            change(&mut self.mms[mm].vmas[vi]);
            changed.extend([s, e]);
        }
        self.vma_merge_at(mm, &changed);
        r
    }

    /// `do_vmi_munmap()`: split at both ends, `unmap_vmas()`, `free_pgtables()`.
    pub fn do_munmap(&mut self, mm: usize, lo: usize, hi: usize) -> KResult<()> {
        if !self.mms[mm].vmas.iter().any(|v| v.start < hi && lo < v.end) {
            return Ok(());
        }
        self.split_vma(mm, lo)?;
        self.split_vma(mm, hi)?;
        let victims: Vec<(usize, usize)> = self.mms[mm]
            .vmas
            .iter()
            .filter(|v| v.start >= lo && v.end <= hi)
            .map(|v| (v.start, v.end))
            .collect();
        for &(s, e) in &victims {
            // unmap_vmas() → unmap_page_range() → zap_pmd_range()
            self.zap_pmd_range(mm, s, e, super::memory::Zap::Unmap)?;
        }
        self.mms[mm]
            .vmas
            .retain(|v| !(v.start >= lo && v.end <= hi));
        self.free_pgtables(mm, lo, hi)?;
        Ok(())
    }

    /// `mmap(MAP_FIXED|MAP_PRIVATE|MAP_ANONYMOUS)` (+ MADV_HUGEPAGE).
    pub fn do_mmap(&mut self, mm: usize, lo: usize, hi: usize, thp: bool) -> KResult<()> {
        self.do_munmap(mm, lo, hi)?;
        let pos = self.mms[mm]
            .vmas
            .iter()
            .position(|v| v.start >= hi)
            .unwrap_or(self.mms[mm].vmas.len());
        let v = Vma::anon(lo, hi, false);
        if !self.merges_with_neighbour(mm, &v) {
            // mmap_region(): vm_area_alloc() unless vma_merge_new_range()
            // expands a neighbour.
            self.alloc.charge(Charge::Slab, "mmap_region");
        }
        self.mms[mm].vmas.insert(pos, v);
        self.vma_merge_at(mm, &[lo, hi]);
        if thp {
            // The second system call, madvise(MADV_HUGEPAGE): hugepage_madvise()
            // → madvise_update_vma() → vma_modify_flags(). The new VMA may have
            // merged with a neighbour above, so this splits it off again
            // (__split_vma() → vma_adjust_trans_huge()) before the merge.
            cov!(self, "do_mmap:madv_hugepage");
            match self.vma_modify(mm, lo, hi, &|v| v.thp = true) {
                // madvise_vma_behavior(): "madvise() returns EAGAIN if kernel
                // resources ... are temporarily unavailable".
                Err(KErr::Errno(Errno::ENOMEM)) => return Err(Errno::EAGAIN.into()),
                r => r?,
            }
        }
        Ok(())
    }

    /// Would a new VMA `v` merge with the VMA ending at its start or starting
    /// at its end (`vma_merge_at()`'s test)? Then no vm_area_struct is allocated.
    pub fn merges_with_neighbour(&self, mm: usize, v: &Vma) -> bool {
        self.mms[mm].vmas.iter().any(|a| {
            let (l, r) = if a.end == v.start {
                (a, v)
            } else if a.start == v.end {
                (v, a)
            } else {
                return false;
            };
            l.can_merge_with_next(r)
        })
    }

    /// A huge PMD straddling a VMA boundary at `at`, if any.
    pub fn straddling_huge_pmd(&self, mm: usize, at: usize) -> Option<String> {
        let p = self.ptrs();
        if at % p == 0 || at >= self.pages() {
            return None;
        }
        let slot = at / p;
        if self.mms[mm].pmds[slot].is_huge() {
            return Some(format!(
                "the VMA boundary at {:#x} falls inside a huge PMD [{:#x}, {:#x}) that the failed split left in place",
                self.geom.addr_of(at),
                self.geom.addr_of(slot * p),
                self.geom.addr_of(slot * p + p)
            ));
        }
        None
    }
}
