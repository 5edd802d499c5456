//! One test per invariant: break the state, see that invariant fire.

use splitfuzz::check::reference::Reference;
use splitfuzz::check::{self, check_state, Invariant};
use splitfuzz::model::mm::{KErr, Kernel, Pmd, TableState};
use splitfuzz::run::{self, RunConfig};
use splitfuzz::{Geometry, Policy, Preset, Program};

/// Run the ops of `text` (no teardown) and return the kernel; the state must be clean.
fn state(text: &str, preset: Preset) -> Kernel {
    let prog = Program::parse(text).unwrap();
    let cfg = RunConfig::new(Policy::preset(preset), Geometry::SMALL);
    let mut k = run::build(&prog, &cfg);
    let v = run::run_on(&mut k, &prog, &mut Vec::new(), &mut |_, _, _| {}, false);
    assert!(v.is_none(), "{v:?}");
    check_state(&k, "test").expect("untampered state is clean");
    k
}

const THP: &str = "mmap 0 4M thp\ntouch 0 2M write\n";

fn fires(k: &Kernel, want: Invariant) {
    let v = check_state(k, "test").expect_err("the broken state must be reported");
    assert_eq!(v.invariant, want, "{v}");
}

fn program_fires(text: &str, preset: Preset, want: Invariant, func: &str) {
    let prog = Program::parse(text).unwrap();
    // The preset plus the program's `override` lines.
    let pol = run::program_policy(&prog, Some(preset.name()), &[]).unwrap();
    let out = run::run(&prog, &RunConfig::new(pol, Geometry::SMALL));
    let v = out.violation.expect("violation");
    assert_eq!((v.invariant, v.function.as_str()), (want, func), "{v}");
}

#[test]
fn table_conservation_fires_on_leak_double_install_and_use_after_free() {
    let mut k = state(THP, Preset::Deposit);
    let t = k.pte_alloc_one(0, "test").unwrap();
    fires(&k, Invariant::TableConservation); // allocated, never installed: leak
    k.tables[t as usize].state = TableState::Freed;
    check_state(&k, "t").unwrap();
    let mut k = state("mmap 0 4M\ntouch 0 4K write\n", Preset::LazyFixed);
    let Pmd::Table(t) = k.mms[0].pmds[0] else {
        panic!()
    };
    k.tables[t as usize].state = TableState::Freed; // installed but freed
    fires(&k, Invariant::TableConservation);
    let mut k = state("mmap 0 4M\ntouch 0 4K write\n", Preset::LazyFixed);
    assert!(matches!(k.pte_free(t, "test"), Ok(())));
    match k.pte_free(t, "test") {
        Err(KErr::Bug(v)) => assert_eq!(v.invariant, Invariant::TableConservation),
        other => panic!("double free not caught: {other:?}"),
    }
}

#[test]
fn nr_ptes_fires() {
    let mut k = state(THP, Preset::LazyV3);
    k.mms[0].nr_ptes += 1;
    fires(&k, Invariant::NrPtes);
}

#[test]
fn deposit_pairing_fires() {
    let mut k = state(THP, Preset::Deposit);
    let t = k.mms[0].deposit[0].pop().unwrap();
    k.tables[t as usize].state = TableState::Freed;
    k.mms[0].nr_ptes -= 1;
    fires(&k, Invariant::DepositPairing);
    // Lazy: any deposit at all is wrong.
    let mut k = state(THP, Preset::LazyV3);
    let t = k.pte_alloc_one(0, "test").unwrap();
    k.deposit(0, 0, t);
    k.mms[0].nr_ptes += 1;
    fires(&k, Invariant::DepositPairing);
}

