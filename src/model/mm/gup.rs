//! mm/gup.c: `pin_user_pages(FOLL_WRITE|FOLL_LONGTERM)` and `unpin_user_pages()`.

use super::*;
use crate::cov;

impl Kernel {
    /// Pin every page (faulting it in for write first, which changes no data).
    pub fn pin_user_pages(&mut self, mm: usize, lo: usize, hi: usize) -> KResult<()> {
        for page in lo..hi {
            let v = self.page_value(mm, page);
            // faultin_page(): a write fault that stores what is already there.
            self.access(mm, page, true, v, false)?;
            let Some(f) = self.folio_at(mm, page) else {
                return Err(Errno::EFAULT.into());
            };
            cov!(self, "pin_user_pages");
            let fo = &mut self.folios[f as usize];
            fo.pincount += 1;
            fo.refcount += 1;
            self.mms[mm].pins.push(PinRef { page, folio: f });
        }
        Ok(())
    }

    pub fn unpin_user_pages(&mut self, mm: usize, lo: usize, hi: usize) -> KResult<()> {
        let pins = std::mem::take(&mut self.mms[mm].pins);
        let (drop, keep): (Vec<PinRef>, Vec<PinRef>) =
            pins.into_iter().partition(|p| p.page >= lo && p.page < hi);
        self.mms[mm].pins = keep;
        for p in drop {
            self.folios[p.folio as usize].pincount -= 1;
            self.folio_put(p.folio, 1, "unpin_user_page", mm)?;
        }
        Ok(())
    }
}
