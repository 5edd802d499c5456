//! mm/rmap.c (`try_to_unmap_one`, `try_to_migrate_one`, `remove_migration_ptes`),
//! mm/huge_memory.c `__folio_split`, mm/vmscan.c `shrink_folio_list` and
//! mm/migrate.c `migrate_pages`: the paths that split a PMD for a folio in every
//! mm that maps it.

use super::*;
use crate::cov;
use crate::model::policy::Strategy;

/// What `try_to_unmap_one()` does with a lazyfree (!swapbacked) folio.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LazyfreeUnmap {
    /// Clean, and only the mappings (plus isolation) hold it: drop it.
    Discard,
    /// Written since MADV_FREE: folio_set_swapbacked(), remap, abort the walk.
    Redirtied,
    /// ref_count != map_count + 1 (a GUP reference): remap, abort the walk.
    ExtraRef,
}

impl Kernel {
    /// The lazyfree rule shared by the PMD path (`__discard_anon_folio_pmd_locked()`)
    /// and the PTE path; `entry_dirty` is the dirty bit of the mapping(s).
    /// A redirtied folio is made swap-backed again here.
    fn lazyfree_unmap(&mut self, f: FolioId, entry_dirty: bool) -> LazyfreeUnmap {
        let fo = &mut self.folios[f as usize];
        if fo.dirty || entry_dirty {
            fo.dirty = true;
            fo.lazyfree = false;
            LazyfreeUnmap::Redirtied
        } else if fo.refcount != fo.large_mapcount {
            LazyfreeUnmap::ExtraRef
        } else {
            LazyfreeUnmap::Discard
        }
    }

    /// Does `mm` map folio `f` (by PMD or PTE)?
    pub fn maps_folio(&self, mm: usize, f: FolioId) -> bool {
        self.mms[mm].pmds.iter().any(|p| match *p {
            Pmd::Huge { folio, .. } | Pmd::Migration { folio, .. } => folio == f,
            Pmd::Table(t) => self.tables[t as usize].ptes.iter().any(|e| match *e {
                Pte::Present { folio, .. } | Pte::Migration { folio, .. } => folio == f,
                _ => false,
            }),
            _ => false,
        })
    }

    /// `folio_maybe_mapped_shared()`: mapped by more than one mm (the per-folio
    /// mm-id tracking of CONFIG_MM_ID).
    pub fn folio_maybe_mapped_shared(&self, f: FolioId) -> bool {
        (0..self.mms.len())
            .filter(|&m| self.mms[m].alive && self.maps_folio(m, f))
            .nth(1)
            .is_some()
    }

    fn folio_mapped(&self, f: FolioId) -> bool {
        (0..self.mms.len()).any(|m| {
            self.mms[m].alive
                && self.mms[m].pmds.iter().any(|p| match *p {
                    Pmd::Huge { folio, .. } => folio == f,
                    Pmd::Table(t) => self.tables[t as usize]
                        .ptes
                        .iter()
                        .any(|e| matches!(*e, Pte::Present { folio, .. } if folio == f)),
                    _ => false,
                })
        })
    }

    /// The huge PMD of `mm` mapping `f` inside pages `[lo, hi)`.
    fn huge_slot_in(&self, mm: usize, f: FolioId, lo: usize, hi: usize) -> Option<usize> {
        let p = self.ptrs();
        (lo / p..hi.div_ceil(p))
            .find(|&slot| matches!(self.mms[mm].pmds[slot], Pmd::Huge { folio, .. } if folio == f))
    }

    /// The VMAs `rmap_walk_anon()` visits for `f`, in order: every VMA linked
    /// to the folio's anon_vma (its `anon_vma_chain`) whose pgoff range covers
    /// part of the folio (`anon_vma_interval_tree_foreach()`: by start pgoff,
    /// then in the order the links were made, parent before child), as
    /// (mm, start, end) page ranges. A folio with no anon_vma (never mapped
    /// through a VMA the model tracked) falls back to the VMAs mapping it.
    pub fn rmap_walk_vmas(&self, f: FolioId) -> Vec<(usize, usize, usize)> {
        let fo = &self.folios[f as usize];
        let (av, first, last) = (fo.anon_vma, fo.index, fo.index + fo.nr);
        let mut v: Vec<(usize, usize, usize, usize)> = Vec::new();
        for (mi, mm) in self.mms.iter().enumerate().filter(|(_, m)| m.alive) {
            for vma in &mm.vmas {
                let linked = if av != 0 {
                    vma.chain.contains(&av)
                        && vma.pgoff < last
                        && first < vma.pgoff + (vma.end - vma.start)
                } else {
                    self.maps_folio_in(mi, f, vma.start, vma.end)
                };
                if linked {
                    v.push((vma.pgoff, mi, vma.start, vma.end));
                }
            }
        }
        v.sort_by_key(|&(pgoff, mi, start, _)| (pgoff, mi, start));
        v.into_iter().map(|(_, mi, a, b)| (mi, a, b)).collect()
    }

