//! kernel/exit.c + mm/mmap.c `exit_mmap()`, kernel/fork.c `__mmput()`/`check_mm()`.

use super::*;

impl Kernel {
    /// `exit_mmap()`: unmap every VMA, `free_pgtables()`, drop the huge zero
    /// reference, release GUP pins, then `check_mm()`.
    pub fn exit_mmap(&mut self, mm: usize) -> KResult<()> {
        if !self.mms[mm].alive {
            return Ok(());
        }
        let vmas: Vec<(usize, usize)> =
            self.mms[mm].vmas.iter().map(|v| (v.start, v.end)).collect();
        for (s, e) in vmas {
            self.zap_pmd_range(mm, s, e, super::memory::Zap::Unmap)?;
        }
        self.mms[mm].vmas.clear();
        let pages = self.pages();
        self.free_pgtables(mm, 0, pages)?;
        let pins = std::mem::take(&mut self.mms[mm].pins);
        for p in pins {
            self.folios[p.folio as usize].pincount -= 1;
            self.folio_put(p.folio, 1, "unpin_user_page", mm)?;
        }
        self.mm_put_huge_zero_folio(mm);
        self.mms[mm].alive = false;
        if let Some(v) = self.check_mm(mm) {
            return Err(KErr::Bug(Box::new(v)));
        }
        Ok(())
    }

    /// `check_mm()` at mm free: `Bad rss-counter state`, `non-zero pgtables_bytes`,
    /// non-empty `pmd_huge_pte`, PMD entries left.
    pub fn check_mm(&self, mi: usize) -> Option<Violation> {
        let mm = &self.mms[mi];
        let msg = if mm.rss_anon != 0 || mm.rss_swap != 0 {
            format!(
                "BUG: Bad rss-counter state: MM_ANONPAGES {} MM_SWAPENTS {}",
                mm.rss_anon, mm.rss_swap
            )
        } else if mm.nr_ptes != 0 {
            format!(
                "BUG: non-zero pgtables_bytes on freeing mm: {}",
                mm.nr_ptes * 4096
            )
        } else if mm.deposit.iter().any(|d| !d.is_empty()) {
            "VM_BUG_ON_MM(mm->pmd_huge_pte): deposited tables left at mm free".into()
        } else if let Some(s) = mm.pmds.iter().position(|p| *p != Pmd::None) {
            format!("PMD slot {s} not cleared at exit: {:?}", mm.pmds[s])
        } else {
            return None;
        };
        Some(self.violation(Invariant::CleanTeardown, "check_mm", mi, 0, msg))
    }
}
