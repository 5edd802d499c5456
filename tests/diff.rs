//! `splitfuzz diff`: each class of difference from a hand-written program that
//! must produce it, the reclaim table demand, the fault-plan site report, the
//! maximize search, determinism and the CLI's handling of bad input.
//! (The `leak` class: no preset leaks in the model, see the unit test in
//! src/diff.rs.)

use splitfuzz::diff::{
    diff_program, maximize, program_report, reclaim_demand, Class, DiffConfig, ProgramDiff,
};
use splitfuzz::prog::generate::generate;
use splitfuzz::run::RunConfig;
use splitfuzz::{Geometry, Policy, Preset, Program};
use std::process::Command;

fn cfg(p: Preset) -> DiffConfig {
    DiffConfig {
        policy: Policy::preset(p),
        geometry: Geometry::SMALL,
        oom_from_op: None,
    }
}

fn diff(text: &str, c: &DiffConfig) -> ProgramDiff {
    diff_program(&Program::parse(text).unwrap(), c)
}

fn classes(pd: &ProgramDiff) -> Vec<Class> {
    let mut v: Vec<Class> = pd.diffs.iter().map(|d| d.class).collect();
    v.sort();
    v.dedup();
    v
}

const DONTNEED: &str =
    "fail pte_alloc nth=1\nmmap 0 4M thp\ntouch 0 2M write\nmadvise 0 1M dontneed\n";
/// One THP shared by PMD with two forked children.
const SHARED3: &str = "mmap 0 2M thp\ntouch 0 2M write\nfork\nfork\nreclaim 0\n";
/// Lazy's rmap walk allocates before it looks at the folio, also when it then
/// keeps a redirtied MADV_FREE folio; deposit allocates nothing there. So three
/// such reclaims take lazy's calls 1-3 while deposit's 1-3 are the THP fault and
/// the two forks, and the same plan text fails only the last reclaim's calls.
const BURN3: &str = "mmap 0 2M thp\ntouch 0 2M write\n\
    madvise 0 2M free\ntouch 0 2M write\nreclaim 0\n\
    madvise 0 2M free\ntouch 0 2M write\nreclaim 0\n\
    madvise 0 2M free\ntouch 0 2M write\nreclaim 0\n\
    fork\nfork\nreclaim 0\n";

#[test]
fn v3_partial_dontneed_with_a_failed_split_is_a_skip() {
    let pd = diff(DONTNEED, &cfg(Preset::LazyV3));
    assert_eq!(classes(&pd), vec![Class::Skip], "{:?}", pd.diffs);
    let d = &pd.diffs[0];
    assert_eq!((d.op, d.op_text.as_str()), (2, "madvise 0 1M dontneed"));
    assert!(!d.after_divergence);
    // The pages deposit zeroed keep their data under v3.
    assert!(d.detail.contains("contents 4"), "{}", d.detail);
    assert!(
        pd.policy_end.contains("no-silent-skip"),
        "{}",
        pd.policy_end
    );
    assert_eq!(pd.deposit_end, "ok");
}

#[test]
fn lazy_fixed_on_the_same_program_is_a_new_error() {
    let pd = diff(DONTNEED, &cfg(Preset::LazyFixed));
    assert_eq!(classes(&pd), vec![Class::NewError], "{:?}", pd.diffs);
    assert_eq!(pd.diffs[0].kind, "madvise dontneed: ok -> ENOMEM");
    assert_eq!(pd.diffs[0].op, 2);
}

#[test]
fn the_plan_fails_different_sites_under_each_policy() {
    let pd = diff(DONTNEED, &cfg(Preset::LazyV3));
    assert_eq!(
        pd.deposit_fail_sites,
        vec!["pte_alloc __do_huge_pmd_anonymous_page"]
    );
    assert_eq!(pd.policy_fail_sites, vec!["pte_alloc __split_huge_pmd"]);
    assert!(pd.plan_sites_differ());
    let same = diff(DONTNEED, &cfg(Preset::Deposit));
    assert!(!same.plan_sites_differ());
}

#[test]
fn deposit_against_deposit_shows_no_difference() {
    let c = cfg(Preset::Deposit);
    let mut progs: Vec<Program> = generate(300, 7);
    for dir in ["deposit", "lazy-v1", "lazy-v3", "lazy-fixed", "ops"] {
        let d = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/programs")
            .join(dir);
        let mut files: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        for f in files {
            progs.push(Program::parse(&std::fs::read_to_string(&f).unwrap()).unwrap());
        }
    }
    for p in &progs {
        let pd = diff_program(p, &c);
        assert!(pd.diffs.is_empty(), "{}\n{:?}", p.to_text(), pd.diffs);
        assert!(!pd.plan_sites_differ());
    }
}

