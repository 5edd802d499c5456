//! kernel/fork.c `dup_mmap()` → mm/memory.c `copy_page_range()` → `copy_pmd_range()`.

use super::*;
use crate::cov;
use crate::prog::MAX_MMS;

impl Kernel {
    /// fork: a new mm copying every VMA; returns its index.
    pub fn dup_mmap(&mut self, parent: usize) -> KResult<usize> {
        if self.mms.len() >= MAX_MMS {
            return Err(Errno::EAGAIN.into());
        }
        let child = self.mms.len();
        // copy_process(): task_struct, kernel stack, mm_struct, VMAs.
        self.alloc.charge(Charge::Slab, "copy_process");
        // No UFFD_FEATURE_EVENT_FORK: the child's entries lose their uffd-wp bits.
        let mut cm = Mm::new(self.slots(), self.ptrs());
        cm.vmas = self.mms[parent].vmas.clone();
        for v in cm.vmas.iter_mut() {
            if v.anon_vma != 0 {
                // anon_vma_fork(): the child links to the parent's anon_vmas
                // and gets one of its own.
                v.anon_vma = self.next_anon_vma;
                self.next_anon_vma += 1;
                v.chain.push(v.anon_vma);
            }
            // dup_mmap(): VM_LOCKED is not inherited; dup_userfaultfd() without
            // UFFD_FEATURE_EVENT_FORK resets the uffd registration.
            v.locked = false;
            v.uffd_wp = false;
        }
        self.mms.push(cm);
        match self.copy_page_range(child, parent) {
            Ok(()) => Ok(child),
            Err(KErr::Errno(e)) => {
                // dup_mmap() failed: the half-built child is torn down (mmput).
                cov!(self, "dup_mmap:fail");
                self.exit_mmap(child)?;
                self.mms.pop();
                Err(KErr::Errno(e))
            }
            Err(b) => Err(b),
        }
    }

    fn copy_page_range(&mut self, dst: usize, src: usize) -> KResult<()> {
        let p = self.ptrs();
        let vmas = self.mms[src].vmas.clone();
        for v in vmas {
            // vma_needs_copy(): VMAs with an anon_vma, or VM_MAYBE_GUARD
            // (VM_COPY_ON_FORK), are copied page by page.
            if v.anon_vma == 0 && !v.maybe_guard {
                continue;
            }
            // copy_pud_range(): the child's PMD table where the parent has one.
            for slot in v.start / p..v.end.div_ceil(p) {
                if self.pud_present(src, slot) {
                    self.pmd_alloc(dst, slot);
                }
            }
            let mut slot = v.start / p;
            while slot * p < v.end {
                let s_lo = v.start.max(slot * p);
                let s_hi = v.end.min(slot * p + p);
                // copy_pmd_range()
                let pmd = self.mms[src].pmds[slot];
                if pmd.is_huge() {
                    if self.copy_huge_pmd(dst, src, slot)? {
                        slot += 1;
                        continue;
                    }
                    // -EAGAIN: copy at PTE level, after pmd_none_or_clear_bad(src_pmd).
                    if self.mms[src].pmds[slot].is_huge() {
                        // The void split failed: pmd_bad() is true for a huge PMD on
                        // x86/arm64, so the parent's entry is cleared as a "bad pmd"
                        // (its rss and folio reference leak).
                        return Err(self.bug(
                            Invariant::KernelAssertion,
                            "copy_pmd_range",
                            src,
                            s_lo,
                            "pmd_none_or_clear_bad(): the source PMD is still huge after copy_huge_pmd() -EAGAIN with a failed void split: \"bad pmd\", the parent's mapping is cleared and leaks".into(),
                        ));
                    }
                    self.copy_pte_range(dst, src, v.write, s_lo, s_hi)?;
                } else if let Pmd::Table(_) = pmd {
                    self.copy_pte_range(dst, src, v.write, s_lo, s_hi)?;
                }
                slot += 1;
            }
        }
        Ok(())
    }
}
