//! Page-table families: deposit pairing (one deposited table per huge PMD
//! under deposit, none under lazy), exact `nr_ptes`, and table conservation
//! (every live table installed once, deposited once, or freed; never leaked,
//! never used after free).

use super::state::Scratch;
use crate::base::{Invariant, Violation};
use crate::model::mm::{Kernel, TableState};

/// Mm `mi`'s deposit lists against its huge PMDs; returns the deposited tables.
pub(super) fn check_deposits(
    k: &Kernel,
    func: &'static str,
    mi: usize,
    huge_per_pt: &[usize; 2],
    sc: &mut Scratch,
) -> Result<i64, Violation> {
    let p = k.ptrs();
    let mut dep = 0i64;
    for (pt, list) in k.mms[mi].deposit.iter().enumerate() {
        dep += list.len() as i64;
        for &t in list {
            sc.deposited.add(t);
            if k.tables[t as usize].state != TableState::Deposited {
                return Err(k.violation(
                    Invariant::TableConservation,
                    func,
                    mi,
                    0,
                    format!(
                        "table {t} on a deposit list is {:?}",
                        k.tables[t as usize].state
                    ),
                ));
            }
        }
        let want = if k.policy.deposit { huge_per_pt[pt] } else { 0 };
        if list.len() != want {
            return Err(k.violation(
                Invariant::DepositPairing,
                func,
                mi,
                pt * 8 * p,
                format!(
                    "PMD table {pt}: {} deposited tables for {} huge PMDs ({})",
                    list.len(),
                    huge_per_pt[pt],
                    k.policy.label()
                ),
            ));
        }
    }
    Ok(dep)
}

/// `mm->nr_ptes` (pgtables_bytes) counts installed plus deposited tables.
pub(super) fn check_nr_ptes(
    k: &Kernel,
    func: &'static str,
    mi: usize,
    tables: i64,
    dep: i64,
) -> Result<(), Violation> {
    let mm = &k.mms[mi];
    if mm.nr_ptes != tables + dep {
        return Err(k.violation(
            Invariant::NrPtes,
            func,
            mi,
            0,
            format!(
                "nr_ptes {} but {} installed + {} deposited tables",
                mm.nr_ptes, tables, dep
            ),
        ));
    }
    Ok(())
}

/// Every live table is referenced as its state says, and every referenced
/// table is live.
pub(super) fn check_live_tables(
    k: &Kernel,
    func: &'static str,
    sc: &Scratch,
) -> Result<(), Violation> {
    for &t in &k.live_tables {
        let tb = &k.tables[t as usize];
        let i = sc.installed.get(t);
        let d = sc.deposited.get(t);
        let bad = match tb.state {
            TableState::Installed => (i != 1 || d != 0).then(|| {
                format!("installed table {t} referenced by {i} PMDs and {d} deposit lists")
            }),
            TableState::Deposited => (d != 1 || i != 0).then(|| {
                format!("deposited table {t} referenced by {i} PMDs and {d} deposit lists")
            }),
            TableState::Freed => None,
            TableState::Allocated => Some(format!(
                "table {t} from {} was allocated and never installed, deposited or freed (leak)",
                tb.site
            )),
        };
        if let Some(msg) = bad {
            return Err(k.violation(Invariant::TableConservation, func, tb.mm, 0, msg));
        }
    }
    // Every referenced table is live (a freed one was caught above as use after free).
    if let Some(t) = sc
        .installed
        .keys()
        .chain(sc.deposited.keys())
        .find(|t| !k.live_tables.contains(t))
    {
        return Err(k.violation(
            Invariant::TableConservation,
            func,
            0,
            0,
            format!("table {t} is referenced but was freed (use after free)"),
        ));
    }
    Ok(())
}