#[test]
fn reclaim_of_a_thp_shared_by_three_mms_needs_three_tables_under_lazy() {
    for geometry in [Geometry::SMALL, Geometry::KERNEL] {
        for p in [Preset::LazyV1, Preset::LazyV3, Preset::LazyFixed] {
            let c = DiffConfig { geometry, ..cfg(p) };
            let pd = diff(SHARED3, &c);
            assert!(pd.diffs.is_empty(), "{:?}", pd.diffs);
            assert_eq!(pd.policy_reclaim.per_reclaimed_folio, Some((3, 4)));
            assert_eq!(pd.policy_reclaim.pmd_maps, 3);
            assert_eq!(pd.deposit_reclaim.per_reclaimed_folio, Some((0, 4)));
        }
    }
    // One mm more, one table more; without the forks, one.
    let four = SHARED3.replace("fork\nfork\n", "fork\nfork\nfork\n");
    let rc = RunConfig::new(Policy::preset(Preset::LazyV3), Geometry::SMALL);
    let dem = |t: &str| reclaim_demand(&Program::parse(t).unwrap(), &rc).value();
    assert_eq!(dem(&four), 4);
    assert_eq!(dem("mmap 0 2M thp\ntouch 0 2M write\nreclaim 0\n"), 1);
}

#[test]
fn sustained_failure_from_an_op_keeps_the_folio_under_lazy_only() {
    let c = DiffConfig {
        oom_from_op: Some(4),
        ..cfg(Preset::LazyV3)
    };
    let pd = diff(SHARED3, &c);
    assert_eq!(classes(&pd), vec![Class::ReclaimKept], "{:?}", pd.diffs);
    let d = &pd.diffs[0];
    assert_eq!(d.op, 4);
    assert!(d.detail.contains("sustained"), "{}", d.detail);
    // Deposit reclaimed it with no table; lazy got none reclaimed.
    assert_eq!(pd.deposit_reclaim.per_reclaimed_folio, Some((0, 4)));
    assert_eq!(pd.policy_reclaim.per_reclaimed_folio, None);
    // The same under the same plan text, where each run counts its own calls.
    let pd = diff(
        &format!("fail pte_alloc from=4\n{BURN3}"),
        &cfg(Preset::LazyV3),
    );
    assert_eq!(classes(&pd), vec![Class::ReclaimKept], "{:?}", pd.diffs);
    assert_eq!(pd.diffs[0].op, 13);
    assert!(pd.diffs[0].detail.contains("sustained"));
    assert_eq!(pd.deposit_fail_sites, Vec::<String>::new());
    assert_eq!(pd.policy_fail_sites, vec!["pte_alloc try_to_unmap_one"]);
}

#[test]
fn reclaim_that_fails_after_two_splits_holds_two_tables_and_frees_nothing() {
    // Lazy's calls 4 and 5 split the PMD in mm 0 and mm 1; call 6 (mm 2) fails.
    let pd = diff(
        &format!("fail pte_alloc nth=6\n{BURN3}"),
        &cfg(Preset::LazyV3),
    );
    assert_eq!(classes(&pd), vec![Class::ReclaimKept], "{:?}", pd.diffs);
    assert!(pd.diffs[0].detail.contains("transient"));
    assert_eq!(pd.policy_reclaim.consumed_nothing_freed, Some((2, 13)));
    assert_eq!(pd.deposit_reclaim.consumed_nothing_freed, None);
}

#[test]
fn a_fault_that_cannot_split_never_returns_under_lazy_and_is_a_loop() {
    // CoW of a THP shared with a child: deposit withdraws its table, v3
    // returns VM_FAULT_OOM and the fault retries until the task is killed.
    let c = DiffConfig {
        oom_from_op: Some(3),
        ..cfg(Preset::LazyV3)
    };
    let pd = diff(
        "mmap 0 4M thp\ntouch 0 2M write\nfork\ntouch 0 4K write\n",
        &c,
    );
    assert_eq!(classes(&pd), vec![Class::Loop], "{:?}", pd.diffs);
    assert_eq!(pd.diffs[0].kind, "touch write: ok -> oom-loop");
    // change_pmd_range's retry loop in v3: a no-livelock violation.
    let c = DiffConfig {
        oom_from_op: Some(3),
        ..cfg(Preset::LazyV3)
    };
    let pd = diff(
        "mmap 0 4M thp\ntouch 0 2M write\nuffd-register 0 4M\nuffd-wp 0 1M on\n",
        &c,
    );
    assert_eq!(classes(&pd), vec![Class::Loop], "{:?}", pd.diffs);
    assert!(pd.diffs[0].kind.contains("no-livelock change_pmd_range"));
}

