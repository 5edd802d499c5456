//! Unit tests per kernel path: run a few ops, look at the exact state.

use splitfuzz::exec::{self, RunConfig};
use splitfuzz::invariants::check_state;
use splitfuzz::mm::{Kernel, Pmd, Pte};
use splitfuzz::{Geometry, Policy, Preset, Program};

fn run_ops(text: &str, preset: Preset, geom: Geometry) -> Kernel {
    let prog = Program::parse(text).unwrap();
    let mut k = exec::build(&prog, &RunConfig::new(Policy::preset(preset), geom));
    let v = exec::run_on(&mut k, &prog, &mut Vec::new(), &mut |_, _, _| {}, false);
    assert!(v.is_none(), "{v:?}");
    check_state(&k, "test").unwrap();
    k
}

fn both(text: &str, preset: Preset, f: impl Fn(&Kernel)) {
    f(&run_ops(text, preset, Geometry::SMALL));
    f(&run_ops(text, preset, Geometry::KERNEL));
}

#[test]
fn do_huge_pmd_anonymous_page_deposits_only_under_deposit() {
    both("mmap 0 4M thp\ntouch 0 4K write\n", Preset::Deposit, |k| {
        assert!(matches!(k.mms[0].pmds[0], Pmd::Huge { write: true, .. }));
        assert_eq!((k.mms[0].nr_ptes, k.mms[0].deposit[0].len()), (1, 1));
        assert_eq!(k.mms[0].rss_anon, k.ptrs() as i64);
    });
    both("mmap 0 4M thp\ntouch 0 4K write\n", Preset::LazyV3, |k| {
        assert_eq!((k.mms[0].nr_ptes, k.mms[0].deposit[0].len()), (0, 0));
    });
}

#[test]
fn huge_zero_read_fault_takes_one_mm_reference() {
    both("mmap 0 4M thp\ntouch 0 4M read\n", Preset::Deposit, |k| {
        assert_eq!(k.mms[0].pmds[0], Pmd::HugeZero);
        assert_eq!(k.mms[0].pmds[1], Pmd::HugeZero);
        assert_eq!(k.huge_zero_refcount, 2);
        assert_eq!(k.mms[0].nr_ptes, 2);
        assert_eq!(k.mms[0].rss_anon, 0);
    });
}

#[test]
fn partial_dontneed_splits_then_zaps() {
    for preset in [Preset::Deposit, Preset::LazyFixed] {
        both(
            "mmap 0 4M thp\ntouch 0 2M write\nmadvise 0 1M dontneed\n",
            preset,
            |k| {
                let Pmd::Table(t) = k.mms[0].pmds[0] else {
                    panic!("{:?}", k.mms[0].pmds[0])
                };
                let half = k.ptrs() / 2;
                assert!(k.tables[t as usize].ptes[..half]
                    .iter()
                    .all(|p| *p == Pte::None));
                assert!(k.tables[t as usize].ptes[half..]
                    .iter()
                    .all(|p| matches!(p, Pte::Present { .. })));
                assert_eq!(k.mms[0].nr_ptes, 1);
                assert_eq!(k.mms[0].rss_anon, half as i64);
                assert_eq!(k.stats.thp_split_pmd, 1);
            },
        );
    }
}

#[test]
fn lazy_fixed_dontneed_returns_enomem_and_keeps_data() {
    let prog = Program::parse(
        "fail pte_alloc from=1\nmmap 0 4M thp\ntouch 0 2M write\nmadvise 0 1M dontneed\n",
    )
    .unwrap();
    let out = exec::run(
        &prog,
        &RunConfig::new(Policy::preset(Preset::LazyFixed), Geometry::SMALL),
    );
    assert!(out.violation.is_none());
    assert_eq!(
        out.results[2],
        exec::OpResult::Err(splitfuzz::mm::Errno::ENOMEM)
    );
    assert_eq!(out.stats.thp_split_pmd_failed, 1);
}

#[test]
fn fork_shares_the_thp_and_cow_copies_4k() {
    both(
        "mmap 0 4M thp\ntouch 0 2M write\nfork\n",
        Preset::Deposit,
        |k| {
            let Pmd::Huge { folio, write, .. } = k.mms[1].pmds[0] else {
                panic!()
            };
            assert!(!write);
            let f = &k.folios[folio as usize];
            assert_eq!((f.refcount, f.entire_mapcount), (2, 2));
            assert!(!f.anon_exclusive[0]);
            assert_eq!(k.mms[1].nr_ptes, 1);
        },
    );
    both(
        "mmap 0 4M thp\ntouch 0 2M write\nfork\ntouch 0 4K write\n",
        Preset::LazyFixed,
        |k| {
            // The parent's PMD was split, one 4K page copied; the child keeps the PMD.
            assert!(matches!(k.mms[0].pmds[0], Pmd::Table(_)));
            assert!(matches!(k.mms[1].pmds[0], Pmd::Huge { .. }));
            assert_eq!(k.mms[0].rss_anon, k.ptrs() as i64);
        },
    );
}

#[test]
fn fork_of_pinned_thp_copies_pinned_pages() {
    both(
        "mmap 0 4M thp\ntouch 0 2M write\npin 0 256K\nfork\n",
        Preset::Deposit,
        |k| {
            assert!(
                matches!(k.mms[0].pmds[0], Pmd::Table(_)),
                "copy_huge_pmd splits the pinned source"
            );
            assert!(matches!(k.mms[1].pmds[0], Pmd::Table(_)));
            let Pmd::Table(t) = k.mms[1].pmds[0] else {
                panic!()
            };
            let Pte::Present { folio, .. } = k.tables[t as usize].ptes[0] else {
                panic!()
            };
            assert_eq!(k.folios[folio as usize].nr, 1, "the child got its own copy");
        },
    );
}