    /// Does `mm` map `f` at a page in `[lo, hi)`?
    fn maps_folio_in(&self, mm: usize, f: FolioId, lo: usize, hi: usize) -> bool {
        let p = self.ptrs();
        (lo..hi).any(|page| match self.mms[mm].pmds[page / p] {
            Pmd::Huge { folio, .. } | Pmd::Migration { folio, .. } => folio == f,
            Pmd::Table(t) => matches!(self.tables[t as usize].ptes[page % p],
                Pte::Present { folio, .. } | Pte::Migration { folio, .. } if folio == f),
            _ => false,
        })
    }

    /// The lazy policies' split inside an rmap walker: the table was preallocated
    /// (v3: once per call, before the page_vma_mapped_walk) or is missing.
    fn rmap_split(
        &mut self,
        mm: usize,
        slot: usize,
        freeze: bool,
        prealloc: &mut Option<TableId>,
        prealloc_tried: bool,
        caller: SplitCaller,
    ) -> KResult<Option<bool>> {
        if self.policy.deposit {
            return Ok(Some(self.split_huge_pmd_locked(
                mm,
                slot,
                freeze,
                None,
                caller.name(),
            )?));
        }
        if let Some(t) = prealloc.take() {
            return Ok(Some(self.split_huge_pmd_locked(
                mm,
                slot,
                freeze,
                Some(t),
                caller.name(),
            )?));
        }
        debug_assert!(prealloc_tried);
        self.stats.thp_split_pmd_failed += 1;
        let lo = self.geom.slot_start(slot);
        self.event(
            EventKind::SplitFailed,
            caller.name(),
            mm,
            lo,
            lo + self.ptrs(),
        );
        match self.strategy(caller) {
            Strategy::Proceed => {
                let msg = match caller {
                    SplitCaller::TryToUnmapOne => "void split left the PMD huge; the walk restarts without TTU_SPLIT_HUGE_PMD and VM_BUG_ON_FOLIO(!pvmw.pte) fires (NULL pte deref without DEBUG_VM)",
                    _ => "void split left the PMD mapped while unmap_folio() freezes the folio for splitting: the folio would be split under a PMD mapping [GUESS on the exact failure]",
                };
                cov!(self, "rmap_split:crash");
                Err(self.bug(
                    Invariant::KernelAssertion,
                    caller.name(),
                    mm,
                    lo,
                    msg.into(),
                ))
            }
            _ => {
                cov!(self, "rmap_split:ret_false");
                Ok(None)
            }
        }
    }

