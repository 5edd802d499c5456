//! The v3 review's proposals as strategies (zap_pmd_range=zero/opt-in,
//! change_pmd_range=split-upfront) and lazy-v4-proposed's PMD swap entries:
//! state-level checks the `expect` lines of tests/programs/lazy-v4-proposed/
//! cannot make.

use splitfuzz::model::alloc::AllocKind;
use splitfuzz::model::mm::{Kernel, Pmd};
use splitfuzz::run::{self, RunConfig};
use splitfuzz::{Geometry, Policy, Preset, Program};

/// Run `text` (no teardown) under `preset` plus `overrides`; the results and the kernel.
fn state(text: &str, preset: Preset, overrides: &[&str]) -> (Vec<run::OpResult>, Kernel) {
    let prog = Program::parse(text).unwrap();
    let mut pol = Policy::preset(preset);
    for o in overrides {
        pol.apply_override(o).unwrap();
    }
    let cfg = RunConfig::new(pol, Geometry::SMALL);
    let mut k = run::build(&prog, &cfg);
    let mut results = Vec::new();
    let v = run::run_on(&mut k, &prog, &mut results, &mut |_, _, _| {}, false);
    assert!(v.is_none(), "{v:?}");
    (results, k)
}

/// Two THPs, uffd-wp on [1M, 3M): two partly covered huge PMDs. The first
/// split gets its table, the second does not.
const WP_TWO_PARTIAL: &str = "fail pte_alloc nth=2\nmmap 0 4M thp\ntouch 0 4M write\n\
                              uffd-register 0 4M\nuffd-wp 1M 2M on\n";

#[test]
fn split_upfront_fails_with_nothing_changed_where_error_changed_half() {
    let page = |k: &Kernel, a: u64| k.geom.page_of(a, false);
    // `error` (v3's 07 replaced by a plain -ENOMEM): the first PMD's pages
    // are write-protected before the second split fails.
    let (r, k) = state(WP_TWO_PARTIAL, Preset::LazyV3, &["change_pmd_range=error"]);
    assert_eq!(r[3].name(), "ENOMEM");
    assert!(
        k.mms[0].uffd_wp[page(&k, 1 << 20)],
        "error: first PMD changed"
    );
    // split-upfront: both splits come first; the failure leaves every
    // uffd-wp bit as it was.
    let (r, k) = state(
        WP_TWO_PARTIAL,
        Preset::LazyV3,
        &["change_pmd_range=split-upfront"],
    );
    assert_eq!(r[3].name(), "ENOMEM");
    assert!(
        k.mms[0].uffd_wp.iter().all(|b| !b),
        "split-upfront changed a page"
    );
    // With tables it does the whole change.
    let ok = WP_TWO_PARTIAL.replace("fail pte_alloc nth=2\n", "");
    let (r, k) = state(&ok, Preset::LazyV3, &["change_pmd_range=split-upfront"]);
    assert_eq!(r[3].name(), "ok");
    let wp = |a: u64| k.mms[0].uffd_wp[k.geom.page_of(a, false)];
    assert!(wp(1 << 20) && wp((3 << 20) - 1) && !wp(3 << 20) && !wp((1 << 20) - 1));
}

#[test]
fn zero_keeps_the_thp_mapped_and_rss_while_the_range_reads_zero() {
    let text = "fail pte_alloc nth=1\nmmap 0 2M thp\ntouch 0 2M write\nmadvise 0 1M dontneed\n";
    let (r, k) = state(text, Preset::LazyV4Proposed, &[]);
    assert_eq!(r[2].name(), "ok");
    assert!(matches!(k.mms[0].pmds[0], Pmd::Huge { .. }));
    assert_eq!(k.mms[0].rss_anon, k.ptrs() as i64, "RSS not dropped");
    let half = k.ptrs() / 2;
    assert!((0..half).all(|p| k.page_value(0, p) == 0));
    assert!((half..k.ptrs()).all(|p| k.page_value(0, p) != 0));
    // Under opt-in the same call fails and keeps the data.
    let (r, k) = state(text, Preset::LazyV3, &["zap_pmd_range=opt-in"]);
    assert_eq!(r[2].name(), "ENOMEM");
    assert!((0..k.ptrs()).all(|p| k.page_value(0, p) != 0));
}

const SHARED_THP_RECLAIM: &str = "fail pte_alloc from=1\nmmap 0 2M thp\ntouch 0 2M write\n\
                                  fork\nfork\nreclaim 0\n";