#[test]
fn v1_fork_of_a_pinned_thp_with_a_failed_table_is_a_crash() {
    // Deposit retries the fault whose deposit table failed; v1 needs no table
    // until fork splits the pinned THP, and its void split leaves "bad pmd".
    let pd = diff(
        "fail pte_alloc nth=1\nmmap 0 4M thp\ntouch 0 2M write\npin 0 256K\nfork\n",
        &cfg(Preset::LazyV1),
    );
    assert_eq!(classes(&pd), vec![Class::Crash], "{:?}", pd.diffs);
    assert_eq!(pd.diffs[0].op, 3);
    assert!(pd.diffs[0]
        .kind
        .contains("kernel-assertion copy_pmd_range [crash]"));
}

#[test]
fn a_thp_fault_that_needs_no_table_under_lazy_is_other() {
    // Under sustained failure deposit cannot deposit the fault's table (the
    // task loops in the fault until killed); lazy needs none and maps the THP.
    let pd = diff(
        "fail pte_alloc from=1\nmmap 0 2M thp\ntouch 0 2M write\n",
        &cfg(Preset::LazyV3),
    );
    assert_eq!(classes(&pd), vec![Class::Other], "{:?}", pd.diffs);
    assert_eq!(pd.diffs[0].kind, "touch write: oom-loop -> ok");
}

#[test]
fn reports_are_deterministic() {
    for p in [Preset::LazyV1, Preset::LazyV3, Preset::LazyFixed] {
        let c = cfg(p);
        for prog in generate(200, 3) {
            let a = program_report("x", &prog, &diff_program(&prog, &c), &c);
            let b = program_report("x", &prog, &diff_program(&prog, &c), &c);
            assert_eq!(a, b);
        }
    }
}

#[test]
fn maximize_is_deterministic_within_the_bound_and_its_program_reproduces() {
    let pol = Policy::preset(Preset::LazyV3);
    let a = maximize(&pol, Geometry::SMALL, 8000, 1);
    let b = maximize(&pol, Geometry::SMALL, 8000, 1);
    assert_eq!(
        (a.best, a.found_at, a.program.to_text()),
        (b.best, b.found_at, b.program.to_text())
    );
    assert!(
        a.best >= 2 && a.best <= splitfuzz::diff::demand_bound(Geometry::SMALL),
        "{}",
        a.best
    );
    let rc = RunConfig::new(pol, Geometry::SMALL);
    assert_eq!(reclaim_demand(&a.program, &rc).value(), a.best);
    // Deposit never allocates in reclaim.
    let d = maximize(&Policy::preset(Preset::Deposit), Geometry::SMALL, 500, 1);
    assert_eq!(d.best, 0);
}

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_splitfuzz"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn cli_output_is_deterministic_and_bad_input_exits_2_with_one_line() {
    let a = cli(&[
        "diff",
        "--policy",
        "lazy-v3",
        "--generate",
        "300",
        "--seed",
        "5",
    ]);
    let b = cli(&[
        "diff",
        "--policy",
        "lazy-v3",
        "--generate",
        "300",
        "--seed",
        "5",
    ]);
    assert!(a.status.success());
    assert_eq!(a.stdout, b.stdout);
    let out = String::from_utf8_lossy(&a.stdout);
    assert!(out.contains("== diff lazy-v3 vs deposit"), "{out}");
    for bad in [
        vec!["diff", "--policy", "lazy-v9", "--generate", "1"],
        vec!["diff", "--policy", "lazy-v3"],
        vec!["diff", "--policy", "lazy-v3", "--maximize", "speed"],
        vec![
            "diff",
            "--policy",
            "lazy-v3",
            "--generate",
            "1",
            "--runs",
            "5",
        ],
        vec![
            "diff",
            "--policy",
            "lazy-v3",
            "--geometry",
            "huge",
            "--generate",
            "1",
        ],
        vec!["diff", "--policy", "lazy-v3", "/nonexistent/prog.txt"],
    ] {
        let o = cli(&bad);
        assert_eq!(o.status.code(), Some(2), "{bad:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.lines().count(), 1, "{bad:?}: {err}");
        assert!(err.starts_with("splitfuzz: "), "{err}");
    }
    // A usage error prints clap's whole message and the usage (issue 10).
    let o = cli(&["diff", "--generate", "1"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--policy <POLICY>"), "{err}");
    assert!(err.contains("Usage: splitfuzz diff"), "{err}");
}