#[test]
fn no_silent_skip_fires_on_wrong_contents_and_on_v3_dontneed() {
    let k = state(THP, Preset::Deposit);
    let before = splitfuzz::check::reference::observe(&k);
    let line = Program::parse("madvise 0 1M dontneed").unwrap().ops[0].clone();
    let exp = before.expected(&line, 2, k.geom);
    // The op "returned success" but nothing happened: the pages still hold data.
    let v = check::reference::check_reference(
        &k,
        &before,
        &exp,
        true,
        "madvise_dontneed_single_vma",
        "x",
    )
    .unwrap_err();
    assert_eq!(v.invariant, Invariant::NoSilentSkip);
    // A failed op may leave old contents.
    assert!(check::reference::check_reference(&k, &before, &exp, false, "f", "x").is_ok());
    program_fires(
        "fail pte_alloc nth=1\nmmap 0 4M thp\ntouch 0 2M write\nmadvise 0 1M dontneed\n",
        Preset::LazyV3,
        Invariant::NoSilentSkip,
        "zap_pmd_range",
    );
    let _ = Reference::new(1);
}

#[test]
fn vma_containment_fires() {
    let mut k = state(THP, Preset::Deposit);
    let p = k.ptrs();
    k.mms[0].vmas[0].end = p / 2; // boundary inside the huge PMD
    fires(&k, Invariant::VmaContainment);
    program_fires(
        "fail pte_alloc nth=1\nmmap 0 4M thp\ntouch 0 2M write\nmunmap 1M 256K\n",
        Preset::LazyV1,
        Invariant::VmaContainment,
        "vma_adjust_trans_huge",
    );
}

#[test]
fn rss_fires() {
    let mut k = state(THP, Preset::Deposit);
    k.mms[0].rss_anon -= 1;
    fires(&k, Invariant::Rss);
    let mut k = state(THP, Preset::Deposit);
    k.mms[0].rss_swap += 1;
    fires(&k, Invariant::Rss);
}

#[test]
fn folio_counts_fire() {
    let mut k = state(THP, Preset::LazyFixed);
    let Pmd::Huge { folio, .. } = k.mms[0].pmds[0] else {
        panic!()
    };
    k.folios[folio as usize].refcount += 1;
    fires(&k, Invariant::FolioCounts);
    let mut k = state(THP, Preset::LazyFixed);
    k.folios[folio as usize].anon_exclusive[0] = false; // writable but not exclusive
    fires(&k, Invariant::FolioCounts);
    let mut k = state(THP, Preset::LazyFixed);
    k.folios[folio as usize].freed = true; // mapped after free
    fires(&k, Invariant::FolioCounts);
}

#[test]
fn huge_zero_fires() {
    let mut k = state("mmap 0 4M thp\ntouch 0 2M read\n", Preset::Deposit);
    assert_eq!(k.mms[0].pmds[0], Pmd::HugeZero);
    k.huge_zero_refcount += 1;
    fires(&k, Invariant::HugeZero);
    let mut k = state("mmap 0 4M thp\ntouch 0 2M read\n", Preset::Deposit);
    k.mms[0].huge_zero = false;
    k.huge_zero_refcount -= 1;
    fires(&k, Invariant::HugeZero);
}

#[test]
fn clean_teardown_fires() {
    let k = state(THP, Preset::Deposit);
    let v = k.check_mm(0).expect("an mm with pages is not clean");
    assert_eq!(v.invariant, Invariant::CleanTeardown);
    assert!(v.message.contains("Bad rss-counter"), "{v}");
    let mut k = state("mmap 0 4M\n", Preset::Deposit);
    k.exit_mmap(0).unwrap();
    check::check_teardown(&k).unwrap();
    k.folio_alloc(1, vec![0]); // a folio nobody frees
    assert_eq!(
        check::check_teardown(&k).unwrap_err().invariant,
        Invariant::CleanTeardown
    );
}

