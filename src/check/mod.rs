//! Every invariant in one place (kernel-model.md §9), plus the flat reference
//! model behind "no silently skipped range".
//!
//! `check_state` runs after every op; `check_mm` at each exit; `check_teardown`
//! at the end of a program. Violations carry the invariant, the kernel function,
//! the op index, the mm and the address.

use crate::model::mm::{Kernel, Pmd, Pte, TableState};
use crate::prog::{Advice, Op};
pub mod reference;

pub use crate::base::{Invariant, Severity, Violation};

fn v(k: &Kernel, inv: Invariant, func: &str, mm: usize, page: usize, msg: String) -> Violation {
    Violation {
        invariant: inv,
        severity: inv.default_severity(),
        function: func.to_string(),
        op_index: k.op_index,
        mm,
        addr: k.geom.addr_of(page),
        message: msg,
    }
}

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
        .or_else(|| hit(EventKind::SplitFailed, false))
        .unwrap_or(fallback)
}

/// A huge PMD straddling a VMA boundary at `at`, if any.
pub fn straddling_huge_pmd(k: &Kernel, mm: usize, at: usize) -> Option<String> {
    let p = k.ptrs();
    if at % p == 0 || at >= k.pages() {
        return None;
    }
    let slot = at / p;
    if k.mms[mm].pmds[slot].is_huge() {
        return Some(format!(
            "the VMA boundary at {:#x} falls inside a huge PMD [{:#x}, {:#x}) that the failed split left in place",
            k.geom.addr_of(at),
            k.geom.addr_of(slot * p),
            k.geom.addr_of(slot * p + p)
        ));
    }
    None
}

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
struct Counter {
    epoch: u32,
    v: Vec<(u32, i64)>,
    touched: Vec<u32>,
}

