//! mm/mempolicy.c: `mbind(MPOL_BIND, {node}, MPOL_MF_MOVE)` → `do_mbind()`.
//!
//! `queue_pages_range()` first (a hole is -EFAULT before anything changes):
//! every folio of the range on another node and not mapped by another mm
//! (`migrate_folio_add()`: MPOL_MF_MOVE leaves shared folios alone) is
//! queued; a PMD-mapped THP is queued whole (`queue_folios_pmd()`), no split.
//! Then `mbind_range()` per VMA (`vma_modify_policy()`: split, merge), then
//! `migrate_pages()` of the queue. Without MPOL_MF_STRICT unmovable folios are
//! not an error.

use super::*;
use crate::cov;

impl Kernel {
    /// The node a new folio for `page` of `mm` is allocated on: the VMA's
    /// policy, else the task's (the executor binds every process to node 0).
    pub fn policy_node(&self, mm: usize, page: usize) -> u8 {
        self.mms[mm]
            .vma_at(page)
            .and_then(|vi| self.mms[mm].vmas[vi].node)
            .unwrap_or(0)
    }

    pub fn do_mbind(&mut self, mm: usize, lo: usize, hi: usize, node: u8) -> KResult<()> {
        // queue_pages_test_walk(): a hole at the head, middle or tail: -EFAULT.
        let pieces = self.mms[mm].vma_pieces(lo, hi);
        let covered: usize = pieces.iter().map(|(a, b)| b - a).sum();
        if covered != hi - lo {
            cov!(self, "do_mbind:hole");
            return Err(Errno::EFAULT.into());
        }
        cov!(self, "do_mbind");
        let mut queue: Vec<FolioId> = Vec::new();
        for page in lo..hi {
            let Some(f) = self.folio_at(mm, page) else {
                continue;
            };
            if queue.contains(&f) || self.folios[f as usize].node == node {
                continue;
            }
            if self.folio_maybe_mapped_shared(f) {
                cov!(self, "migrate_folio_add:shared");
                continue;
            }
            queue.push(f);
        }
        // mbind_range(): the policy on every VMA piece (split at the ends).
        self.vma_modify(mm, lo, hi, &|v| v.node = Some(node))?;
        for f in queue {
            if !self.folios[f as usize].freed {
                match self.migrate_folio(f, node) {
                    Ok(_) => {}
                    // migrate_pages() -ENOMEM: the rest of the queue is put
                    // back; do_mbind() ORs it into nr_failed, which only
                    // MPOL_MF_STRICT turns into an error.
                    Err(KErr::Errno(Errno::ENOMEM)) => break,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
}
