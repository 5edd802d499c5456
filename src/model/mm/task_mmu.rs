//! fs/proc/task_mmu.c: `ioctl(PAGEMAP_SCAN)` (`do_pagemap_scan()`) with
//! PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC, category and return mask
//! PAGE_IS_WRITTEN: write-protect (uffd-wp async) every written page.
//!
//! `pagemap_scan_test_walk()` refuses a VMA without WP_ASYNC + WP_UNPOPULATED
//! registration with -EPERM (CHECK_WPASYNC), after the VMAs before it were
//! done. A written huge PMD covered whole gets the uffd-wp bit
//! (`make_uffd_wp_pmd()`); covered in part it is split
//! (`pagemap_scan_thp_entry()`) and the PTE path write-protects its pages. On
//! the PTE fast path every PTE that is not already uffd-wp is "written":
//! present pages and swap entries get the bit, none PTEs a uffd-wp marker.

use super::huge_memory::Split;
use super::mprotect::Change;
use super::*;
use crate::cov;
use crate::model::policy::Strategy;

impl Kernel {
    pub fn pagemap_scan(&mut self, mm: usize, lo: usize, hi: usize) -> KResult<()> {
        let p = self.ptrs();
        for (a, b) in self.mms[mm].vma_pieces(lo, hi) {
            let vi = self.mms[mm].vma_at(a).expect("piece of a VMA");
            if !(self.uffd_async && self.mms[mm].vmas[vi].uffd_wp) {
                cov!(self, "pagemap_scan_test_walk:eperm");
                return Err(Errno::EPERM.into());
            }
            cov!(self, "pagemap_scan");
            let mut slot = a / p;
            while slot * p < b {
                let s_lo = a.max(slot * p);
                let s_hi = b.min(slot * p + p);
                let mut iters = 0;
                loop {
                    match self.mms[mm].pmds[slot] {
                        // pagemap_scan_pte_hole(): in a uffd-wp VMA an
                        // unpopulated range is "written", and WP_MATCHING
                        // write-protects it: uffd_wp_range(.., true), which
                        // (WP_UNPOPULATED) fills a PTE table with markers.
                        Pmd::None => {
                            cov!(self, "pagemap_scan_pte_hole:wp");
                            self.change_pmd_range(mm, s_lo, s_hi, Change::UffdWp { on: true })?;
                            break;
                        }
                        Pmd::Migration { .. } => break,
                        // A PMD swap entry as a THP (GUESS: the PMD swap
                        // series' pagemap handling not read; a swap entry
                        // without the uffd-wp bit counts as written, as
                        // for PTE swap entries in 7.2).
                        Pmd::Huge { .. } | Pmd::HugeZero | Pmd::Swap { .. } => {
                            if self.mms[mm].uffd_wp[s_lo] {
                                break; // not written
                            }
                            if s_hi - s_lo == p {
                                // make_uffd_wp_pmd()
                                cov!(self, "make_uffd_wp_pmd");
                                self.mms[mm].uffd_wp[s_lo..s_hi]
                                    .iter_mut()
                                    .for_each(|x| *x = true);
                                self.change_huge_pmd(mm, slot, false);
                                break;
                            }
                            cov!(self, "pagemap_scan_thp_entry:split_partial");
                            match self.split_for(
                                mm,
                                slot,
                                SplitCaller::PagemapScanThpEntry,
                                false,
                            )? {
                                Split::Done => continue,
                                Split::Failed(Strategy::Skip) => {
                                    self.event(
                                        EventKind::Skipped,
                                        "pagemap_scan_thp_entry",
                                        mm,
                                        s_lo,
                                        s_hi,
                                    );
                                    break;
                                }
                                Split::Failed(_) => {
                                    // Void split: -ENOENT, pte_offset_map_lock()
                                    // finds the huge PMD: ACTION_AGAIN, and
                                    // walk_pmd_range() goes again.
                                    cov!(self, "pagemap_scan_pmd_entry:again");
                                    self.retry_guard(
                                        &mut iters,
                                        "pagemap_scan_pmd_entry",
                                        mm,
                                        s_lo,
                                        false,
                                    )?;
                                }
                            }
                        }
                        Pmd::Table(t) => {
                            for page in s_lo..s_hi {
                                let i = page % p;
                                if self.mms[mm].uffd_wp[page] {
                                    continue;
                                }
                                // make_uffd_wp_pte()
                                self.mms[mm].uffd_wp[page] = true;
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
                            break;
                        }
                    }
                }
                slot += 1;
            }
        }
        Ok(())
    }
}
