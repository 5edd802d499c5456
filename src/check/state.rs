//! `check_state`: every structural invariant after an op, one family per file
//! (walk.rs: the page-table walk and what one entry can break; tables.rs:
//! table conservation, deposit pairing, nr_ptes; counters.rs: RSS, swap,
//! huge zero; folios.rs: folio counts and pins). The order of the checks is the
//! order a violation is reported in.

use super::{counters, folios, tables, walk};
use crate::base::Violation;
use crate::model::mm::Kernel;

/// Every structural invariant, after an op.
pub fn check_state(k: &Kernel, func: &'static str) -> Result<(), Violation> {
    // Counts keyed by id: dense, reused across checks without clearing, so a
    // check costs what is live and mapped, not the program's history.
    SCRATCH.with(|sc| check_state_with(k, func, &mut sc.borrow_mut()))
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// A dense counter whose reset is O(1): entries from an older epoch read as 0.
#[derive(Default)]
pub(super) struct Counter {
    epoch: u32,
    v: Vec<(u32, i64)>,
    touched: Vec<u32>,
}

impl Counter {
    fn reset(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        self.touched.clear();
    }
    pub(super) fn add(&mut self, i: u32) {
        let i = i as usize;
        if i >= self.v.len() {
            self.v.resize(i + 1, (0, 0));
        }
        if self.v[i].0 != self.epoch {
            self.v[i] = (self.epoch, 0);
            self.touched.push(i as u32);
        }
        self.v[i].1 += 1;
    }
    pub(super) fn get(&self, i: u32) -> i64 {
        match self.v.get(i as usize) {
            Some(&(e, c)) if e == self.epoch => c,
            _ => 0,
        }
    }
    /// Ids counted in this epoch, in first-seen order (deterministic).
    pub(super) fn keys(&self) -> impl Iterator<Item = &u32> {
        self.touched.iter()
    }
}

/// What the walk counts, per table, folio and swap slot id.
#[derive(Default)]
pub(super) struct Scratch {
    pub installed: Counter,
    pub deposited: Counter,
    pub pmd_maps: Counter,
    pub pte_maps: Counter,
    pub pins: Counter,
    pub swap_refs: Counter,
}

fn check_state_with(k: &Kernel, func: &'static str, sc: &mut Scratch) -> Result<(), Violation> {
    for c in [
        &mut sc.installed,
        &mut sc.deposited,
        &mut sc.pmd_maps,
        &mut sc.pte_maps,
        &mut sc.pins,
        &mut sc.swap_refs,
    ] {
        c.reset();
    }
    let mut huge_zero_users = 0u32;
    for (mi, mm) in k.mms.iter().enumerate() {
        for pin in &mm.pins {
            sc.pins.add(pin.folio);
        }
        if !mm.alive {
            continue;
        }
        if mm.huge_zero {
            huge_zero_users += 1;
        }
        let c = walk::walk_mm(k, func, mi, sc)?;
        let dep = tables::check_deposits(k, func, mi, &c.huge_per_pt, sc)?;
        tables::check_nr_ptes(k, func, mi, c.tables, dep)?;
        counters::check_rss(k, func, mi, c.rss, c.swapents)?;
    }
    tables::check_live_tables(k, func, sc)?;
    folios::check_folios(k, func, sc)?;
    counters::check_swap_slots(k, func, sc)?;
    counters::check_huge_zero(k, func, huge_zero_users)
}