    /// `try_to_unmap_one()` (reclaim) for the VMA `[lo, hi)` of `mm`: unmap
    /// `f` there into swap entries (or discard it when lazyfree and clean).
    /// Returns the rmap walk's `ret`.
    pub fn try_to_unmap_one(
        &mut self,
        mm: usize,
        f: FolioId,
        split: bool,
        (lo, hi): (usize, usize),
        cluster: Option<SwapId>,
    ) -> KResult<bool> {
        let p = self.ptrs();
        let lazy = !self.policy.deposit;
        let mut prealloc = None;
        // lazy-v4-proposed with a PMD-order cluster: the PMD mapping becomes
        // a PMD swap entry and nothing is split, so no table is preallocated
        // (GUESS: PMD swap series v7 00/29, code not read).
        if lazy && split && cluster.is_none() {
            prealloc = self.pte_alloc_one(mm, "try_to_unmap_one");
        }
        let mut ret = true;
        if let Some(slot) = self.huge_slot_in(mm, f, lo, hi) {
            let Pmd::Huge { dirty, .. } = self.mms[mm].pmds[slot] else {
                unreachable!()
            };
            // A lazyfree (!swapbacked) PMD-mapped THP is never split here:
            // unmap_huge_pmd_locked() → __discard_anon_folio_pmd_locked()
            // discards it, or remaps it and aborts the walk.
            let lazyfree = self.folios[f as usize].lazyfree;
            match lazyfree.then(|| self.lazyfree_unmap(f, dirty)) {
                Some(LazyfreeUnmap::Redirtied) => {
                    cov!(self, "try_to_unmap_one:redirtied_lazyfree");
                    ret = false;
                }
                Some(LazyfreeUnmap::ExtraRef) => {
                    cov!(self, "try_to_unmap_one:lazyfree_extra_ref");
                    ret = false;
                }
                Some(LazyfreeUnmap::Discard) => {
                    cov!(self, "try_to_unmap_one:discard_pmd");
                    self.mms[mm].pmds[slot] = Pmd::None;
                    let lo = self.geom.slot_start(slot);
                    self.clear_uffd_wp(mm, lo, lo + p);
                    let fo = &mut self.folios[f as usize];
                    fo.entire_mapcount -= 1;
                    fo.large_mapcount -= 1;
                    self.mms[mm].rss_anon -= p as i64;
                    if self.policy.deposit {
                        self.zap_deposited_table(mm, slot, "__discard_anon_folio_pmd_locked")?;
                    }
                    self.folio_put(f, 1, "__discard_anon_folio_pmd_locked", mm)?;
                }
                None if cluster.is_some() => {
                    let first = cluster.expect("checked");
                    if !self.set_pmd_swap_entry(mm, slot, f, first)? {
                        ret = false;
                    }
                }
                None if split => {
                    cov!(self, "try_to_unmap_one:split");
                    if self
                        .rmap_split(
                            mm,
                            slot,
                            false,
                            &mut prealloc,
                            lazy,
                            SplitCaller::TryToUnmapOne,
                        )?
                        .is_none()
                    {
                        ret = false;
                    }
                }
                None => ret = false,
            }
        }
        if ret {
            ret = self.unmap_ptes_to_swap(mm, f, lo, hi)?;
        }
        if let Some(t) = prealloc {
            self.pte_free(t, "try_to_unmap_one")?;
        }
        Ok(ret)
    }

    fn unmap_ptes_to_swap(&mut self, mm: usize, f: FolioId, lo: usize, hi: usize) -> KResult<bool> {
        let p = self.ptrs();
        if self.folios[f as usize].lazyfree {
            // The lazyfree PTE path: the same rule over all the folio's PTEs.
            let any_dirty = (0..self.slots()).any(|slot| {
                self.table_of(mm, slot).is_some_and(|t| {
                    self.tables[t as usize].ptes.iter().any(
                        |e| matches!(*e, Pte::Present { folio, dirty: true, .. } if folio == f),
                    )
                })
            });
            match self.lazyfree_unmap(f, any_dirty) {
                LazyfreeUnmap::Discard => {}
                LazyfreeUnmap::Redirtied => {
                    cov!(self, "try_to_unmap_one:redirtied_lazyfree_pte");
                    return Ok(false);
                }
                LazyfreeUnmap::ExtraRef => {
                    cov!(self, "try_to_unmap_one:lazyfree_pte_extra_ref");
                    return Ok(false);
                }
            }
        }
        for slot in lo / p..hi.div_ceil(p) {
            let Pmd::Table(t) = self.mms[mm].pmds[slot] else {
                continue;
            };
            for i in 0..p {
                if slot * p + i < lo || slot * p + i >= hi {
                    continue;
                }
                let Pte::Present {
                    folio, idx, dirty, ..
                } = self.pte(t, i)
                else {
                    continue;
                };
                if folio != f {
                    continue;
                }
                let fo = &mut self.folios[f as usize];
                if fo.anon_exclusive[idx as usize] && fo.pincount > 0 {
                    // folio_try_share_anon_rmap_pte() fails on a pinned page: abort.
                    cov!(self, "try_to_unmap_one:pinned");
                    return Ok(false);
                }
                if dirty {
                    fo.dirty = true;
                }
                if fo.lazyfree && !fo.dirty {
                    cov!(self, "try_to_unmap_one:discard_pte");
                    self.set_pte(t, i, Pte::None);
                    self.mms[mm].uffd_wp[slot * p + i] = false;
                } else {
                    fo.lazyfree = false;
                    let data = fo.data[idx as usize];
                    let s = self.swap.len() as SwapId;
                    self.swap.push(SwapSlot { data, count: 1 });
                    self.live_swap.insert(s);
                    self.set_pte(t, i, Pte::Swap(s));
                    self.mms[mm].rss_swap += 1;
                    cov!(self, "try_to_unmap_one:swap");
                }
                self.mms[mm].rss_anon -= 1;
                self.unmap_pte_page(mm, f, "try_to_unmap_one")?;
            }
        }
        Ok(true)
    }

