//! Folio counts: every live folio's refcount, entire and large mapcounts and
//! pincount equal what the page tables and pins reference; no live folio is
//! unreferenced, no pinned one freed.

use super::state::Scratch;
use crate::base::{Invariant, Violation};
use crate::model::mm::Kernel;

pub(super) fn check_folios(k: &Kernel, func: &'static str, sc: &Scratch) -> Result<(), Violation> {
    for &f in &k.live_folios {
        let fo = &k.folios[f as usize];
        let pm = sc.pmd_maps.get(f);
        let tm = sc.pte_maps.get(f);
        let pn = sc.pins.get(f);
        if fo.freed {
            return Err(k.violation(
                Invariant::FolioCounts,
                func,
                0,
                0,
                format!("folio {f} marked freed but still on the live list"),
            ));
        }
        if fo.refcount != pm + tm + pn
            || fo.entire_mapcount != pm
            || fo.large_mapcount != pm + tm
            || fo.pincount != pn
        {
            return Err(k.violation(Invariant::FolioCounts,
                func,
                0,
                0,
                format!(
                    "folio {f}: refcount {} entire {} large {} pins {}, but {pm} PMD maps, {tm} PTE maps, {pn} pins",
                    fo.refcount, fo.entire_mapcount, fo.large_mapcount, fo.pincount
                ),
            ));
        }
        if fo.refcount == 0 {
            return Err(k.violation(
                Invariant::FolioCounts,
                func,
                0,
                0,
                format!("folio {f} has no references but was never freed (leak)"),
            ));
        }
    }
    if let Some(f) = sc.pins.keys().find(|f| !k.live_folios.contains(f)) {
        return Err(k.violation(
            Invariant::FolioCounts,
            func,
            0,
            0,
            format!("pinned folio {f} was freed (use after free)"),
        ));
    }
    Ok(())
}
