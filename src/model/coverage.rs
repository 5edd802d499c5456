//! Model coverage by name. The model records a branch with the `cov!` macro
//! (src/mm/mod.rs), which hashes the branch's name into a bitmap of
//! `COV_BITS` counters. build.rs collects every name used with the macro, so a
//! bitmap can be read back as a table: kernel function, branch, executions that
//! reached it, and the branches never reached.

use crate::model::mm::{fnv, COV_BITS};
use crate::model::policy::{Policy, Strategy};
use serde::{Deserialize, Serialize};

/// Every coverage point of the model, sorted (collected by build.rs).
pub const NAMES: &[&str] = include!(concat!(env!("OUT_DIR"), "/cov_names.rs"));

/// The bitmap slot of a coverage point.
pub fn slot(name: &str) -> usize {
    fnv(name) as usize % COV_BITS
}

/// The kernel function a coverage point belongs to: the part before the first
/// `:` (`zap_pmd_range:skip` → `zap_pmd_range`).
pub fn function_of(name: &str) -> &str {
    name.split(':').next().unwrap_or(name)
}

/// The names that share one bitmap slot (hash collisions); empty when every
/// name has a slot of its own.
pub fn collisions() -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    for (i, a) in NAMES.iter().enumerate() {
        for b in &NAMES[i + 1..] {
            if slot(a) == slot(b) {
                out.push((*a, *b));
            }
        }
    }
    out
}

/// Slots that are hit but belong to no known name (should be none: a test
/// checks it, so a coverage point build.rs failed to see is caught).
pub fn unnamed_slots(hits: &[u64]) -> Vec<usize> {
    let known: std::collections::BTreeSet<usize> = NAMES.iter().map(|n| slot(n)).collect();
    hits.iter()
        .enumerate()
        .filter(|(i, h)| **h > 0 && !known.contains(i))
        .map(|(i, _)| i)
        .collect()
}

/// One coverage point and how many executions reached it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Branch {
    pub name: String,
    pub hits: u64,
    /// Other names hashed to the same bitmap slot: the hits are those of the
    /// slot, so of any of them (the table says so instead of guessing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shares_slot_with: Vec<String>,
}

/// The named coverage of a campaign, in `NAMES` order.
pub fn table(hits: &[u64]) -> Vec<Branch> {
    NAMES
        .iter()
        .map(|n| Branch {
            name: n.to_string(),
            hits: hits.get(slot(n)).copied().unwrap_or(0),
            shares_slot_with: NAMES
                .iter()
                .filter(|m| *m != n && slot(m) == slot(n))
                .map(|m| m.to_string())
                .collect(),
        })
        .collect()
}

/// Per kernel function, sorted by name: (function, branches reached, branches,
/// sum of its branches' hits).
pub fn by_function(branches: &[Branch]) -> Vec<(String, usize, usize, u64)> {
    let mut m: std::collections::BTreeMap<&str, (usize, usize, u64)> = Default::default();
    for b in branches {
        let e = m.entry(function_of(&b.name)).or_default();
        e.0 += (b.hits > 0) as usize;
        e.1 += 1;
        e.2 += b.hits;
    }
    m.into_iter()
        .map(|(f, (r, n, h))| (f.to_string(), r, n, h))
        .collect()
}

/// Add one execution's bitmap to per-slot execution counts.
pub fn accumulate(hits: &mut [u64], cov: &[u8]) {
    for (h, c) in hits.iter_mut().zip(cov) {
        *h += (*c != 0) as u64;
    }
}

// ------------------------------------------------------------------ unreachable points

