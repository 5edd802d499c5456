//! Page-table primitives: `pte_alloc_one()` / `pte_free()`, `__pte_alloc()`
//! and `pmd_populate()`, `mm_inc_nr_ptes()`, the deposit
//! (`pgtable_trans_huge_deposit()` / `_withdraw()`, mm/pgtable-generic.c)
//! and PTE access. docs/model.md §2.

use super::*;
use crate::cov;

impl Kernel {
    /// `pte_alloc_one()`: may fail (fault plan). No counter change.
    pub fn pte_alloc_one(&mut self, mm: usize, site: &'static str) -> Option<TableId> {
        if !self.alloc.alloc(AllocKind::PteTable, site) {
            cov!(self, "pte_alloc_one:fail");
            return None;
        }
        let id = self.tables.len() as TableId;
        self.live_tables.insert(id);
        self.tables.push(PteTable {
            state: TableState::Allocated,
            ptes: vec![Pte::None; self.geom.ptrs],
            site,
            mm,
        });
        tracing::trace!(target: "splitfuzz::model::alloc", "pte_alloc_one -> table {id} (mm {mm}, {site})");
        Some(id)
    }

    /// `pte_free()`: a second free of the same table is a violation.
    pub fn pte_free(&mut self, t: TableId, site: &'static str) -> KResult<()> {
        let mm = self.tables[t as usize].mm;
        if self.tables[t as usize].state == TableState::Freed {
            return Err(self.bug_sev(
                Invariant::TableConservation,
                crate::base::Severity::Crash,
                site,
                mm,
                0,
                format!(
                    "page table {t} freed twice (first allocated by {})",
                    self.tables[t as usize].site
                ),
            ));
        }
        tracing::trace!(target: "splitfuzz::model::alloc", "pte_free table {t} ({site})");
        self.tables[t as usize].state = TableState::Freed;
        self.live_tables.remove(&t);
        Ok(())
    }

    pub fn mm_inc_nr_ptes(&mut self, mm: usize) {
        self.mms[mm].nr_ptes += 1;
    }
    pub fn mm_dec_nr_ptes(&mut self, mm: usize) {
        self.mms[mm].nr_ptes -= 1;
    }

    /// `pmd_populate()`
    pub fn pmd_populate(&mut self, mm: usize, slot: usize, t: TableId) {
        self.tables[t as usize].state = TableState::Installed;
        self.tables[t as usize].mm = mm;
        self.mms[mm].pmds[slot] = Pmd::Table(t);
    }

    /// `pmd_alloc()`: the PMD table of `slot` exists from now on (the model
    /// never fails this order-0 allocation: it is not a fault-plan site).
    pub fn pmd_alloc(&mut self, mm: usize, slot: usize) {
        let r = self.geom.pmd_table_of(slot);
        self.mms[mm].pud[r] = true;
    }

    /// `mm_find_pmd()` finds a PMD for `slot` (its PUD is present).
    pub fn pud_present(&self, mm: usize, slot: usize) -> bool {
        self.arena_neighbours || self.mms[mm].pud[self.geom.pmd_table_of(slot)]
    }

    /// `__pte_alloc()` = `pte_alloc_one()` + `pmd_install()`.
    pub fn pte_alloc(&mut self, mm: usize, slot: usize, site: &'static str) -> KResult<()> {
        self.pmd_alloc(mm, slot);
        if self.mms[mm].pmds[slot] != Pmd::None {
            return Ok(());
        }
        let Some(t) = self.pte_alloc_one(mm, site) else {
            return Err(Errno::ENOMEM.into());
        };
        // pmd_install(): PMD still none under the lock in this sequential model.
        self.mm_inc_nr_ptes(mm);
        self.pmd_populate(mm, slot, t);
        Ok(())
    }

    /// `pgtable_trans_huge_deposit()`
    pub fn deposit(&mut self, mm: usize, slot: usize, t: TableId) {
        self.tables[t as usize].state = TableState::Deposited;
        self.tables[t as usize].mm = mm;
        let pt = self.geom.pmd_table_of(slot);
        self.mms[mm].deposit[pt].push(t);
    }

    /// `pgtable_trans_huge_withdraw()`: an empty list is a NULL deref in the kernel.
    pub fn withdraw(&mut self, mm: usize, slot: usize, func: &'static str) -> KResult<TableId> {
        let pt = self.geom.pmd_table_of(slot);
        match self.mms[mm].deposit[pt].pop() {
            Some(t) => {
                self.tables[t as usize].state = TableState::Allocated;
                Ok(t)
            }
            None => Err(self.bug(
                Invariant::KernelAssertion,
                func,
                mm,
                self.geom.slot_start(slot),
                "pgtable_trans_huge_withdraw() on an empty deposit list (NULL pgtable)".into(),
            )),
        }
    }

    /// `zap_deposited_table()`: withdraw + pte_free + mm_dec_nr_ptes.
    pub fn zap_deposited_table(
        &mut self,
        mm: usize,
        slot: usize,
        func: &'static str,
    ) -> KResult<()> {
        let t = self.withdraw(mm, slot, func)?;
        self.pte_free(t, func)?;
        self.mm_dec_nr_ptes(mm);
        Ok(())
    }

    /// Read a PTE through the table, checking the table is live.
    pub fn pte(&self, t: TableId, i: usize) -> Pte {
        self.tables[t as usize].ptes[i]
    }
    pub fn set_pte(&mut self, t: TableId, i: usize, p: Pte) {
        self.tables[t as usize].ptes[i] = p;
    }

    /// The table mapped at `slot`, if any.
    pub fn table_of(&self, mm: usize, slot: usize) -> Option<TableId> {
        match self.mms[mm].pmds[slot] {
            Pmd::Table(t) => Some(t),
            _ => None,
        }
    }
}
