//! The page-table walk behind `check_state`: every PMD and PTE of a live mm,
//! counting what the other families check, and the invariants one entry can
//! break on its own: vma-containment, huge-zero, a mapping of a freed folio,
//! a writable mapping without PageAnonExclusive, a table left in a PMD with
//! no VMA or installed after it was freed.

use super::attribute;
use super::state::Scratch;
use crate::base::{Invariant, Violation};
use crate::model::mm::{Kernel, Pmd, Pte, TableId, TableState};

/// What the walk of one mm counted.
#[derive(Default)]
pub(super) struct MmCounts {
    /// Installed PTE tables.
    pub tables: i64,
    /// Pages mapped (MM_ANONPAGES): PMD-mapped pages, PTEs, migration entries.
    pub rss: i64,
    /// Swap PTEs (MM_SWAPENTS).
    pub swapents: i64,
    /// Huge PMDs per PMD table (the deposits they need under deposit).
    pub huge_per_pt: [usize; 2],
}

/// Walk mm `mi`'s PMDs and their tables.
pub(super) fn walk_mm(
    k: &Kernel,
    func: &'static str,
    mi: usize,
    sc: &mut Scratch,
) -> Result<MmCounts, Violation> {
    let p = k.ptrs();
    let mm = &k.mms[mi];
    let mut c = MmCounts::default();
    for (slot, pmd) in mm.pmds.iter().enumerate() {
        let s = slot * p;
        let vma_cover = mm.vmas.iter().any(|v| v.start < s + p && s < v.end);
        if pmd.is_huge() {
            // vma-containment
            let inside = mm
                .vma_at(s)
                .map(|vi| mm.vmas[vi].end >= s + p)
                .unwrap_or(false);
            if !inside {
                return Err(k.violation(
                    Invariant::VmaContainment,
                    attribute(k, mi, s, func),
                    mi,
                    s,
                    format!(
                        "huge PMD [{:#x}, {:#x}) is not inside one VMA",
                        k.geom.addr_of(s),
                        k.geom.addr_of(s + p)
                    ),
                ));
            }
            c.huge_per_pt[k.geom.pmd_table_of(slot)] += 1;
            if matches!(pmd, Pmd::HugeZero) && !mm.huge_zero {
                return Err(k.violation(
                    Invariant::HugeZero,
                    func,
                    mi,
                    s,
                    "huge zero PMD mapped but MMF_HUGE_ZERO_FOLIO not set".into(),
                ));
            }
        }
        match *pmd {
            Pmd::None | Pmd::HugeZero => {}
            Pmd::Huge { folio, write, .. } => {
                c.rss += p as i64;
                sc.pmd_maps.add(folio);
                let fo = &k.folios[folio as usize];
                if fo.freed {
                    return Err(k.violation(
                        Invariant::FolioCounts,
                        func,
                        mi,
                        s,
                        format!("huge PMD maps freed folio {folio} (use after free)"),
                    ));
                }
                if write && !fo.anon_exclusive[0] {
                    return Err(k.violation(
                        Invariant::FolioCounts,
                        func,
                        mi,
                        s,
                        format!("writable huge PMD of folio {folio} without PageAnonExclusive"),
                    ));
                }
            }
            Pmd::Migration { .. } => c.rss += p as i64,
            Pmd::Swap { first } => {
                // A PMD swap entry holds one reference on each of its slots.
                for i in 0..p {
                    c.swapents += 1;
                    sc.swap_refs.add(first + i as u32);
                }
            }
            Pmd::Table(t) => {
                c.tables += 1;
                sc.installed.add(t);
                if !vma_cover {
                    return Err(k.violation(Invariant::TableConservation, func, mi, s, format!("page table {t} left behind in a PMD with no VMA (free_pgtables should have freed it)")));
                }
                walk_table(k, func, mi, s, t, sc, &mut c)?;
            }
        }
    }
    Ok(c)
}

/// Walk the PTEs of table `t`, installed at page `s` of mm `mi`.
fn walk_table(
    k: &Kernel,
    func: &'static str,
    mi: usize,
    s: usize,
    t: TableId,
    sc: &mut Scratch,
    c: &mut MmCounts,
) -> Result<(), Violation> {
    let mm = &k.mms[mi];
    let tb = &k.tables[t as usize];
    if tb.state == TableState::Freed {
        return Err(k.violation(
            Invariant::TableConservation,
            func,
            mi,
            s,
            format!("page table {t} is installed but was freed (use after free)"),
        ));
    }
    for (i, e) in tb.ptes.iter().enumerate() {
        let page = s + i;
        if *e != Pte::None && mm.vma_at(page).is_none() {
            return Err(k.violation(
                Invariant::VmaContainment,
                attribute(k, mi, page, func),
                mi,
                page,
                format!("PTE {e:?} outside any VMA"),
            ));
        }
        match *e {
            Pte::Present {
                folio, idx, write, ..
            } => {
                c.rss += 1;
                sc.pte_maps.add(folio);
                if k.folios[folio as usize].freed {
                    return Err(k.violation(
                        Invariant::FolioCounts,
                        func,
                        mi,
                        page,
                        format!("PTE maps freed folio {folio} (use after free)"),
                    ));
                }
                if write && !k.folios[folio as usize].anon_exclusive[idx as usize] {
                    return Err(k.violation(
                        Invariant::FolioCounts,
                        func,
                        mi,
                        page,
                        format!(
                            "writable PTE of folio {folio} page {idx} without PageAnonExclusive"
                        ),
                    ));
                }
            }
            Pte::Migration { .. } => c.rss += 1,
            Pte::Swap(sw) => {
                c.swapents += 1;
                sc.swap_refs.add(sw);
            }
            Pte::None | Pte::Zero | Pte::Guard => {}
        }
    }
    Ok(())
}