/// Why a coverage point cannot be reached by any program under `policy` (its
/// preset, deposit and per-caller strategies, overrides included), or None
/// when a program can reach it. Three kinds of reasons:
/// * the policy: a point on the path of a failed split needs a policy whose
///   split can fail (no deposit) and whose caller has the strategy the branch
///   is for; a deposit-only (or lazy-only) point needs that table handling;
/// * the model runs one op at a time: points the kernel reaches only when
///   another thread acts between two steps of one op (GUP-fast, khugepaged,
///   a concurrent split) — the model names them after the kernel's code but no
///   sequential program reaches them;
/// * the kernel version: a point of another kernel's code (the VM oracle can
///   run the model as that version; the fuzz campaigns run 7.2).
///
/// A campaign's "N of M reachable branches" counts only the others.
pub fn unreachable(name: &str, policy: &Policy) -> Option<&'static str> {
    use crate::model::policy::SplitCaller as C;
    let st = |c| policy.strategy(c);
    let lazy = !policy.deposit;
    let r = |dead: bool, why: &'static str| dead.then_some(why);
    match name {
        // A split that can fail: no deposit.
        "split_huge_pmd:enomem"
        | "split_huge_pmd_address:enomem"
        | "rmap_split:ret_false"
        | "collapse:free_old_table" => r(
            policy.deposit,
            "deposit: __split_huge_pmd() withdraws the deposited table and never fails (7.2 mm/huge_memory.c __split_huge_pmd_locked, pgtable_trans_huge_withdraw); collapse_huge_page() deposits the old table",
        ),
        "migrate:split_failed_enomem" => r(
            policy.deposit,
            "deposit: split_folio() of an unpinned folio fails only when try_to_migrate_one() cannot split a PMD (rmap_split:ret_false), which deposit never does",
        ),
        "collapse:deposit_old_table" | "move_huge_pmd:withdraw_deposit" | "split:withdraw" => r(
            lazy,
            "no deposit under this policy: there is no deposited table to keep, move or withdraw",
        ),
        "split_huge_pmd_address:not_huge" => r(
            !(lazy && policy.split_checks_pmd_first()),
            "only lazy-fixed's __split_huge_pmd() checks the PMD before allocating (the posted versions allocate first; deposit allocates nothing)",
        ),
        "shrink_folio:swpout_split_failed" => r(
            policy.deposit,
            "deposit: the swap-out fallback's split_folio() fails only when a PMD mapping cannot be split (rmap_split:ret_false), which deposit never does",
        ),
        // The v3 review's proposals (lazy-v4-proposed, or an --override).
        "zap_pmd_range:zero_in_place" | "zap_pmd_range:zero_huge_zero" => r(
            !(lazy && st(C::ZapPmdRange) == Strategy::Zero),
            "needs zap_pmd_range = zero (Kiryl Shutsemau on v3 05/24: lazy-v4-proposed)",
        ),
        "zap_pmd_range:zero_impossible" => r(
            !(lazy && st(C::ZapPmdRange) == Strategy::Zero && policy.pmd_swap_entries()),
            "needs zap_pmd_range = zero meeting a PMD swap entry (lazy-v4-proposed)",
        ),
        "zap_pmd_range:opt_in_error" => r(
            !(lazy && st(C::ZapPmdRange) == Strategy::OptIn),
            "needs zap_pmd_range = opt-in (Kiryl Shutsemau on v3 05/24; an --override)",
        ),
        "change_pmd_range:upfront_split" | "change_pmd_range:split_upfront_enomem" => r(
            !(lazy && st(C::ChangePmdRange) == Strategy::SplitUpfront),
            "needs change_pmd_range = split-upfront (Kiryl Shutsemau on v3 07/24: lazy-v4-proposed)",
        ),
        "copy_huge_pmd:swap"
        | "do_huge_pmd_swap_page:thp"
        | "do_huge_pmd_swap_page:fallback_split"
        | "madvise_free_huge_pmd:swap_entry"
        | "move_pages_huge_pmd:swap"
        | "set_pmd_swap_entry"
        | "set_pmd_swap_entry:pinned"
        | "split:pmd_swap_entry"
        | "zap_huge_pmd:swap" => r(
            !policy.pmd_swap_entries(),
            "needs PMD-level swap entries (the PMD swap series, GUESS from its cover letter: lazy-v4-proposed); 7.2 swaps a THP out as PTE swap entries",
        ),
        // The strategy of one caller.
        "zap_pmd_range:skip" => r(
            !(lazy && st(C::ZapPmdRange) == Strategy::Skip),
            "needs a failed split with zap_pmd_range = skip (lazy-v2, lazy-v3: v2/v3 05)",
        ),
        "madvise:restart_syscall" => r(
            !(lazy && matches!(st(C::ZapPmdRange), Strategy::Skip | Strategy::Zero)),
            "MADV_GUARD_INSTALL restarts only when its zap left a PMD it could not split in place (zap_pmd_range = skip: lazy-v2, lazy-v3; zero: lazy-v4-proposed)",
        ),
        "zap_pmd_range:loop" => r(
            !(lazy && st(C::ZapPmdRange) == Strategy::Proceed),
            "needs a void split in zap_pmd_range (strategy proceed: lazy-v1)",
        ),
        "move_pages:loop" => r(
            !(lazy && st(C::MovePages) == Strategy::Proceed),
            "needs a void split in move_pages (strategy proceed: lazy-v1)",
        ),
        "pagemap_scan_pmd_entry:again" => r(
            !(lazy && st(C::PagemapScanThpEntry) == Strategy::Proceed),
            "needs a void split in pagemap_scan_thp_entry (strategy proceed: lazy-v1, lazy-v2)",
        ),
        "rmap_split:crash" => r(
            !(lazy
                && (st(C::TryToUnmapOne) == Strategy::Proceed
                    || st(C::TryToMigrateOne) == Strategy::Proceed)),
            "needs try_to_unmap_one or try_to_migrate_one = proceed: no preset (every version returns false, v2 14 / v3 17); --override try_to_unmap_one=proceed reaches it",
        ),
        "unmap_source_vma:split_failed" => r(
            !(lazy
                && st(C::UnmapSourceVma) != Strategy::Error
                && st(C::VmaAdjustTransHuge) == Strategy::Error),
            "needs the source unmap's VMA split to fail (vma_adjust_trans_huge = error) and mremap not to split the source first (unmap_source_vma != error): lazy-v2, lazy-v3",
        ),
        "split_folio:unmap_failed" => r(
            policy.deposit,
            "deposit: try_to_migrate_one() then fails only on a pinned page (7.2 mm/rmap.c, folio_try_share_anon_rmap_pte()), and split_folio() stops at a pinned folio before the unmap (__folio_split()'s refcount check); without a deposit the frozen PMD split can fail",
        ),
        "unmap_source_vma:revert_split_failed" => r(
            !(lazy
                && st(C::VmaAdjustTransHuge) == Strategy::Error
                && !policy.split_checks_pmd_first()),
            "needs the new range's unmap after a short move to fail: a VMA split of the moved-to VMA that allocates with no huge PMD there (vma_adjust_trans_huge = error and __split_huge_pmd() allocating before it looks, v2/v3 17): lazy-v2, lazy-v3",
        ),
        // The model runs one op at a time.
        "handle_pte_fault:huge_retry" => Some(
            "sequential model: handle_pte_fault() is reached after a huge PMD only through VM_FAULT_FALLBACK, which the model returns only after a split that left a table (a void split returns a retry first); in 7.2 mm/memory.c handle_pte_fault() meets a huge PMD when another thread re-installs one after the fallback (e.g. a concurrent THP fault or collapse)",
        ),
        "copy_pte_range:skip_huge_src" => Some(
            "sequential model: copy_pmd_range() (model fork.rs) reports a still-huge source as pmd_none_or_clear_bad() before calling copy_pte_range(), so copy_pte_range() never sees it; in 7.2 mm/memory.c copy_pte_range() sees a huge source only when it became huge after copy_pmd_range()'s check (a concurrent fault or collapse)",
        ),
        "split:migration" => Some(
            "sequential model: a PMD migration entry lives only inside one migrate op (try_to_migrate_one() to remove_migration_pmd()), and no split runs in between; in 7.2 __split_huge_pmd_locked() meets one when a concurrent munmap/mprotect splits a THP being migrated",
        ),
        "try_to_unmap_one:pinned"
        | "try_to_unmap_one:lazyfree_extra_ref"
        | "try_to_unmap_one:lazyfree_pte_extra_ref" => Some(
            "sequential model: the only extra folio reference is a pin, and shrink_folio_list() keeps a maybe-pinned folio before try_to_unmap() (model rmap.rs shrink_folio: folio_maybe_dma_pinned); in 7.2 mm/rmap.c a GUP-fast pin or a speculative reference taken during the walk reaches these",
        ),
        "try_to_migrate_one:pinned" => Some(
            "sequential model: migrate_pages() and split_folio() both stop at a pinned folio before try_to_migrate() (model rmap.rs migrate_folio, split_folio: can_split_folio); in 7.2 mm/rmap.c a GUP-fast pin taken during the walk reaches it",
        ),
        // The kernel version.
        "madvise_collapse:inside_one_pmd" => Some(
            "6.18 only: 7.2 mm/khugepaged.c madvise_collapse() returns 0 when hstart >= hend, before the wrap this point models; the fuzz campaigns run the 7.2 model",
        ),
        _ => None,
    }
}