impl Counter {
    fn reset(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        self.touched.clear();
    }
    fn add(&mut self, i: u32) {
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
    fn get(&self, i: u32) -> i64 {
        match self.v.get(i as usize) {
            Some(&(e, c)) if e == self.epoch => c,
            _ => 0,
        }
    }
    /// Ids counted in this epoch, in first-seen order (deterministic).
    fn keys(&self) -> impl Iterator<Item = &u32> {
        self.touched.iter()
    }
}

#[derive(Default)]
struct Scratch {
    installed: Counter,
    deposited: Counter,
    pmd_maps: Counter,
    pte_maps: Counter,
    pins: Counter,
    swap_refs: Counter,
}

fn check_state_with(k: &Kernel, func: &'static str, sc: &mut Scratch) -> Result<(), Violation> {
    let p = k.ptrs();
    let Scratch {
        installed,
        deposited,
        pmd_maps,
        pte_maps,
        pins,
        swap_refs,
    } = sc;
    for c in [
        &mut *installed,
        &mut *deposited,
        &mut *pmd_maps,
        &mut *pte_maps,
        &mut *pins,
        &mut *swap_refs,
    ] {
        c.reset();
    }
    let mut huge_zero_users = 0u32;

    for (mi, mm) in k.mms.iter().enumerate() {
        for pin in &mm.pins {
            pins.add(pin.folio);
        }
        if !mm.alive {
            continue;
        }
        if mm.huge_zero {
            huge_zero_users += 1;
        }
        let mut tables = 0i64;
        let mut rss = 0i64;
        let mut swapents = 0i64;
        let mut huge_per_pt = [0usize; 2];
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
                    return Err(v(
                        k,
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
                huge_per_pt[k.geom.pmd_table_of(slot)] += 1;
                if matches!(pmd, Pmd::HugeZero) && !mm.huge_zero {
                    return Err(v(
                        k,
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
                    rss += p as i64;
                    pmd_maps.add(folio);
                    let fo = &k.folios[folio as usize];
                    if fo.freed {
                        return Err(v(
                            k,
                            Invariant::FolioCounts,
                            func,
                            mi,
                            s,
                            format!("huge PMD maps freed folio {folio} (use after free)"),
                        ));
                    }
                    if write && !fo.anon_exclusive[0] {
                        return Err(v(
                            k,
                            Invariant::FolioCounts,
                            func,
                            mi,
                            s,
                            format!("writable huge PMD of folio {folio} without PageAnonExclusive"),
                        ));
                    }
                }
                Pmd::Migration { .. } => rss += p as i64,
                Pmd::Table(t) => {
                    tables += 1;
                    installed.add(t);
                    if !vma_cover {
                        return Err(v(k, Invariant::TableConservation, func, mi, s, format!("page table {t} left behind in a PMD with no VMA (free_pgtables should have freed it)")));
                    }
                    let tb = &k.tables[t as usize];
                    if tb.state == TableState::Freed {
                        return Err(v(
                            k,
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
                            return Err(v(
                                k,
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
                                rss += 1;
                                pte_maps.add(folio);
                                if k.folios[folio as usize].freed {
                                    return Err(v(
                                        k,
                                        Invariant::FolioCounts,
                                        func,
                                        mi,
                                        page,
                                        format!("PTE maps freed folio {folio} (use after free)"),
                                    ));
                                }
                                if write && !k.folios[folio as usize].anon_exclusive[idx as usize] {
                                    return Err(v(k, Invariant::FolioCounts, func, mi, page, format!("writable PTE of folio {folio} page {idx} without PageAnonExclusive")));
                                }
                            }
                            Pte::Migration { .. } => rss += 1,
                            Pte::Swap(sw) => {
                                swapents += 1;
                                swap_refs.add(sw);
                            }
                            Pte::None | Pte::Zero | Pte::Guard => {}
                        }
                    }
                }
            }
        }
        let mut dep = 0i64;
        for (pt, list) in mm.deposit.iter().enumerate() {
            dep += list.len() as i64;
            for &t in list {
                deposited.add(t);
                if k.tables[t as usize].state != TableState::Deposited {
                    return Err(v(
                        k,
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
                return Err(v(
                    k,
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
        if mm.nr_ptes != tables + dep {
            return Err(v(
                k,
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
        if mm.rss_anon != rss {
            return Err(v(
                k,
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
            return Err(v(
                k,
                Invariant::Rss,
                func,
                mi,
                0,
                format!("MM_SWAPENTS {} but {} swap PTEs", mm.rss_swap, swapents),
            ));
        }
    }
    for &t in &k.live_tables {
        let tb = &k.tables[t as usize];
        let i = installed.get(t);
        let d = deposited.get(t);
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
            return Err(v(k, Invariant::TableConservation, func, tb.mm, 0, msg));
        }
    }
    // Every referenced table is live (a freed one was caught above as use after free).
    if let Some(t) = installed
        .keys()
        .chain(deposited.keys())
        .find(|t| !k.live_tables.contains(t))
    {
        return Err(v(
            k,
            Invariant::TableConservation,
            func,
            0,
            0,
            format!("table {t} is referenced but was freed (use after free)"),
        ));
    }
    for &f in &k.live_folios {
        let fo = &k.folios[f as usize];
        let pm = pmd_maps.get(f);
        let tm = pte_maps.get(f);
        let pn = pins.get(f);
        if fo.freed {
            return Err(v(
                k,
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
            return Err(v(
                k,
                Invariant::FolioCounts,
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
            return Err(v(
                k,
                Invariant::FolioCounts,
                func,
                0,
                0,
                format!("folio {f} has no references but was never freed (leak)"),
            ));
        }
    }
    if let Some(f) = pins.keys().find(|f| !k.live_folios.contains(f)) {
        return Err(v(
            k,
            Invariant::FolioCounts,
            func,
            0,
            0,
            format!("pinned folio {f} was freed (use after free)"),
        ));
    }
    for &s in &k.live_swap {
        let r = swap_refs.get(s);
        if k.swap[s as usize].count as i64 != r {
            return Err(v(
                k,
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
    if let Some(s) = swap_refs.keys().find(|s| !k.live_swap.contains(s)) {
        return Err(v(
            k,
            Invariant::Rss,
            func,
            0,
            0,
            format!("swap PTE points at freed swap slot {s}"),
        ));
    }
    if k.huge_zero_refcount != 0 && k.huge_zero_refcount != 1 + huge_zero_users {
        return Err(v(
            k,
            Invariant::HugeZero,
            func,
            0,
            0,
            format!(
                "huge_zero_refcount {} but {} mms have MMF_HUGE_ZERO_FOLIO (+1 shrinker)",
                k.huge_zero_refcount, huge_zero_users
            ),
        ));
    }
    Ok(())
}

/// `check_mm()` at mm free: `Bad rss-counter state`, `non-zero pgtables_bytes`,
/// non-empty `pmd_huge_pte`, PMD entries left.
pub fn check_mm(k: &Kernel, mi: usize) -> Option<Violation> {
    let mm = &k.mms[mi];
    let msg = if mm.rss_anon != 0 || mm.rss_swap != 0 {
        format!(
            "BUG: Bad rss-counter state: MM_ANONPAGES {} MM_SWAPENTS {}",
            mm.rss_anon, mm.rss_swap
        )
    } else if mm.nr_ptes != 0 {
        format!(
            "BUG: non-zero pgtables_bytes on freeing mm: {}",
            mm.nr_ptes * 4096
        )
    } else if mm.deposit.iter().any(|d| !d.is_empty()) {
        "VM_BUG_ON_MM(mm->pmd_huge_pte): deposited tables left at mm free".into()
    } else if let Some(s) = mm.pmds.iter().position(|p| *p != Pmd::None) {
        format!("PMD slot {s} not cleared at exit: {:?}", mm.pmds[s])
    } else {
        return None;
    };
    Some(v(k, Invariant::CleanTeardown, "check_mm", mi, 0, msg))
}

/// After every mm has exited: all tables and folios freed, swap empty, huge zero
/// back to the shrinker's reference.
pub fn check_teardown(k: &Kernel) -> Result<(), Violation> {
    if let Some(mi) = k.mms.iter().position(|m| m.alive) {
        return Err(v(
            k,
            Invariant::CleanTeardown,
            "exit_mmap",
            mi,
            0,
            "mm still alive at teardown".into(),
        ));
    }
    if let Some(&t) = k.live_tables.first() {
        let tb = &k.tables[t as usize];
        return Err(v(
            k,
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
        return Err(v(
            k,
            Invariant::CleanTeardown,
            "exit_mmap",
            0,
            0,
            format!("folio {f} never freed (refcount {})", k.folios[f].refcount),
        ));
    }
    if let Some(s) = k.swap.iter().position(|s| s.count != 0) {
        return Err(v(
            k,
            Invariant::CleanTeardown,
            "exit_mmap",
            0,
            0,
            format!("swap slot {s} still referenced"),
        ));
    }
    if k.huge_zero_refcount > 1 {
        return Err(v(
            k,
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

pub use crate::check::reference::{observe, op_pages, tag, Expected, RefPage, Reference};

/// no-silent-skip: compare the model with the reference. A successful op must
/// have its whole effect; a failed one leaves each page old or new (or `alt`).
/// Returns the reference to carry on with.
pub fn check_reference(
    k: &Kernel,
    before: &Reference,
    exp: &Expected,
    ok: bool,
    func: &'static str,
    what: &str,
) -> Result<Reference, Violation> {
    let actual = observe(k);
    let nmm = actual.mms.len();
    let mut next = actual.clone();
    for mi in 0..nmm {
        let Some(a) = &actual.mms[mi] else { continue };
        let get = |r: &Reference| r.mms.get(mi).cloned().flatten();
        let cands: Vec<Vec<RefPage>> = if ok {
            get(&exp.success).into_iter().collect()
        } else {
            [
                get(before),
                get(&exp.success),
                exp.alt.as_ref().and_then(get),
            ]
            .into_iter()
            .flatten()
            .collect()
        };
        if cands.is_empty() {
            continue;
        }
        for (page, ap) in a.iter().enumerate() {
            // Fast path: a candidate is exactly what the model shows and no
            // candidate carries an "either" flag here, so the slow path would
            // leave `next` (a copy of `actual`) as it is.
            let plain = |c: &Vec<RefPage>| {
                let x = &c[page];
                !x.maybe_zero && !x.any_val && x.wp != 2
            };
            if cands[0][page] == *ap && cands.iter().all(plain) {
                continue;
            }
            let Some(_) = cands.iter().find(|c| c[page].accepts(ap)) else {
                let want = cands[0][page];
                let blame = attribute(k, mi, page, func);
                let msg = if ok {
                    format!(
                        "{what} returned success but the page {} (expected {})",
                        describe(ap),
                        describe(&want)
                    )
                } else {
                    format!(
                        "{what} failed and left the page {}, neither its old nor its new state",
                        describe(ap)
                    )
                };
                let mut viol = v(k, Invariant::NoSilentSkip, blame, mi, page, msg);
                if ap.mapped && ap.val == 0 && !ap.any_val && cands.iter().any(|c| !c[page].mapped)
                {
                    // A range that should be unmapped (after success, or in
                    // the state a failure may leave) stays mapped, empty: no
                    // data is lost or kept (it moved or was zapped), the VMA
                    // and its address range leak, and an access that must
                    // fault reads zero (mremap's unmap_source_vma(), also on
                    // the new range after a failed move).
                    viol.severity = Severity::Leak;
                    viol.message.push_str(
                        ": the range stays mapped and empty (a leaked VMA, no data lost)",
                    );
                }
                return Err(viol);
            };
            if let Some(n) = next.mms[mi].as_mut() {
                // Every acceptable state that allowed zero keeps allowing it.
                let mz = cands
                    .iter()
                    .any(|c| c[page].accepts(ap) && c[page].maybe_zero);
                n[page].maybe_zero = mz && ap.val != 0;
                n[page].any_val = cands.iter().any(|c| c[page].accepts(ap) && c[page].any_val);
                // Likewise an undecidable uffd-wp bit stays undecided (a lazyfree
                // page may still be discarded, dropping its bit).
                if cands.iter().any(|c| c[page].accepts(ap) && c[page].wp == 2) {
                    n[page].wp = 2;
                }
            }
        }
    }
    Ok(next)
}

fn describe(p: &RefPage) -> String {
    if !p.mapped {
        "is unmapped".into()
    } else {
        format!(
            "{} reads {:#x}{}{}",
            if p.write { "rw" } else { "ro" },
            p.val,
            if p.any_val {
                " (any value)"
            } else if p.maybe_zero {
                " (or 0)"
            } else {
                ""
            },
            match p.wp {
                1 => ", uffd-wp",
                2 => ", maybe uffd-wp",
                _ => "",
            }
        )
    }
}
