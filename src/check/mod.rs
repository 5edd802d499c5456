//! Every invariant in one place (docs/model.md §9, docs/invariants.md), plus
//! the flat reference model behind "no silently skipped range" (reference.rs).
//!
//! `check_state` runs after every op; the model's `check_mm` (kernel/fork.c)
//! at each exit; `check_teardown` at the end of a program. Violations carry the invariant, the kernel function,
//! the op index, the mm and the address.

use crate::model::mm::Kernel;
use crate::prog::{Advice, Op};
pub mod contract;
mod counters;
mod folios;
pub mod reference;
mod state;
mod tables;
mod walk;

pub use state::check_state;

pub use crate::base::{Invariant, Severity, Violation};

/// The kernel function an op enters first (used when nothing more specific is known).
pub fn op_function(op: &Op) -> &'static str {
    match op {
        Op::Mmap { .. } => "do_mmap",
        Op::Munmap { .. } => "do_vmi_munmap",
        Op::Mprotect { .. } => "mprotect_fixup",
        Op::Touch { .. } => "handle_mm_fault",
        Op::Madvise { advice, .. } => match advice {
            Advice::Dontneed => "madvise_dontneed_single_vma",
            Advice::Free => "madvise_free_single_vma",
            Advice::Cold | Advice::Pageout => "madvise_cold_or_pageout_pte_range",
            Advice::Collapse => "madvise_collapse",
            Advice::GuardInstall => "madvise_guard_install",
            Advice::GuardRemove => "madvise_guard_remove",
        },
        Op::Fork => "dup_mmap",
        Op::Pin { .. } => "pin_user_pages",
        Op::Unpin { .. } => "unpin_user_pages",
        Op::Mremap { .. } => "move_vma",
        Op::Reclaim { .. } => "shrink_folio_list",
        Op::Migrate { .. } => "migrate_pages",
        Op::Exit => "exit_mmap",
        Op::UffdWp { .. } => "mwriteprotect_range",
        Op::UffdRegister { .. } => "userfaultfd_register",
        Op::UffdUnregister { .. } => "userfaultfd_unregister",
        Op::UffdMove { .. } => "move_pages",
        Op::PagemapScan { .. } => "do_pagemap_scan",
        Op::Mlock { .. } => "do_mlock",
        Op::Munlock { .. } => "do_munlock",
        Op::Mbind { .. } => "do_mbind",
        Op::DropCaches => "deferred_split_scan",
    }
}

/// The function to blame for a bad page: the latest skip covering it, else the
/// latest failed split covering it, else the op's entry function.
pub fn attribute(k: &Kernel, mm: usize, page: usize, fallback: &'static str) -> &'static str {
    use crate::model::mm::EventKind;
    let hit = |kind: EventKind, same_mm: bool| {
        k.events
            .iter()
            .rev()
            .find(|e| e.kind == kind && (!same_mm || e.mm == mm) && e.lo <= page && page < e.hi)
            .map(|e| e.func)
    };
    hit(EventKind::Skipped, true)
        .or_else(|| hit(EventKind::SplitFailed, true))
        // A THP zeroed in place is seen wherever it is mapped, at any address
        // (a fork child's, or after an mremap): any such event of the op.
        .or_else(|| {
            k.events
                .iter()
                .rev()
                .find(|e| e.kind == EventKind::ZeroedInPlace)
                .map(|e| e.func)
        })
        .or_else(|| hit(EventKind::SplitFailed, false))
        .unwrap_or(fallback)
}

/// After every mm has exited: all tables and folios freed, swap empty, huge zero
/// back to the shrinker's reference.
pub fn check_teardown(k: &Kernel) -> Result<(), Violation> {
    if let Some(mi) = k.mms.iter().position(|m| m.alive) {
        return Err(k.violation(
            Invariant::CleanTeardown,
            "exit_mmap",
            mi,
            0,
            "mm still alive at teardown".into(),
        ));
    }
    if let Some(&t) = k.live_tables.first() {
        let tb = &k.tables[t as usize];
        return Err(k.violation(
            Invariant::CleanTeardown,
            "free_pgtables",
            tb.mm,
            0,
            format!(
                "page table {t} ({}, {:?}) never freed: leaked",
                tb.site, tb.state
            ),
        ));
    }
    if let Some(f) = k.folios.iter().position(|f| !f.freed) {
        return Err(k.violation(
            Invariant::CleanTeardown,
            "exit_mmap",
            0,
            0,
            format!("folio {f} never freed (refcount {})", k.folios[f].refcount),
        ));
    }
    if let Some(s) = k.swap.iter().position(|s| s.count != 0) {
        return Err(k.violation(
            Invariant::CleanTeardown,
            "exit_mmap",
            0,
            0,
            format!("swap slot {s} still referenced"),
        ));
    }
    if k.huge_zero_refcount > 1 {
        return Err(k.violation(
            Invariant::HugeZero,
            "mm_put_huge_zero_folio",
            0,
            0,
            format!(
                "huge_zero_refcount {} after every mm exited",
                k.huge_zero_refcount
            ),
        ));
    }
    Ok(())
}

// ------------------------------------------------------------------ reference check