#[test]
fn no_livelock_fires() {
    program_fires(
        "fail pte_alloc from=1\nmmap 0 4M thp\ntouch 0 2M write\nmadvise 0 1M dontneed\n",
        Preset::LazyV1,
        Invariant::NoLivelock,
        "zap_pmd_range",
    );
    // A single failure is retried past: no livelock.
    let prog = Program::parse(
        "fail pte_alloc nth=1\nmmap 0 4M thp\ntouch 0 2M write\nmadvise 0 1M dontneed\n",
    )
    .unwrap();
    let out = run::run(
        &prog,
        &RunConfig::new(Policy::preset(Preset::LazyV1), Geometry::SMALL),
    );
    assert!(out.violation.is_none(), "{:?}", out.violation);
    assert!(out.stats.retries >= 1);
}

#[test]
fn kernel_assertion_fires() {
    let mut k = state("mmap 0 4M\n", Preset::Deposit);
    match k.withdraw(0, 0, "test") {
        Err(KErr::Bug(v)) => assert_eq!(v.invariant, Invariant::KernelAssertion),
        other => panic!("{other:?}"),
    }
    // A void split inside the rmap walk (no posting does this: an override).
    program_fires(
        "override try_to_unmap_one=proceed\nfail pte_alloc at=1\nmmap 0 4M thp\ntouch 0 2M write\nreclaim 0\n",
        Preset::LazyV1,
        Invariant::KernelAssertion,
        "try_to_unmap_one",
    );
    // v1's void split under fork of a pinned THP: "bad pmd".
    program_fires(
        "mmap 0 4M thp\ntouch 0 2M write\npin 0 4K\nfail pte_alloc from=1\nfork\n",
        Preset::LazyV1,
        Invariant::KernelAssertion,
        "copy_pmd_range",
    );
}

#[test]
fn every_invariant_has_a_name_roundtrip() {
    for i in Invariant::ALL {
        assert_eq!(Invariant::from_name(i.name()), Some(i));
    }
}

#[test]
fn severity_follows_the_site() {
    use splitfuzz::check::Severity;
    // Worst first: the order findings tables sort by.
    assert!(Severity::Crash < Severity::DataLoss);
    assert!(Severity::DataLoss < Severity::UnkillableLoop);
    assert!(Severity::UnkillableLoop < Severity::KillableLoop);
    assert!(Severity::KillableLoop < Severity::Leak);
    assert!(Severity::Leak < Severity::WrongErrno);
    // A double free is a crash even though its invariant is a leak check.
    let mut k = state("mmap 0 4M\ntouch 0 4K write\n", Preset::LazyFixed);
    let Pmd::Table(t) = k.mms[0].pmds[0] else {
        panic!()
    };
    k.pte_free(t, "test").unwrap();
    match k.pte_free(t, "test") {
        Err(KErr::Bug(v)) => assert_eq!(v.severity, Severity::Crash, "{v}"),
        other => panic!("double free not caught: {other:?}"),
    }
    // A leaked table found by the state check is a leak.
    let mut k = state(THP, Preset::Deposit);
    k.pte_alloc_one(0, "test").unwrap();
    let v = check_state(&k, "test").unwrap_err();
    assert_eq!(v.severity, Severity::Leak, "{v}");
    // A fault that refaults forever is killable; a kernel loop is not.
    let run = |text: &str| {
        let prog = Program::parse(text).unwrap();
        let cfg = RunConfig::new(Policy::preset(Preset::LazyV1), Geometry::SMALL);
        run::run(&prog, &cfg).violation.expect("violation")
    };
    let cow =
        run("fail pte_alloc from=1\nmmap 0 4M thp\ntouch 0 2M write\nfork\ntouch 0 4K write\n");
    assert_eq!(cow.severity, Severity::KillableLoop, "{cow}");
    let wp = run(
        "fail pte_alloc from=1\nmmap 0 4M thp\ntouch 0 2M write\nuffd-register 0 4M\nuffd-wp 0 1M on\n",
    );
    assert_eq!(wp.severity, Severity::UnkillableLoop, "{wp}");
}
