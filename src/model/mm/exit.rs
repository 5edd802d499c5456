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
        if let Some(v) = crate::check::check_mm(self, mm) {
            return Err(KErr::Bug(Box::new(v)));
        }
        Ok(())
    }
}
