//! Counter families: the mm's RSS counters (MM_ANONPAGES, MM_SWAPENTS) equal
//! what its page tables map, every swap slot's count equals its swap PTEs, and
//! the huge zero folio's refcount matches the mms that use it.

use super::state::Scratch;
use crate::base::{Invariant, Violation};
use crate::model::mm::Kernel;

/// Mm `mi`'s RSS counters against the walk's counts.
pub(super) fn check_rss(
    k: &Kernel,
    func: &'static str,
    mi: usize,
    rss: i64,
    swapents: i64,
) -> Result<(), Violation> {
    let mm = &k.mms[mi];
    if mm.rss_anon != rss {
        return Err(k.violation(
            Invariant::Rss,
            func,
            mi,
            0,
            format!(
                "MM_ANONPAGES {} but the page tables map {}",
                mm.rss_anon, rss
            ),
        ));
    }
    if mm.rss_swap != swapents {
        return Err(k.violation(
            Invariant::Rss,
            func,
            mi,
            0,
            format!("MM_SWAPENTS {} but {} swap PTEs", mm.rss_swap, swapents),
        ));
    }
    Ok(())
}

/// Swap slots against the swap PTEs that reference them.
pub(super) fn check_swap_slots(
    k: &Kernel,
    func: &'static str,
    sc: &Scratch,
) -> Result<(), Violation> {
    for &s in &k.live_swap {
        let r = sc.swap_refs.get(s);
        if k.swap[s as usize].count as i64 != r {
            return Err(k.violation(
                Invariant::Rss,
                func,
                0,
                0,
                format!(
                    "swap slot {s} count {} but {r} swap PTEs",
                    k.swap[s as usize].count
                ),
            ));
        }
    }
    if let Some(s) = sc.swap_refs.keys().find(|s| !k.live_swap.contains(s)) {
        return Err(k.violation(
            Invariant::Rss,
            func,
            0,
            0,
            format!("swap PTE points at freed swap slot {s}"),
        ));
    }
    Ok(())
}

/// The huge zero folio: one reference per mm with MMF_HUGE_ZERO_FOLIO plus
/// the shrinker's, or none at all.
pub(super) fn check_huge_zero(k: &Kernel, func: &'static str, users: u32) -> Result<(), Violation> {
    if k.huge_zero_refcount != 0 && k.huge_zero_refcount != 1 + users {
        return Err(k.violation(
            Invariant::HugeZero,
            func,
            0,
            0,
            format!(
                "huge_zero_refcount {} but {} mms have MMF_HUGE_ZERO_FOLIO (+1 shrinker)",
                k.huge_zero_refcount, users
            ),
        ));
    }
    Ok(())
}