    /// `try_to_migrate_one()`: replace every mapping of `f` in `mm` by migration
    /// entries; with `split` (TTU_SPLIT_HUGE_PMD) a PMD mapping is split frozen.
    pub fn try_to_migrate_one(
        &mut self,
        mm: usize,
        f: FolioId,
        split: bool,
        range: (usize, usize),
    ) -> KResult<bool> {
        let lazy = !self.policy.deposit;
        let mut prealloc = None;
        if lazy && split {
            prealloc = self.pte_alloc_one(mm, "try_to_migrate_one");
        }
        let ret = self.try_to_migrate_one_inner(mm, f, split, &mut prealloc, lazy, range);
        if let Some(t) = prealloc {
            self.pte_free(t, "try_to_migrate_one")?;
        }
        ret
    }

    fn try_to_migrate_one_inner(
        &mut self,
        mm: usize,
        f: FolioId,
        split: bool,
        prealloc: &mut Option<TableId>,
        lazy: bool,
        (lo, hi): (usize, usize),
    ) -> KResult<bool> {
        let p = self.ptrs();
        if let Some(slot) = self.huge_slot_in(mm, f, lo, hi) {
            if split {
                cov!(self, "try_to_migrate_one:split_freeze");
                if self
                    .rmap_split(mm, slot, true, prealloc, lazy, SplitCaller::TryToMigrateOne)?
                    .is_none()
                {
                    return Ok(false);
                }
            } else {
                // set_pmd_migration_entry()
                let Pmd::Huge { write, dirty, .. } = self.mms[mm].pmds[slot] else {
                    unreachable!()
                };
                let fo = &mut self.folios[f as usize];
                let excl = fo.anon_exclusive[0];
                if dirty {
                    fo.dirty = true;
                }
                if excl && fo.pincount > 0 {
                    return Ok(false);
                }
                fo.anon_exclusive.iter_mut().for_each(|x| *x = false);
                fo.entire_mapcount -= 1;
                fo.large_mapcount -= 1;
                cov!(self, "set_pmd_migration_entry");
                self.mms[mm].pmds[slot] = Pmd::Migration {
                    folio: f,
                    write,
                    excl,
                    dirty,
                };
                self.folio_put(f, 1, "set_pmd_migration_entry", mm)?;
            }
        }
        for slot in lo / p..hi.div_ceil(p) {
            let Pmd::Table(t) = self.mms[mm].pmds[slot] else {
                continue;
            };
            for i in 0..p {
                if slot * p + i < lo || slot * p + i >= hi {
                    continue;
                }
                let Pte::Present {
                    folio,
                    idx,
                    write,
                    dirty,
                } = self.pte(t, i)
                else {
                    continue;
                };
                if folio != f {
                    continue;
                }
                let fo = &mut self.folios[f as usize];
                let excl = fo.anon_exclusive[idx as usize];
                if excl && fo.pincount > 0 {
                    cov!(self, "try_to_migrate_one:pinned");
                    return Ok(false);
                }
                fo.anon_exclusive[idx as usize] = false;
                if dirty {
                    fo.dirty = true; // folio_mark_dirty()
                }
                self.set_pte(
                    t,
                    i,
                    Pte::Migration {
                        folio: f,
                        idx,
                        write,
                        excl,
                        dirty,
                    },
                );
                self.unmap_pte_page(mm, f, "try_to_migrate_one")?;
            }
        }
        Ok(true)
    }