/// The coverage points `policy` can reach (every name minus [`unreachable`]).
pub fn reachable(policy: &Policy) -> Vec<&'static str> {
    NAMES
        .iter()
        .copied()
        .filter(|n| unreachable(n, policy).is_none())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::policy::Preset;

    #[test]
    fn every_unreachable_point_is_a_coverage_point() {
        // A renamed point would silently drop out of the table: each name the
        // table knows must exist, and be unreachable under some preset.
        let listed = [
            "split_huge_pmd:enomem",
            "split_huge_pmd_address:enomem",
            "rmap_split:ret_false",
            "collapse:free_old_table",
            "migrate:split_failed_enomem",
            "collapse:deposit_old_table",
            "move_huge_pmd:withdraw_deposit",
            "split:withdraw",
            "split_huge_pmd_address:not_huge",
            "zap_pmd_range:skip",
            "madvise:restart_syscall",
            "zap_pmd_range:loop",
            "move_pages:loop",
            "pagemap_scan_pmd_entry:again",
            "rmap_split:crash",
            "unmap_source_vma:split_failed",
            "unmap_source_vma:revert_split_failed",
            "split_folio:unmap_failed",
            "handle_pte_fault:huge_retry",
            "copy_pte_range:skip_huge_src",
            "split:migration",
            "try_to_unmap_one:pinned",
            "try_to_unmap_one:lazyfree_extra_ref",
            "try_to_unmap_one:lazyfree_pte_extra_ref",
            "try_to_migrate_one:pinned",
            "madvise_collapse:inside_one_pmd",
            "shrink_folio:swpout_split_failed",
            "zap_pmd_range:zero_in_place",
            "zap_pmd_range:zero_huge_zero",
            "zap_pmd_range:zero_impossible",
            "zap_pmd_range:opt_in_error",
            "change_pmd_range:upfront_split",
            "change_pmd_range:split_upfront_enomem",
            "copy_huge_pmd:swap",
            "do_huge_pmd_swap_page:thp",
            "do_huge_pmd_swap_page:fallback_split",
            "madvise_free_huge_pmd:swap_entry",
            "move_pages_huge_pmd:swap",
            "set_pmd_swap_entry",
            "set_pmd_swap_entry:pinned",
            "split:pmd_swap_entry",
            "zap_huge_pmd:swap",
        ];
        for n in listed {
            assert!(NAMES.contains(&n), "{n} is not a coverage point");
            assert!(
                Preset::ALL
                    .iter()
                    .any(|p| unreachable(n, &Policy::preset(*p)).is_some()),
                "{n}"
            );
        }
        let dead_somewhere = NAMES
            .iter()
            .filter(|n| {
                Preset::ALL
                    .iter()
                    .any(|p| unreachable(n, &Policy::preset(*p)).is_some())
            })
            .count();
        assert_eq!(dead_somewhere, listed.len());
    }

    #[test]
    fn the_policy_decides_what_a_failed_split_reaches() {
        let dep = Policy::preset(Preset::Deposit);
        let v1 = Policy::preset(Preset::LazyV1);
        let v3 = Policy::preset(Preset::LazyV3);
        assert!(unreachable("split_huge_pmd:enomem", &dep).is_some());
        assert!(unreachable("split_huge_pmd:enomem", &v3).is_none());
        assert!(unreachable("zap_pmd_range:loop", &v1).is_none());
        assert!(unreachable("zap_pmd_range:loop", &v3).is_some());
        assert!(unreachable("zap_pmd_range:skip", &v3).is_none());
        assert!(unreachable("move_pages_huge_pmd", &dep).is_none());
        // An override moves a point from dead to reachable.
        let mut o = Policy::preset(Preset::LazyV3);
        o.apply_override("try_to_unmap_one=proceed").unwrap();
        assert!(unreachable("rmap_split:crash", &v3).is_some());
        assert!(unreachable("rmap_split:crash", &o).is_none());
        assert!(reachable(&dep).len() < NAMES.len());
    }
}