#[test]
fn pmd_swap_entries_reclaim_a_shared_thp_without_a_table() {
    // lazy-v4-proposed with a cluster: every mm gets a PMD swap entry, no
    // pte_alloc_one() at all, the data is in swap.
    let (_, k) = state(SHARED_THP_RECLAIM, Preset::LazyV4Proposed, &[]);
    assert_eq!(k.alloc.calls(AllocKind::PteTable), 0);
    assert_eq!(k.alloc.calls(AllocKind::SwapCluster), 1);
    for m in 0..3 {
        assert!(matches!(k.mms[m].pmds[0], Pmd::Swap { .. }), "mm {m}");
        assert_eq!(k.mms[m].rss_swap, k.ptrs() as i64);
        assert!((0..k.ptrs()).all(|p| k.page_value(m, p) != 0));
    }
    assert!(k.live_folios.is_empty(), "the THP was freed");
    // v3: the first rmap-walk allocation fails, the folio stays mapped.
    let (_, k) = state(SHARED_THP_RECLAIM, Preset::LazyV3, &[]);
    assert!(matches!(k.mms[0].pmds[0], Pmd::Huge { .. }));
    // Contiguous swap exhausted: lazy-v4-proposed is v3 again (7.2's
    // split_folio fallback, whose rmap walk cannot get a table).
    let ex = format!("fail swap-cluster from=1\n{SHARED_THP_RECLAIM}");
    let (_, k) = state(&ex, Preset::LazyV4Proposed, &[]);
    assert!(matches!(k.mms[0].pmds[0], Pmd::Huge { .. }));
    assert!(k.alloc.calls(AllocKind::PteTable) >= 1);
}

#[test]
fn exhausted_swap_clusters_split_the_thp_first_under_every_preset() {
    // With tables available, 7.2's fallback splits the folio and swaps its
    // pages: PTE swap entries, under deposit and lazy alike.
    let text = "fail swap-cluster nth=1\nmmap 0 2M thp\ntouch 0 2M write\nreclaim 0\n";
    for preset in [Preset::Deposit, Preset::LazyV3, Preset::LazyV4Proposed] {
        let (_, k) = state(text, preset, &[]);
        assert!(
            matches!(k.mms[0].pmds[0], Pmd::Table(_)),
            "{}",
            preset.name()
        );
        assert_eq!(k.mms[0].rss_swap, k.ptrs() as i64, "{}", preset.name());
    }
}

#[test]
fn bad_overrides_of_the_proposed_strategies_are_one_line_errors() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_splitfuzz"))
        .args([
            "run",
            "--override",
            "copy_huge_pmd=zero",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/programs/lazy-v4-proposed/zap-zero-fork-shared.txt"
            ),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("applies only to zap_pmd_range"), "{err}");
}

#[test]
fn hughs_number_in_both_swap_states() {
    use splitfuzz::diff::{maximize_with, reclaim_demand, MaxTarget, SwapClusters};
    // A THP PMD-mapped in 3 mms; the 3rd table allocation fails.
    let text = "fail pte_alloc nth=3\nmmap 0 2M thp\ntouch 0 2M write\nfork\nfork\nreclaim 0\n";
    let kept = |preset: Preset, swap: SwapClusters| {
        let mut p = Program::parse(text).unwrap();
        swap.apply(&mut p);
        let d = reclaim_demand(&p, &RunConfig::new(Policy::preset(preset), Geometry::SMALL));
        d.get(MaxTarget::KeptTables)
    };
    for swap in [SwapClusters::Available, SwapClusters::Exhausted] {
        assert_eq!(kept(Preset::Deposit, swap), 0);
        assert_eq!(kept(Preset::LazyV3, swap), 2, "{swap:?}");
    }
    assert_eq!(kept(Preset::LazyV4Proposed, SwapClusters::Available), 0);
    assert_eq!(kept(Preset::LazyV4Proposed, SwapClusters::Exhausted), 2);
    // The search reaches the model's bound under v3 and stays at 0 with
    // PMD swap entries and a cluster; deterministic for a seed.
    let m = |preset, swap| {
        maximize_with(
            &Policy::preset(preset),
            Geometry::SMALL,
            12_000,
            // Seeds 2 and 3 reach the bound within 12,000 runs with the shared
            // mutator (seed 3 at run 2,789); seed 1 stays at 1 for 30,000.
            3,
            MaxTarget::KeptTables,
            swap,
        )
    };
    let v3 = m(Preset::LazyV3, SwapClusters::Available);
    assert_eq!(v3.best, splitfuzz::diff::kept_bound());
    assert_eq!(
        v3.program,
        m(Preset::LazyV3, SwapClusters::Available).program
    );
    assert_eq!(m(Preset::LazyV4Proposed, SwapClusters::Available).best, 0);
}