    /// `remove_migration_ptes()`: map every migration entry of `src` to
    /// `dst(idx) -> (folio, page)` (src itself to undo, new folios after a move/split).
    /// With `zeropage` (RMP_USE_SHARED_ZEROPAGE, set by `__folio_split()` of an
    /// anon folio since 6.12), a zero-filled order-0 page is not remapped: its
    /// entry becomes the shared zero page (`try_to_map_unused_to_zeropage()`,
    /// `dec_mm_counter(MM_ANONPAGES)`) and the page is freed with its folio.
    pub fn remove_migration_ptes(
        &mut self,
        src: FolioId,
        dst: &dyn Fn(usize) -> (FolioId, u32),
        zeropage: bool,
    ) {
        let p = self.ptrs();
        for mm in 0..self.mms.len() {
            if !self.mms[mm].alive {
                continue;
            }
            for slot in 0..self.slots() {
                match self.mms[mm].pmds[slot] {
                    Pmd::Migration {
                        folio,
                        write,
                        excl,
                        dirty,
                    } if folio == src => {
                        // remove_migration_pmd(): dirty only if the folio and
                        // the entry both are.
                        let (nf, _) = dst(0);
                        let fo = &mut self.folios[nf as usize];
                        let dirty = dirty && fo.dirty;
                        fo.refcount += 1;
                        fo.entire_mapcount += 1;
                        fo.large_mapcount += 1;
                        if excl {
                            fo.anon_exclusive.iter_mut().for_each(|x| *x = true);
                        }
                        self.mms[mm].pmds[slot] = Pmd::Huge {
                            folio: nf,
                            write,
                            dirty,
                        };
                    }
                    Pmd::Table(t) => {
                        for i in 0..p {
                            if let Pte::Migration {
                                folio,
                                idx,
                                write,
                                excl,
                                dirty,
                            } = self.pte(t, i)
                            {
                                if folio != src {
                                    continue;
                                }
                                let (nf, ni) = dst(idx as usize);
                                if zeropage
                                    && self.folios[nf as usize].nr == 1
                                    && self.folios[nf as usize].data[ni as usize] == 0
                                {
                                    cov!(self, "try_to_map_unused_to_zeropage");
                                    self.set_pte(t, i, Pte::Zero);
                                    self.mms[mm].rss_anon -= 1;
                                    continue;
                                }
                                let fo = &mut self.folios[nf as usize];
                                fo.refcount += 1;
                                fo.large_mapcount += 1;
                                if excl {
                                    fo.anon_exclusive[ni as usize] = true;
                                }
                                // remove_migration_pte(): pte_mkdirty() only if
                                // the folio and the entry both are dirty.
                                let dirty = dirty && fo.dirty;
                                self.set_pte(
                                    t,
                                    i,
                                    Pte::Present {
                                        folio: nf,
                                        idx: ni,
                                        write,
                                        dirty,
                                    },
                                );
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// `unmap_folio()`: try_to_migrate over every mm (rmap walk stops at ret=false).
    fn unmap_folio(&mut self, f: FolioId, split: bool) -> KResult<bool> {
        // rmap_walk_anon(): one try_to_migrate_one() per VMA visited; ret =
        // false stops the walk, and so does the folio being unmapped (done).
        for (mm, lo, hi) in self.rmap_walk_vmas(f) {
            if !self.try_to_migrate_one(mm, f, split, (lo, hi))? {
                return Ok(false);
            }
            if !self.folio_mapped(f) {
                break;
            }
        }
        Ok(!self.folio_mapped(f))
    }

    /// `split_folio()` → `__folio_split()`: split a PMD-order folio into order-0
    /// folios, splitting its PMD mapping in every mm (try_to_migrate_one with
    /// TTU_SPLIT_HUGE_PMD). Returns the new folios, or None (-EAGAIN/-ENOMEM).
    pub fn split_folio(&mut self, f: FolioId) -> KResult<Option<Vec<FolioId>>> {
        let fo = &self.folios[f as usize];
        if fo.nr == 1 || fo.freed {
            return Ok(None);
        }
        // can_split_folio(): extra (pin) references make the split fail early.
        if fo.pincount > 0 {
            cov!(self, "split_folio:pinned");
            return Ok(None);
        }
        tracing::trace!(target: "splitfuzz::kernel", "__folio_split folio {f}");
        if !self.unmap_folio(f, true)? {
            // remap_page(): undo the migration entries already installed.
            cov!(self, "split_folio:unmap_failed");
            self.remove_migration_ptes(f, &|i| (f, i as u32), false);
            return Ok(None);
        }
        cov!(self, "split_folio:done");
        let fo = self.folios[f as usize].clone();
        if fo.refcount != 0 {
            return Err(self.bug(
                Invariant::FolioCounts,
                "__folio_split",
                0,
                0,
                format!(
                    "folio {f} refcount {} not frozen after unmap_folio()",
                    fo.refcount
                ),
            ));
        }
        let small: Vec<FolioId> = (0..fo.nr)
            .map(|i| {
                let n = self.folio_alloc(1, vec![fo.data[i]]);
                let nf = &mut self.folios[n as usize];
                nf.lazyfree = fo.lazyfree;
                nf.dirty = fo.dirty;
                nf.node = fo.node;
                nf.anon_vma = fo.anon_vma;
                nf.index = fo.index + i;
                n
            })
            .collect();
        self.free_folio(f);
        let map = small.clone();
        self.remove_migration_ptes(f, &move |i| (map[i], 0), true);
        for &n in &small {
            if self.folios[n as usize].refcount == 0 {
                self.free_folio(n);
            }
        }
        Ok(Some(small))
    }

    /// `deferred_split_scan()` (the "thp-deferred_split" shrinker, run by
    /// `drop_slab()` for `echo 3 > /proc/sys/vm/drop_caches`): split every
    /// partially mapped anon THP on the queue; a failed split requeues it.
    /// A THP is queued as partially mapped when an unmap leaves no PMD mapping
    /// and some, not all, of its pages mapped (`__folio_remove_rmap()`, per-page
    /// mapcounts): the model finds the queue by that rule, in folio order.
    /// Underused THPs are not split (`thp_underused()` is false with the
    /// default `khugepaged/max_ptes_none` of 511).
    pub fn deferred_split_scan(&mut self) -> KResult<()> {
        let p = self.ptrs();
        let queue: Vec<FolioId> = self
            .live_folios
            .iter()
            .copied()
            .filter(|&f| {
                let fo = &self.folios[f as usize];
                fo.nr > 1 && fo.entire_mapcount == 0 && fo.large_mapcount > 0
            })
            .filter(|&f| {
                let mut mapped = vec![false; p];
                for mm in self.mms.iter().filter(|m| m.alive) {
                    for pmd in &mm.pmds {
                        if let Pmd::Table(t) = *pmd {
                            for e in &self.tables[t as usize].ptes {
                                if let Pte::Present { folio, idx, .. }
                                | Pte::Migration { folio, idx, .. } = *e
                                {
                                    if folio == f {
                                        mapped[idx as usize] = true;
                                    }
                                }
                            }
                        }
                    }
                }
                let n = mapped.iter().filter(|x| **x).count();
                n > 0 && n < p
            })
            .collect();
        for f in queue {
            cov!(self, "deferred_split_scan:split");
            if self.split_folio(f)?.is_none() {
                cov!(self, "deferred_split_scan:requeue");
            }
        }
        Ok(())
    }

    /// `shrink_folio_list()` on one isolated folio: THP swap-out with
    /// TTU_SPLIT_HUGE_PMD in every mapping mm.
    pub fn shrink_folio(&mut self, f: FolioId) -> KResult<bool> {
        if self.folios[f as usize].freed {
            return Ok(false);
        }
        // shrink_folio_list(): a maybe-pinned anon folio is kept before any
        // unmap (folio_maybe_dma_pinned → keep_locked); an mlocked folio is
        // unevictable and never isolated.
        if self.folios[f as usize].pincount > 0 {
            cov!(self, "shrink_folio:pinned");
            return Ok(false);
        }
        if self.folio_mlocked(f) {
            cov!(self, "shrink_folio:mlocked");
            return Ok(false);
        }
        let large = self.folios[f as usize].nr > 1;
        // folio_alloc_swap(): a swap-backed large folio needs a contiguous
        // PMD-order cluster (mm/vmscan.c shrink_folio_list). Without one,
        // 7.2 splits the folio (split_folio_to_list(), THP_SWPOUT_FALLBACK)
        // and its pages are reclaimed one by one in the same pass. A
        // lazyfree (!swapbacked) folio takes no swap.
        let mut cluster = None;
        if large && !self.folios[f as usize].lazyfree {
            if !self.alloc.alloc(AllocKind::SwapCluster, "folio_alloc_swap") {
                cov!(self, "shrink_folio:swpout_fallback_split");
                let Some(small) = self.split_folio(f)? else {
                    cov!(self, "shrink_folio:swpout_split_failed");
                    return Ok(false);
                };
                let mut all = true;
                for n in small {
                    if !self.folios[n as usize].freed {
                        all &= self.shrink_folio(n)?;
                    }
                }
                return Ok(all);
            }
            if self.policy.pmd_swap_entries() {
                cluster = Some(self.swap_cluster_alloc(f));
            }
        }
        let r = self.try_to_unmap(f, large, cluster);
        if let Some(first) = cluster {
            self.swap_cluster_release(first);
        }
        r
    }

    /// `try_to_unmap()`: one try_to_unmap_one() per VMA the rmap walk
    /// visits, until ret = false or the folio is unmapped.
    fn try_to_unmap(&mut self, f: FolioId, large: bool, cluster: Option<SwapId>) -> KResult<bool> {
        for (mm, lo, hi) in self.rmap_walk_vmas(f) {
            if !self.try_to_unmap_one(mm, f, large, (lo, hi), cluster)? {
                cov!(self, "shrink_folio:keep");
                return Ok(false);
            }
            if !self.folio_mapped(f) {
                break;
            }
        }
        Ok(!self.folio_mapped(f))
    }

    /// `migrate_pages()` for one folio: move it whole (PMD migration entries), or
    /// split it when no THP target can be allocated and move the pieces.
    /// mm/migrate.c: `migrate_folio_unmap()` allocates the target
    /// (`get_new_folio()`) before it unmaps the source, so a pinned folio, whose
    /// unmap fails (-EAGAIN), costs a target allocation on each of the
    /// NR_MAX_MIGRATE_PAGES_RETRY (3 async + 7 sync) passes. When the THP
    /// target cannot be allocated and `try_split_folio()` fails too,
    /// `migrate_pages_batch()` returns -ENOMEM (`rc_saved`).
    pub fn migrate_folio(&mut self, f: FolioId, node: u8) -> KResult<bool> {
        let fo = &self.folios[f as usize];
        if fo.freed {
            return Ok(false);
        }
        let large = fo.nr > 1;
        if fo.pincount > 0 {
            cov!(self, "migrate:pinned");
            if large {
                for _ in 0..10 {
                    if !self.alloc.alloc(AllocKind::Thp, "alloc_migration_target") {
                        // -ENOMEM: try_split_folio() of a pinned folio fails.
                        return Err(Errno::ENOMEM.into());
                    }
                }
            }
            return Ok(false);
        }
        if large && !self.alloc.alloc(AllocKind::Thp, "alloc_migration_target") {
            cov!(self, "migrate:split");
            let Some(small) = self.split_folio(f)? else {
                cov!(self, "migrate:split_failed_enomem");
                return Err(Errno::ENOMEM.into());
            };
            for n in small {
                if !self.folios[n as usize].freed {
                    self.migrate_one(n, node)?;
                }
            }
            return Ok(true);
        }
        self.migrate_one(f, node)
    }

    fn migrate_one(&mut self, f: FolioId, node: u8) -> KResult<bool> {
        if !self.unmap_folio(f, false)? {
            self.remove_migration_ptes(f, &|i| (f, i as u32), false);
            return Ok(false);
        }
        cov!(self, "migrate:move");
        let fo = self.folios[f as usize].clone();
        let nf = self.folio_alloc(fo.nr, fo.data.clone());
        self.folios[nf as usize].dirty = fo.dirty;
        self.folios[nf as usize].lazyfree = fo.lazyfree;
        self.folios[nf as usize].node = node;
        self.folios[nf as usize].anon_vma = fo.anon_vma;
        self.folios[nf as usize].index = fo.index;
        self.free_folio(f);
        if fo.refcount != 0 {
            return Err(self.bug(
                Invariant::FolioCounts,
                "migrate_folio",
                0,
                0,
                format!("folio {f} refcount {} after unmap", fo.refcount),
            ));
        }
        self.remove_migration_ptes(f, &move |i| (nf, i as u32), false);
        Ok(true)
    }
}
