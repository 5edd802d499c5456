//! The memcg trigger's model side (src/memcg.rs): which ops a plan puts at the
//! cgroup's limit, what the model predicts there, and which plans a limit
//! cannot express. (tests/vm.rs runs them in the guest.)

use splitfuzz::model::alloc::AllocKind;
use splitfuzz::observe::memcg::{self, charged};
use splitfuzz::{Policy, Preset, Program};

const LINUX: (u32, u32) = (7, 2);

fn load(path: &str) -> (Program, Policy) {
    let text = std::fs::read_to_string(path).unwrap();
    from_text(&text)
}

fn from_text(text: &str) -> (Program, Policy) {
    let p = Program::parse(text).unwrap();
    let pol = Policy::preset(Preset::from_name(p.policy.as_deref().unwrap_or("deposit")).unwrap());
    (p, pol)
}

#[test]
fn charged_sites() {
    assert!(charged(AllocKind::PteTable, "__split_huge_pmd"));
    assert!(charged(AllocKind::Thp, "vma_alloc_anon_folio_pmd"));
    assert!(charged(AllocKind::Thp, "collapse_huge_page"));
    assert!(!charged(AllocKind::Thp, "get_huge_zero_folio"));
    assert!(!charged(AllocKind::Thp, "alloc_migration_target"));
}

#[test]
fn madv_dontneed_retention_is_one_limited_op_that_fails_exactly_the_plan() {
    let (p, pol) = load("crashes/lazy-v3/no-silent-skip-zap_pmd_range.txt");
    let r = memcg::realise(&p, &pol, LINUX);
    assert_eq!(r.limited, vec![2]);
    assert!(r.differs.is_empty(), "{:?}", r.differs);
    assert!(r.inexpressible.is_empty(), "{:?}", r.inexpressible);
    assert_eq!(r.keeps_finding(), Some(true));
    assert!(r
        .summary()
        .contains("fails exactly the planned allocations"));
    // Nothing to free in that op beyond the margin.
    assert_eq!(r.limits(), vec![(2, 16)]);
}

#[test]
fn a_guard_install_that_zaps_small_pages_first_gets_their_slack() {
    let (p, pol) = load("crashes/lazy-v3/no-livelock-madvise_guard_install.txt");
    let r = memcg::realise(&p, &pol, LINUX);
    assert_eq!(r.limited, vec![2]);
    assert!(r.inexpressible.is_empty(), "{:?}", r.inexpressible);
    let (op, slack) = r.limits()[0];
    assert_eq!(op, 2);
    // The zap frees the 448 small pages before the THP's split fails.
    assert!(slack >= 448 + 16, "slack {slack}");
}

#[test]
fn mremap_copy_vma_charge_is_not_expressible() {
    let (p, pol) = load("crashes/lazy-v3/no-silent-skip-unmap_source_vma.txt");
    let r = memcg::realise(&p, &pol, LINUX);
    assert_eq!(r.limited, vec![3]);
    assert!(
        r.inexpressible.iter().any(|w| w.contains("copy_vma")),
        "{:?}",
        r.inexpressible
    );
}

#[test]
fn a_limit_cannot_fail_only_the_second_split_of_an_op() {
    let (p, pol) = from_text(
        "policy lazy-v3\nfail pte_alloc nth=2\nmmap 0 8M thp\ntouch 0 8M write\nmadvise 1M 4M dontneed\n",
    );
    let r = memcg::realise(&p, &pol, LINUX);
    assert_eq!(r.limited, vec![2]);
    assert_eq!(r.differs.len(), 1, "{:?}", r.differs);
    let d = &r.differs[0];
    assert!(d.contains("plan fails pte_alloc #2"), "{d}");
    assert!(d.contains("the limit pte_alloc #1"), "{d}");
}

#[test]
fn a_thp_charge_failure_takes_the_fallback_table_with_it() {
    let (p, pol) = load("tests/programs/deposit/memcg-thp-charge.txt");
    let r = memcg::realise(&p, &pol, LINUX);
    assert_eq!(r.limited, vec![2]);
    assert!(r.inexpressible.is_empty(), "{:?}", r.inexpressible);
    assert!(r.differs[0].contains("__pte_alloc"), "{:?}", r.differs);
    assert_eq!(r.planned.run.t.results[2].as_deref(), Some("ok"));
    assert_eq!(r.realised.run.t.results[2].as_deref(), Some("oom-loop"));
}

#[test]
fn the_huge_zero_folio_is_not_charged() {
    let (p, pol) = load("tests/programs/deposit/memcg-huge-zero-table.txt");
    let r = memcg::realise(&p, &pol, LINUX);
    assert_eq!(r.limited, vec![2]);
    assert!(r.differs.is_empty(), "{:?}", r.differs);
    assert!(r.inexpressible.is_empty(), "{:?}", r.inexpressible);
    assert_eq!(r.realised.run.t.results[2].as_deref(), Some("oom-loop"));
}

#[test]
fn uncounted_charges_in_a_limited_op_make_it_inexpressible() {
    // every-op: the first THP fault also creates the VMA's anon_vma.
    let (p, pol) = load("tests/programs/deposit/every-op.txt");
    let r = memcg::realise(&p, &pol, LINUX);
    assert!(
        r.inexpressible
            .iter()
            .any(|w| w.contains("anon_vma_prepare")),
        "{:?}",
        r.inexpressible
    );
    // sustained-oom: fork is limited and copy_process charges slab.
    let (p, pol) = load("tests/programs/deposit/sustained-oom.txt");
    let r = memcg::realise(&p, &pol, LINUX);
    assert!(
        r.inexpressible.iter().any(|w| w.contains("copy_process")),
        "{:?}",
        r.inexpressible
    );
}

#[test]
fn no_plan_no_limit() {
    let (p, pol) = load("tests/programs/deposit/uffd-wp.txt");
    let r = memcg::realise(&p, &pol, LINUX);
    assert!(r.limited.is_empty() && r.summary().is_empty());
}

#[test]
fn a_limited_reclaim_is_not_expressible() {
    // The limit sets memory.swap.max to 0: a limited op cannot swap out.
    let (p, pol) = load("tests/programs/lazy-v3/caller-try_to_unmap_one.txt");
    let r = memcg::realise(&p, &pol, LINUX);
    assert!(!r.limited.is_empty());
    assert!(
        r.inexpressible
            .iter()
            .any(|w| w.contains("memory.swap.max is 0")),
        "{:?}",
        r.inexpressible
    );
}
