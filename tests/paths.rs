//! Unit tests per kernel path: run a few ops, look at the exact state.

use splitfuzz::check::check_state;
use splitfuzz::model::mm::{Kernel, Pmd, Pte};
use splitfuzz::run::{self, RunConfig};
use splitfuzz::{Geometry, Policy, Preset, Program};

fn run_ops(text: &str, preset: Preset, geom: Geometry) -> Kernel {
    run_res(text, preset, geom).0
}

/// Run without the implicit exit; no violation allowed. The kernel and each op's result.
fn run_res(text: &str, preset: Preset, geom: Geometry) -> (Kernel, Vec<run::OpResult>) {
    run_res_linux(text, preset, geom, splitfuzz::model::mm::LINUX_DEFAULT)
}

fn run_res_linux(
    text: &str,
    preset: Preset,
    geom: Geometry,
    linux: (u32, u32),
) -> (Kernel, Vec<run::OpResult>) {
    run_with(text, preset, geom, linux, false)
}

/// Run without the implicit exit under Linux `linux`, with or without the
/// oracles' arena neighbours; no violation allowed.
fn run_with(
    text: &str,
    preset: Preset,
    geom: Geometry,
    linux: (u32, u32),
    arena_neighbours: bool,
) -> (Kernel, Vec<run::OpResult>) {
    let prog = Program::parse(text).unwrap();
    let mut k = run::build(&prog, &RunConfig::new(Policy::preset(preset), geom));
    k.linux = linux;
    k.arena_neighbours = arena_neighbours;
    let mut res = Vec::new();
    let v = run::run_on(&mut k, &prog, &mut res, &mut |_, _, _| {}, false);
    assert!(v.is_none(), "{v:?}");
    check_state(&k, "test").unwrap();
    (k, res)
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
                let ptes = table_ptes(k, 0, 0);
                let half = k.ptrs() / 2;
                assert!(ptes[..half].iter().all(|p| *p == Pte::None));
                assert!(ptes[half..]
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
    let out = run::run(
        &prog,
        &RunConfig::new(Policy::preset(Preset::LazyFixed), Geometry::SMALL),
    );
    assert!(out.violation.is_none());
    assert_eq!(
        out.results[2],
        run::OpResult::Err(splitfuzz::model::mm::Errno::ENOMEM)
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
            let Pte::Present { folio, .. } = table_ptes(k, 1, 0)[0] else {
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
        "mmap 0 4M thp\ntouch 0 2M write\nuffd-register 0 4M\nuffd-wp 0 1M on\n",
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
        "mmap 0 4M thp\ntouch 0 2M write\nuffd-register 0 4M\nuffd-wp 0 2M on\n",
        Preset::LazyFixed,
        |k| {
            assert!(
                matches!(k.mms[0].pmds[0], Pmd::Huge { write: false, .. }),
                "whole PMD: change_huge_pmd"
            );
        },
    );
}

// ---- Linux 6.18 semantics the host kernel oracle (`splitfuzz real`) showed the
// model was missing; each was checked against the host with `splitfuzz real`.

/// The PTEs of the table at `slot` of `mm` (panics if the PMD is not a table).
fn table_ptes(k: &Kernel, mm: usize, slot: usize) -> &[Pte] {
    match k.mms[mm].pmds[slot] {
        Pmd::Table(t) => &k.tables[t as usize].ptes,
        pmd => panic!("pmds[{slot}] of mm {mm} is {pmd:?}, not a table"),
    }
}

/// Run under every policy and both geometries.
fn all(text: &str, f: impl Fn(&Kernel, &[run::OpResult], Geometry)) {
    all_linux(text, splitfuzz::model::mm::LINUX_DEFAULT, f)
}

fn all_linux(text: &str, linux: (u32, u32), f: impl Fn(&Kernel, &[run::OpResult], Geometry)) {
    for preset in [
        Preset::Deposit,
        Preset::LazyV1,
        Preset::LazyV3,
        Preset::LazyFixed,
    ] {
        for g in [Geometry::SMALL, Geometry::KERNEL] {
            let (k, r) = run_res_linux(text, preset, g, linux);
            f(&k, &r, g);
        }
    }
}

fn vmas(k: &Kernel, g: Geometry) -> Vec<(u64, u64, bool)> {
    k.mms[0]
        .vmas
        .iter()
        .map(|v| (g.addr_of(v.start) >> 10, g.addr_of(v.end) >> 10, v.write))
        .collect()
}

use splitfuzz::model::mm::Errno;
use splitfuzz::run::OpResult::{Err as E, Ok as OK};

#[test]
fn do_mprotect_pkey_changes_vmas_up_to_a_hole_then_enomem() {
    all("mmap 0 4M\nmmap 6M 2M\nmprotect 0 8M r\n", |k, r, g| {
        assert_eq!(r[2], E(Errno::ENOMEM));
        assert_eq!(vmas(k, g), vec![(0, 4096, false), (6144, 8192, true)]);
    });
    // A hole at the start changes nothing.
    all("mmap 2M 2M\nmprotect 0 4M r\n", |k, r, g| {
        assert_eq!(r[1], E(Errno::ENOMEM));
        assert_eq!(vmas(k, g), vec![(2048, 4096, true)]);
    });
}

#[test]
fn mprotect_fixup_with_unchanged_flags_splits_nothing() {
    all(
        "mmap 0 4M thp\ntouch 0 4M write\nmprotect 1M 2M rw\n",
        |k, r, _| {
            assert_eq!(r[2], OK);
            assert!(matches!(k.mms[0].pmds[0], Pmd::Huge { .. }));
            assert!(matches!(k.mms[0].pmds[1], Pmd::Huge { .. }));
            assert_eq!(k.mms[0].vmas.len(), 1);
        },
    );
}

#[test]
fn madvise_collapse_einval_cases() {
    // Never faulted: no anon_vma, thp_vma_allowable_order() refuses.
    all("mmap 0 8M thp\nmadvise 0 4M collapse\n", |_, r, _| {
        assert_eq!(r[1], E(Errno::EINVAL))
    });
    // A range inside one PMD with neither end aligned: 6.18 wraps
    // `(hend - hstart) >> HPAGE_PMD_SHIFT` (-EINVAL); 7.2 returns 0 first.
    let inside = "mmap 0 8M thp\ntouch 0 4K write\nmadvise 2304K 256K collapse\n";
    all_linux(inside, (6, 18), |_, r, _| {
        assert_eq!(r[2], E(Errno::EINVAL))
    });
    all_linux(inside, (7, 2), |_, r, _| assert_eq!(r[2], OK));
    // A range with no whole PMD but ends aligned: nothing to do, success.
    all(
        "mmap 0 8M thp\ntouch 0 4K write\nmadvise 2M 1M collapse\n",
        |_, r, _| assert_eq!(r[2], OK),
    );
    // A VMA that cannot hold an aligned PMD.
    all(
        "mmap 0 8M thp\ntouch 0 4M write\nmprotect 3M 1M r\nmadvise 3M 1M collapse\n",
        |_, r, _| assert_eq!(r[3], E(Errno::EINVAL)),
    );
}

#[test]
fn madvise_walk_vmas_stops_at_the_first_collapse_error() {
    let base = "mmap 0 8M\ntouch 0 8M write\nmprotect 0 2560K r\n";
    // First VMA piece [2304K, 2560K) fails on 6.18: [4M, 6M) in the next VMA
    // is not collapsed. On 7.2 that piece has nothing to do (0): collapsed.
    let first = format!("{base}madvise 2304K 3840K collapse\n");
    all_linux(&first, (6, 18), |k, r, _| {
        assert_eq!(r[3], E(Errno::EINVAL));
        assert!(matches!(k.mms[0].pmds[2], Pmd::Table(_)));
    });
    all_linux(&first, (7, 2), |k, r, _| {
        assert_eq!(r[3], OK);
        assert!(matches!(k.mms[0].pmds[2], Pmd::Huge { .. }));
    });
    // First piece [2M, 2560K) has nothing to do: [4M, 6M) is collapsed.
    all(&format!("{base}madvise 2M 4M collapse\n"), |k, r, _| {
        assert_eq!(r[3], OK);
        assert!(matches!(k.mms[0].pmds[2], Pmd::Huge { .. }));
    });
}

#[test]
fn remap_move_moves_several_vmas_keeping_gaps() {
    all(
        "mmap 0 2M\nmmap 3M 1M\ntouch 0 4M write\nmmap 18M 1M\nmremap 0 4M 16M\n",
        |k, r, g| {
            assert_eq!(r[4], OK);
            // Both pieces moved (to 16M and 19M); the destination gap [18M, 19M)
            // keeps its own, empty mapping. It merges with neither piece:
            // can_vma_merge_before() wants the pgoffs to continue, and the
            // moved pieces keep their source pgoffs (copy_vma() resets it only
            // for a VMA never faulted). The host oracle coalesces equal
            // neighbours in what it compares, so it cannot tell.
            assert_eq!(
                vmas(k, g),
                vec![
                    (16384, 18432, true),
                    (18432, 19456, true),
                    (19456, 20480, true)
                ]
            );
            let at = |mb: u64| k.page_value(0, g.page_of(mb << 20, false));
            assert!(at(16) != 0 && at(19) != 0);
            assert_eq!(at(18), 0);
            assert!(k.mms[0].vma_at(0).is_none());
        },
    );
    // No gap allowed at the start.
    all("mmap 1M 3M\nmremap 0 4M 16M\n", |k, r, g| {
        assert_eq!(r[1], E(Errno::EFAULT));
        assert_eq!(vmas(k, g), vec![(1024, 4096, true)]);
    });
}

#[test]
fn folio_split_maps_zero_filled_pages_to_the_shared_zero_page() {
    for preset in [Preset::Deposit, Preset::LazyFixed] {
        both(
            "mmap 0 2M thp\ntouch 0 4K write\nmadvise 0 1M cold\n",
            preset,
            |k| {
                let ptes = table_ptes(k, 0, 0);
                assert!(matches!(ptes[0], Pte::Present { .. }));
                assert!(ptes[1..].iter().all(|p| *p == Pte::Zero));
                assert_eq!(k.mms[0].rss_anon, 1);
            },
        );
    }
}

#[test]
fn madvise_cold_and_free_leave_shared_thps_alone() {
    for advice in ["cold", "free"] {
        all(
            &format!("mmap 0 2M thp\ntouch 0 2M write\nfork\nmadvise 0 1M {advice}\n"),
            |k, r, _| {
                assert_eq!(r[3], OK);
                assert!(matches!(k.mms[0].pmds[0], Pmd::Huge { .. }));
                assert!(matches!(k.mms[1].pmds[0], Pmd::Huge { .. }));
            },
        );
    }
}

#[test]
fn madvise_free_marks_a_whole_pte_mapped_thp_lazyfree_without_splitting() {
    // mprotect splits the PMD (the folio stays large, PTE-mapped), the VMAs
    // merge back, and MADV_FREE covers the whole folio: no split.
    for preset in [Preset::Deposit, Preset::LazyFixed] {
        both(
            "mmap 0 2M thp\ntouch 0 2M write\nmprotect 1M 1M r\nmprotect 1M 1M rw\nmadvise 0 2M free\n",
            preset,
            |k| {
                let ptes = table_ptes(k, 0, 0);
                let Pte::Present { folio, .. } = ptes[0] else {
                    panic!()
                };
                let fo = &k.folios[folio as usize];
                assert_eq!(fo.nr, k.ptrs());
                assert!(fo.lazyfree && !fo.dirty);
            },
        );
    }
}

#[test]
fn reclaim_discards_a_clean_lazyfree_thp_in_every_mm_without_splitting() {
    // MADV_FREE before fork; both mms map the clean lazyfree THP. The kernel's
    // __discard_anon_folio_pmd_locked() drops it in each (ref_count ==
    // map_count + 1); it never splits it, so no policy can fail here.
    all(
        "mmap 0 2M thp\ntouch 0 2M write\nmadvise 0 2M free\nfork\nreclaim 0\n",
        |k, r, _| {
            assert_eq!(r[4], OK);
            for mm in 0..2 {
                assert_eq!(k.mms[mm].pmds[0], Pmd::None);
                assert_eq!(k.mms[mm].rss_anon, 0);
            }
        },
    );
    // Written again after MADV_FREE: swap-backed again, reclaim aborts, kept.
    all(
        "mmap 0 2M thp\ntouch 0 2M write\nmadvise 0 2M free\ntouch 0 4K write\nreclaim 0\n",
        |k, _, _| {
            let Pmd::Huge { folio, .. } = k.mms[0].pmds[0] else {
                panic!("{:?}", k.mms[0].pmds[0])
            };
            assert!(!k.folios[folio as usize].lazyfree);
        },
    );
}

#[test]
fn do_wp_page_reuses_a_large_folio_mapped_by_this_mm_only() {
    // After fork + child exit the THP's pages are no longer PageAnonExclusive;
    // once PTE-mapped, a write fault reuses the folio (wp_can_reuse_anon_folio)
    // instead of copying the page out of it.
    for preset in [Preset::Deposit, Preset::LazyFixed] {
        both(
            "mmap 0 2M thp\ntouch 0 2M write\nfork\nexit mm=1\nmprotect 1M 1M r\nmprotect 1M 1M rw\ntouch 1M 4K write\n",
            preset,
            |k| {
                let ptes = table_ptes(k, 0, 0);
                let i = k.ptrs() / 2;
                let Pte::Present { folio, write, .. } = ptes[i] else {
                    panic!()
                };
                assert!(write);
                assert_eq!(k.folios[folio as usize].nr, k.ptrs());
            },
        );
    }
}

/// A user fault that gets VM_FAULT_OOM is retried (`pagefault_out_of_memory()`):
/// one failed `__pte_alloc()` costs a retry, not an error; under sustained
/// failure the task spins (killable) and the program ends there, with no
/// violation under deposit (the kernel's designed OOM behaviour).
#[test]
fn user_fault_retries_vm_fault_oom() {
    use run::OpResult;
    let (k, res) = run_res(
        "fail pte_alloc nth=1\nmmap 0 4M\ntouch 0 4K write\n",
        Preset::Deposit,
        Geometry::SMALL,
    );
    assert_eq!(res, vec![OpResult::Ok, OpResult::Ok]);
    assert_eq!(
        k.alloc.calls(splitfuzz::model::alloc::AllocKind::PteTable),
        2
    );
    assert_ne!(k.page_value(0, 0), 0, "the write landed after the retry");
    let (_, res) = run_res(
        "fail pte_alloc from=1\nmmap 0 4M\ntouch 0 4K write\ntouch 1M 4K write\n",
        Preset::Deposit,
        Geometry::SMALL,
    );
    assert_eq!(
        res,
        vec![OpResult::Ok, OpResult::OomLoop],
        "the program ends at the loop"
    );
    // GUP (pin) turns VM_FAULT_OOM into -ENOMEM instead.
    let (_, res) = run_res(
        "fail pte_alloc from=1\nmmap 0 4M\npin 0 4K\n",
        Preset::Deposit,
        Geometry::SMALL,
    );
    assert_eq!(
        res,
        vec![
            OpResult::Ok,
            OpResult::Err(splitfuzz::model::mm::Errno::ENOMEM)
        ]
    );
    // The whole program (with teardown) has no violation.
    let prog = Program::parse("fail pte_alloc from=1\nmmap 0 4M\ntouch 0 4K write\n").unwrap();
    let out = run::run(
        &prog,
        &RunConfig::new(Policy::preset(Preset::Deposit), Geometry::KERNEL),
    );
    assert!(out.violation.is_none(), "{:?}", out.violation);
}

/// Kernel geometry with the oracles' arena neighbours (PUDs always present),
/// as `vm run` and `real` model a program.
fn run_arena(text: &str, preset: Preset) -> (Kernel, Vec<run::OpResult>) {
    run_with(
        text,
        preset,
        Geometry::KERNEL,
        splitfuzz::model::mm::LINUX_DEFAULT,
        true,
    )
}

fn vma_bounds(k: &Kernel, mm: usize) -> Vec<(usize, usize)> {
    k.mms[mm]
        .vmas
        .iter()
        .map(|v| (v.start * 4, v.end * 4))
        .collect()
}

/// mm/vma.c vma_modify(): when the second split_vma() fails the first split
/// stays, and nothing merges the two equal halves again; a later split inside
/// the left half then finds no whole PMD range there (split_huge_pmd_if_needed()
/// range_in_vma()), so it allocates nothing (found by `vm run` on the v3 kernel).
#[test]
fn vma_modify_keeps_the_first_split_when_the_second_fails() {
    let (k, res) = run_arena(
        "fail pte_alloc at=2\nmmap 16896K 8M thp\nmlock 22272K 2M\nuffd-register 16128K 5632K\n",
        Preset::LazyV3,
    );
    assert_eq!(
        res[1],
        run::OpResult::Err(splitfuzz::model::mm::Errno::ENOMEM),
        "the split at 24320K fails"
    );
    let b = vma_bounds(&k, 0);
    assert!(b.contains(&(21760, 22272)), "{b:?}");
    assert!(b.contains(&(22272, 25088)), "{b:?}");
    assert!(k.mms[0].vmas.iter().all(|v| !v.locked));
    // mlock: two calls (the second fails); uffd-register: none.
    assert_eq!(
        k.alloc.calls(splitfuzz::model::alloc::AllocKind::PteTable),
        2
    );
}

/// mm/vma.c is_mergeable_anon_vma() / vma_is_fork_child(): a new VMA does not
/// merge with a neighbour whose anon_vma was cloned at fork; in the parent it
/// does (found by `vm run` on the v3 kernel).
#[test]
fn a_fork_childs_anon_vma_does_not_merge_with_a_new_vma() {
    let text = "mmap 10752K 7680K\ntouch 10752K 4K write\nfork\nmmap 18432K 4096K mm=1\nmmap 18432K 4096K\n";
    let (k, _) = run_arena(text, Preset::Deposit);
    assert_eq!(vma_bounds(&k, 0), vec![(10752, 22528)]);
    assert_eq!(vma_bounds(&k, 1), vec![(10752, 18432), (18432, 22528)]);
}

/// mm/vma.c copy_vma(): a never-faulted anonymous VMA takes the destination's
/// pgoff and merges with the destination's neighbours before any page table
/// moves, so unmap_source_vma() then splits the merged VMA (one more table
/// under v3, which allocates before looking at the PMD; found by `vm run` on
/// the v3 kernel).
#[test]
fn copy_vma_merges_before_the_source_is_unmapped() {
    let (k, res) = run_arena(
        "mmap 24M 7M\nmunmap 30464K 512K\nmremap 29184K 512K 30464K\n",
        Preset::LazyV3,
    );
    assert!(res.iter().all(|r| *r == run::OpResult::Ok), "{res:?}");
    assert_eq!(vma_bounds(&k, 0), vec![(24576, 29184), (29696, 31744)]);
    // munmap: the split at 30464K; mremap: the source split at 29184K
    // inside the merged VMA (29696K's PMD is no longer in one VMA).
    assert_eq!(
        k.alloc.calls(splitfuzz::model::alloc::AllocKind::PteTable),
        2
    );
}

/// mm/userfaultfd.c find_vmas_mm_locked() → find_vma_and_prepare_anon(): the
/// destination VMA gets its anon_vma before any check, so even a failed
/// UFFDIO_MOVE (here EINVAL: nothing registered) leaves it faulted-in as far
/// as copy_vma() is concerned; a later mremap keeps its pgoff and does not
/// merge back (found by `vm run` on the v3 kernel).
#[test]
fn a_failed_uffd_move_still_prepares_the_destination_anon_vma() {
    let (k, res) = run_arena(
        "mmap 14592K 6400K\nuffd-move 19968K 15616K 1280K\n",
        Preset::LazyV3,
    );
    assert_eq!(
        res[1],
        run::OpResult::Err(splitfuzz::model::mm::Errno::EINVAL)
    );
    assert_ne!(k.mms[0].vmas[0].anon_vma, 0);
}