#[test]
fn collapse_deposits_or_frees_the_old_table() {
    let text = "mmap 0 4M thp\ntouch 0 4M read\nmadvise 0 1M dontneed\ntouch 0 2M write\nmadvise 0 2M collapse\n";
    both(text, Preset::Deposit, |k| {
        assert!(matches!(k.mms[0].pmds[0], Pmd::Huge { .. }));
        assert_eq!(k.mms[0].deposit[0].len(), 2);
        assert_eq!(k.mms[0].nr_ptes, 2);
    });
    both(text, Preset::LazyV3, |k| {
        assert!(matches!(k.mms[0].pmds[0], Pmd::Huge { .. }));
        assert_eq!(k.mms[0].nr_ptes, 0);
    });
}

#[test]
fn mremap_moves_the_deposit_between_pmd_tables() {
    both(
        "mmap 0 4M thp\ntouch 0 2M write\nmremap 0 2M 20M\n",
        Preset::Deposit,
        |k| {
            assert!(matches!(k.mms[0].pmds[10], Pmd::Huge { .. }));
            assert_eq!(k.mms[0].pmds[0], Pmd::None);
            assert_eq!(
                (k.mms[0].deposit[0].len(), k.mms[0].deposit[1].len()),
                (0, 1)
            );
        },
    );
}

#[test]
fn reclaim_swaps_out_and_faults_back() {
    both(
        "mmap 0 4M thp\ntouch 0 2M write\nreclaim 0\n",
        Preset::Deposit,
        |k| {
            assert_eq!(k.mms[0].rss_swap, k.ptrs() as i64);
            assert_eq!(k.mms[0].rss_anon, 0);
        },
    );
    // Contents survive swap-out and swap-in (checked by the reference model).
    both(
        "mmap 0 4M thp\ntouch 0 2M write\nreclaim 0\ntouch 0 2M read\n",
        Preset::LazyFixed,
        |k| {
            assert_eq!(k.mms[0].rss_swap, 0);
        },
    );
}

#[test]
fn lazy_v3_reclaim_keeps_the_folio_when_the_split_fails() {
    both(
        "fail pte_alloc nth=1\nmmap 0 4M thp\ntouch 0 2M write\nreclaim 0\n",
        Preset::LazyV3,
        |k| {
            assert!(matches!(k.mms[0].pmds[0], Pmd::Huge { .. }));
            assert_eq!(k.stats.thp_split_pmd_failed, 1);
        },
    );
}

#[test]
fn migrate_whole_or_split() {
    both(
        "mmap 0 4M thp\ntouch 0 2M write\nmigrate 0\n",
        Preset::Deposit,
        |k| {
            assert!(matches!(k.mms[0].pmds[0], Pmd::Huge { folio, .. } if folio == 1));
        },
    );
    both(
        "fail thp nth=2\nmmap 0 4M thp\ntouch 0 2M write\nmigrate 0\n",
        Preset::Deposit,
        |k| {
            assert!(
                matches!(k.mms[0].pmds[0], Pmd::Table(_)),
                "no THP target: split, migrate 4K pages"
            );
        },
    );
}

#[test]
fn walk_splits_every_huge_pmd() {
    both(
        "mmap 0 4M thp\ntouch 0 4M write\nwalk 0 4M\n",
        Preset::LazyFixed,
        |k| {
            assert!(matches!(k.mms[0].pmds[0], Pmd::Table(_)));
            assert!(matches!(k.mms[0].pmds[1], Pmd::Table(_)));
            assert_eq!(k.mms[0].nr_ptes, 2);
        },
    );
}

#[test]
fn mprotect_partial_splits_vma_and_pmd() {
    both(
        "mmap 0 4M thp\ntouch 0 2M write\nmprotect 1M 1M r\n",
        Preset::Deposit,
        |k| {
            assert_eq!(k.mms[0].vmas.len(), 3);
            assert!(matches!(k.mms[0].pmds[0], Pmd::Table(_)));
        },
    );
}

#[test]
fn madvise_free_then_reclaim_discards() {
    both(
        "mmap 0 4M thp\ntouch 0 2M write\nmadvise 0 2M free\nreclaim 0\n",
        Preset::Deposit,
        |k| {
            assert_eq!(
                k.mms[0].pmds[0],
                Pmd::None,
                "__discard_anon_folio_pmd_locked"
            );
            assert_eq!(k.mms[0].nr_ptes, 0);
        },
    );
}

#[test]
fn uffd_wp_on_part_of_a_thp_splits_and_protects() {
    both(
        "mmap 0 4M thp\ntouch 0 2M write\nuffd-wp 0 1M on\n",
        Preset::LazyFixed,
        |k| {
            assert!(
                matches!(k.mms[0].pmds[0], Pmd::Table(_)),
                "change_pmd_range splits a partial PMD"
            );
            let half = k.ptrs() / 2;
            assert!(k.mms[0].uffd_wp[..half].iter().all(|b| *b));
            assert!(k.mms[0].uffd_wp[half..].iter().all(|b| !*b));
            assert_eq!(k.mms[0].vmas.len(), 1, "no VMA split");
        },
    );
    both(
        "mmap 0 4M thp\ntouch 0 2M write\nuffd-wp 0 2M on\n",
        Preset::LazyFixed,
        |k| {
            assert!(
                matches!(k.mms[0].pmds[0], Pmd::Huge { write: false, .. }),
                "whole PMD: change_huge_pmd"
            );
        },
    );
}
