//! `splitfuzz emit-kselftest FILE...`: one test file in the style of the
//! kernel's tools/testing/selftests/mm (kselftest_harness.h: FIXTURE,
//! TEST_F, ksft output, SKIP with the reason), with one test per program and
//! trigger.
//!
//! The tests run the programs through the reproducers' own runtime
//! (runtime.c, copied verbatim as in every `emit-c` reproducer: one C
//! executor, not a second copy). Several programs share one runtime: the
//! runtime reads a program's #defines and tables through macros that point
//! into the program being run (`struct sf_program`, `sf_cur`), and its
//! main() is renamed `sf_runtime_main()`. A test runs its program in a child
//! process, keeps the transcript, and asserts the contract on it
//! (kselftest.c): every op returns within the runtime's bound (10 s), except
//! that a page fault may loop on OOM (the test is skipped there, the ops
//! after it did not run); after MADV_DONTNEED returns 0 its range reads
//! zero; after MADV_GUARD_INSTALL returns 0 its range is guard pages; after
//! mremap or munmap returns 0 the old range is unmapped. The model's
//! prediction is not embedded: the tests judge the kernel by the contract,
//! which holds on every correct kernel, whatever its split policy.
//!
//! Two fixtures: `memcg` (no fault injection: the program runs in a memory
//! cgroup that is put at its limit during the ops holding the planned
//! failures, as `emit-c --trigger memcg`; only for plans expressible that
//! way) and `inject` (the plan is written to our kernel patch's debugfs
//! interface; skipped where it is absent; an op-scoped plan is used as the
//! whole-program plan it was on its kernel when the input says (a `vm check`
//! finding's note), else it gets no `inject` test: the runtime does not arm
//! per op).

use super::{do_op, expected_tables, geometry, op_tables, predict, program_defines, runtime_parts};
use crate::prog::{Advice, Op, Program};
use std::fmt::Write as _;

/// The part of a test file after the runtime (a C file; its head comment is
/// not copied).
const KSELFTEST_C: &str = include_str!("kselftest.c");

/// How long the harness lets one test run (s): the runtime bounds every op
/// (10 s) and each program (kselftest.c `SF_RUN_TIMEOUT_S`, 240 s).
const TEST_TIMEOUT_S: u32 = 300;

/// One program to make tests of.
pub struct KselftestInput {
    /// Where it came from (a path), for the comments.
    pub source: String,
    /// The comment lines of its file (`# ...`), kept as the test's comment.
    pub notes: Vec<String>,
    pub prog: Program,
    /// For an op-scoped plan, the same plan counted over the whole program
    /// on the kernel it was found on (a `vm check` finding's note): the
    /// `inject` test uses it.
    pub whole_plan: Option<crate::prog::FaultPlan>,
}

/// A C identifier from a file name: `no-silent-skip-zap_pmd_range` ->
/// `no_silent_skip_zap_pmd_range`.
fn c_ident(s: &str) -> String {
    let mut id: String = s
        .chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() {
                ch.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if id.is_empty() || id.starts_with(|c: char| c.is_ascii_digit()) {
        id.insert_str(0, "p_");
    }
    id
}

/// The system call of an op, as a kernel developer names it.
pub fn syscall_name(op: &Op) -> &'static str {
    match op {
        Op::Mmap { .. } => "mmap()",
        Op::Munmap { .. } => "munmap()",
        Op::Mprotect { .. } => "mprotect()",
        Op::Touch { write: true, .. } => "a write fault",
        Op::Touch { .. } => "a read fault",
        Op::Madvise { advice, .. } => match advice {
            Advice::Dontneed => "madvise(MADV_DONTNEED)",
            Advice::Free => "madvise(MADV_FREE)",
            Advice::Cold => "madvise(MADV_COLD)",
            Advice::Pageout => "madvise(MADV_PAGEOUT)",
            Advice::Collapse => "madvise(MADV_COLLAPSE)",
            Advice::GuardInstall => "madvise(MADV_GUARD_INSTALL)",
            Advice::GuardRemove => "madvise(MADV_GUARD_REMOVE)",
        },
        Op::Fork => "fork()",
        Op::Exit => "exit()",
        Op::Pin { .. } => "pin_user_pages() (io_uring fixed buffers)",
        Op::Unpin { .. } => "unpin_user_pages() (io_uring buffer update)",
        Op::Mremap { .. } => "mremap()",
        Op::Reclaim { .. } => "madvise(MADV_PAGEOUT) of the folio",
        Op::Migrate { .. } => "move_pages()",
        Op::UffdRegister { .. } => "ioctl(UFFDIO_REGISTER)",
        Op::UffdUnregister { .. } => "ioctl(UFFDIO_UNREGISTER)",
        Op::UffdWp { .. } => "ioctl(UFFDIO_WRITEPROTECT)",
        Op::UffdMove { .. } => "ioctl(UFFDIO_MOVE)",
        Op::PagemapScan { .. } => "ioctl(PAGEMAP_SCAN)",
        Op::Mlock { .. } => "mlock2()",
        Op::Munlock { .. } => "munlock()",
        Op::Mbind { .. } => "mbind()",
        Op::DropCaches => "write to drop_caches",
    }
}

/// The test file for `inputs` (see the module doc), and for each program
/// that gets no test, why; an error when no program gets one.
pub fn emit_kselftest(inputs: &[KselftestInput]) -> Result<(String, Vec<String>), String> {
    let (includes, runtime) = runtime_parts();
    let glue = &KSELFTEST_C[KSELFTEST_C
        .find("#undef main\n")
        .expect("kselftest.c starts at #undef main")..];
    let mut body = String::new();
    let mut names = std::collections::BTreeSet::new();
    let mut tests = 0usize;
    let mut skipped = Vec::new();
    for (k, inp) in inputs.iter().enumerate() {
        let stem = std::path::Path::new(&inp.source)
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let mut name = c_ident(&stem);
        if !names.insert(name.clone()) {
            name = format!("{name}_{k}");
            names.insert(name.clone());
        }
        let mut why = Vec::new();
        for memcg in [true, false] {
            match program_part(&mut body, k, &name, inp, memcg) {
                Ok(()) => tests += 1,
                Err(e) => why.push(format!("{}: {e}", if memcg { "memcg" } else { "inject" })),
            }
        }
        if why.len() == 2 {
            skipped.push(format!("{}: no test: {}", inp.source, why.join("; ")));
        }
    }
    if tests == 0 {
        return Err(if skipped.is_empty() {
            "no program given".into()
        } else {
            skipped.join("\n")
        });
    }
    let mut c = String::new();
    head_comment(&mut c, inputs);
    c.push_str(includes);
    c.push_str("#include \"kselftest_harness.h\"\n\n");
    geometry(&mut c);
    program_struct(&mut c);
    c.push_str("#define main sf_runtime_main\n");
    c.push_str(runtime);
    c.push('\n');
    for (name, _, _) in macro_names() {
        let _ = writeln!(c, "#undef {name}");
    }
    c.push_str(glue);
    c.push_str(&body);
    c.push_str("\nTEST_HARNESS_MAIN\n");
    Ok((c, skipped))
}

fn head_comment(c: &mut String, inputs: &[KselftestInput]) {
    c.push_str("// SPDX-License-Identifier: GPL-2.0\n/*\n");
    c.push_str(" * THP split-failure tests, generated by `splitfuzz emit-kselftest` from:\n");
    for i in inputs {
        let _ = writeln!(c, " *   {}", i.source.replace("*/", "* /"));
    }
    c.push_str(
        " *\n\
 * Build against a kernel tree's selftest headers:\n\
 *   gcc -O2 -Wall -I $LINUX/tools/testing/selftests -o split_failure split_failure.c -lpthread\n\
 * Run as root on a kernel with THP (madvise or always), cgroup v2 with the memory\n\
 * controller, swap configured (CONFIG_SWAP) and PAGEMAP_SCAN (6.7+).\n\
 *\n\
 * Each test runs one short program of system calls on a THP-backed arena and checks the\n\
 * contract of a kernel whose PMD split can fail: every call returns within 10 s (a page\n\
 * fault may instead retry on OOM: the test is then skipped); after MADV_DONTNEED returns 0\n\
 * its range reads zero; after MADV_GUARD_INSTALL returns 0 its range is guard pages; after\n\
 * mremap() or munmap() returns 0 the old range is unmapped.\n\
 *\n\
 * memcg.*: no fault injection. The program runs in a new memory cgroup (oom_score_adj\n\
 * -1000) that is put at its limit, without swap, during the calls whose allocations the\n\
 * program plans to fail, so that their page-table allocations really fail.\n\
 * inject.*: the planned allocation failures are injected through splitfuzz's kernel patch\n\
 * (/sys/kernel/debug/splitfuzz); skipped on kernels without it.\n\
 *\n\
 * The runtime below (up to `#undef main`) is the one every splitfuzz C reproducer carries;\n\
 * SPLITFUZZ_REPLAY=DIR judges saved transcripts (DIR/<fixture>.<test>.out) instead of running.\n\
 */\n",
    );
}

/// The names the runtime reads per program, the #defines and the tables:
/// `(name, field of struct sf_program, its declaration)`.
fn macro_names() -> Vec<(&'static str, String, String)> {
    let prog = Program::parse("").expect("the empty program parses");
    let mut v: Vec<(&'static str, String, String)> = program_defines(&prog, None, false)
        .into_iter()
        .map(|d| {
            let field = d.name.to_ascii_lowercase();
            let sep = if d.ty.ends_with('*') { "" } else { " " };
            (d.name, field.clone(), format!("{}{sep}{field}", d.ty))
        })
        .collect();
    for (name, decl) in [
        ("op_kind", "const char *op_kind"),
        ("op_mm", "const int *op_mm"),
        ("limit_slack", "const long *limit_slack"),
        ("op_text", "const char *const *op_text"),
        ("expected", "const char *const *expected"),
        ("expected_alloc", "const long (*expected_alloc)[2]"),
        ("hung_ok", "const char *hung_ok"),
    ] {
        v.push((name, name.to_string(), decl.to_string()));
    }
    v
}

/// `struct sf_program`, the current one, and the macros through which the
/// runtime reads it.
fn program_struct(c: &mut String) {
    c.push_str("\n/* A program: what runtime.c reads as #defines and tables in a reproducer. */\nstruct sf_program {\n\tconst char *name;\n");
    let names = macro_names();
    for (_, _, decl) in &names {
        let _ = writeln!(c, "\t{decl};");
    }
    c.push_str("\tconst char *(*do_op)(unsigned i);\n};\n\n");
    c.push_str("/* The program being run; the runtime reads it through these macros. */\nstatic const struct sf_program *sf_cur;\n");
    for (name, field, _) in &names {
        let _ = writeln!(c, "#define {name} (sf_cur->{field})");
    }
}

/// The op's tables, its `struct sf_program` and its TEST_F, for one trigger
/// (`memcg`, or injection); an error when the program cannot run that way.
fn program_part(
    out: &mut String,
    k: usize,
    name: &str,
    inp: &KselftestInput,
    memcg: bool,
) -> Result<(), String> {
    let mut whole = inp.prog.clone();
    if let (false, Some(w)) = (memcg, &inp.whole_plan) {
        whole.faults = w.clone();
    }
    let prog = &whole;
    if prog.ops.len() > u32::MAX as usize {
        return Err("too many ops".into());
    }
    if !memcg && (prog.faults.pte_alloc.is_op_scoped() || prog.faults.thp.is_op_scoped()) {
        return Err("an op-scoped fault plan is not armed per op by the C runtime".into());
    }
    if !memcg && prog.faults.pte_alloc.is_never() && prog.faults.thp.is_never() {
        return Err("no fault plan".into());
    }
    let policy = super::emit_policy(prog)?;
    let p = predict(prog, &policy, memcg)?;
    if memcg && p.limits.iter().all(|&l| l < 0) {
        return Err("no op holds a planned failure: no limit".into());
    }
    let fixture = if memcg { "memcg" } else { "inject" };
    let pfx = format!("sf{k}{}_", &fixture[..1]);
    let mut c = String::new();
    let _ = writeln!(c, "\n/*\n * {}: {fixture}", inp.source.replace("*/", "* /"));
    for n in &inp.notes {
        let _ = writeln!(c, " * {}", n.replace("*/", "* /"));
    }
    c.push_str(" *\n");
    for l in prog.to_text().lines() {
        let _ = writeln!(c, " *   {}", l.replace("*/", "* /"));
    }
    if memcg {
        let _ = writeln!(
            c,
            " *\n * memcg trigger: {}",
            p.memcg_note.replace("*/", "* /")
        );
    }
    c.push_str(" */\n");
    op_tables(&mut c, &pfx, prog, &p.limits);
    let faults: Vec<bool> = prog
        .ops
        .iter()
        .map(|l| matches!(l.op, Op::Touch { .. }))
        .collect();
    expected_tables(&mut c, &pfx, None, &faults);
    do_op(&mut c, &format!("{pfx}do_op"), prog);
    let _ = writeln!(
        c,
        "\nstatic const struct sf_program {pfx}prog = {{\n\t.name = \"{fixture}.{name}\","
    );
    for d in program_defines(prog, None, memcg) {
        let _ = writeln!(c, "\t.{} = {},", d.name.to_ascii_lowercase(), d.value);
    }
    for t in [
        "op_kind",
        "op_mm",
        "limit_slack",
        "op_text",
        "expected",
        "expected_alloc",
        "hung_ok",
        "do_op",
    ] {
        let _ = writeln!(c, "\t.{t} = {pfx}{t},");
    }
    c.push_str("};\n");
    let _ = writeln!(
        c,
        "\nTEST_F_TIMEOUT({fixture}, {name}, {TEST_TIMEOUT_S})\n{{\n\tstruct sf_run r;\n\n\tsf_run_program(&{pfx}prog, &r);\n\tif (r.status == 2)\n\t\tSKIP(return, \"%s\", sf_first_line(r.err));\n\tsf_log_notes(&r);"
    );
    for (i, l) in prog.ops.iter().enumerate() {
        op_checks(&mut c, i, &l.op, l.mm, &l.to_string());
    }
    c.push_str("}\n");
    out.push_str(&c);
    Ok(())
}

/// The C string literal of `t`'s contents.
fn lit(t: &str) -> String {
    super::c_str(t)
}

/// The assertions of op `i` (see the module doc).
fn op_checks(c: &mut String, i: usize, op: &Op, mm: usize, text: &str) {
    let call = syscall_name(op);
    let _ = writeln!(c, "\t/* op {i}: {text} */");
    if matches!(op, Op::Touch { .. }) {
        let _ = writeln!(
            c,
            "\tif (sf_hung(&r, {i}))\n\t\tSKIP(return, \"op {i} `{}` ({call}) did not return: an OOM retry of a page fault, which the contract allows; the ops after it did not run\");",
            lit(text)
        );
        return;
    }
    let _ = writeln!(
        c,
        "\tASSERT_FALSE(sf_hung(&r, {i})) TH_LOG(\"op {i} `{}`: {call} did not return within %d s\", OP_TIMEOUT_MS / 1000);",
        lit(text)
    );
    let check = |c: &mut String, f: &str, s: u64, l: u64, what: &str| {
        let _ = writeln!(
            c,
            "\tif (sf_ok(&r, {i}))\n\t\tEXPECT_EQ(0, {f}(&r, {i}, {mm}, {s:#x}, {l:#x})) TH_LOG(\"op {i} `{}`: {call} returned 0, {what}: %s\", sf_line(sf_obs(&r, {i}, {mm})));",
            lit(text)
        );
    };
    match *op {
        Op::Madvise {
            start,
            len,
            advice: Advice::Dontneed,
        } => check(
            c,
            "sf_pages_not_zero",
            start,
            len,
            "but pages of its range do not read zero",
        ),
        Op::Madvise {
            start,
            len,
            advice: Advice::GuardInstall,
        } => check(
            c,
            "sf_pages_not_guard",
            start,
            len,
            "but pages of its range are not guard pages",
        ),
        Op::Munmap { start, len } => check(
            c,
            "sf_pages_mapped",
            start,
            len,
            "but pages of its range are still mapped",
        ),
        Op::Mremap { old, len, new } => {
            // The old range less the new one.
            let (a, b) = (old, old + len);
            let (x, y) = (new, new + len);
            let mut parts = Vec::new();
            if a < x.min(b) {
                parts.push((a, x.min(b) - a));
            }
            if y.max(a) < b {
                parts.push((y.max(a), b - y.max(a)));
            }
            for (s, l) in parts {
                check(
                    c,
                    "sf_pages_mapped",
                    s,
                    l,
                    "but pages of the old range are still mapped",
                );
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(text: &str) -> KselftestInput {
        KselftestInput {
            source: "crashes/x/no-silent-skip-zap_pmd_range.txt".into(),
            notes: vec![],
            prog: Program::parse(text).unwrap(),
            whole_plan: None,
        }
    }

    #[test]
    fn a_memcg_expressible_finding_gets_both_tests_with_its_assertion() {
        let (c, none) = emit_kselftest(&[input(
            "policy lazy-v3\nfail pte_alloc nth=1\nmmap 28M 4M thp\ntouch 30464K 256K write\nmadvise 29440K 2M dontneed\n",
        )])
        .unwrap();
        assert!(none.is_empty(), "{none:?}");
        assert!(c.contains("TEST_F_TIMEOUT(memcg, no_silent_skip_zap_pmd_range, 300)"));
        assert!(c.contains("TEST_F_TIMEOUT(inject, no_silent_skip_zap_pmd_range, 300)"));
        assert!(c.contains("EXPECT_EQ(0, sf_pages_not_zero(&r, 2, 0, 0x1cc0000, 0x200000))"));
        assert!(c.contains("SKIP(return, \"op 1 `touch 30464K 256K write` (a write fault)"));
        assert!(c.contains("#define main sf_runtime_main\n"));
        assert!(c.trim_end().ends_with("TEST_HARNESS_MAIN"));
        // The runtime is the reproducers' own, whole.
        let (_, runtime) = runtime_parts();
        assert!(c.contains(runtime));
    }

    #[test]
    fn mremap_checks_the_old_range_less_the_new() {
        let c = emit_kselftest(&[input(
            "fail pte_alloc nth=1\nmmap 0 4M thp\ntouch 0 4M write\nmremap 0 2M 1M\n",
        )])
        .unwrap()
        .0;
        // old [0, 2M), new [1M, 3M): [0, 1M) must be unmapped.
        assert!(
            c.contains("sf_pages_mapped(&r, 2, 0, 0x0, 0x100000)"),
            "{c}"
        );
        assert_eq!(c.matches("sf_pages_mapped(&r, 2,").count(), 1, "{c}");
        let c = emit_kselftest(&[input(
            "fail pte_alloc nth=1\nmmap 0 8M thp\ntouch 0 8M write\nmremap 2M 4M 3M\n",
        )])
        .unwrap()
        .0;
        // old [2M, 6M), new [3M, 7M): [2M, 3M) must be unmapped.
        assert!(
            c.contains("sf_pages_mapped(&r, 2, 0, 0x200000, 0x100000)"),
            "{c}"
        );
    }

    #[test]
    fn a_program_with_no_test_is_named_and_none_at_all_is_an_error() {
        let e = emit_kselftest(&[input("mmap 0 2M thp\n")]).unwrap_err();
        assert!(e.contains("no test"), "{e}");
        let (c, none) = emit_kselftest(&[
            input("mmap 0 2M thp\n"),
            input("fail pte_alloc nth=1\nmmap 0 4M thp\ntouch 0 4M write\nmadvise 0 1M dontneed\n"),
        ])
        .unwrap();
        assert_eq!(none.len(), 1, "{none:?}");
        assert!(c.contains("TEST_F_TIMEOUT(inject, no_silent_skip_zap_pmd_range_1, 300)"));
    }

    #[test]
    fn an_op_scoped_plan_gets_an_inject_test_from_its_whole_program_plan() {
        let mut i = input(
            "fail pte_alloc op=2:nth=1\nmmap 0 4M thp\ntouch 0 4M write\nmadvise 0 1M dontneed\n",
        );
        assert!(
            emit_kselftest(std::slice::from_ref(&i)).is_err() || {
                let (c, _) = emit_kselftest(std::slice::from_ref(&i)).unwrap();
                !c.contains("TEST_F_TIMEOUT(inject,")
            }
        );
        i.whole_plan = Some(Program::parse("fail pte_alloc nth=2\n").unwrap().faults);
        let (c, _) = emit_kselftest(&[i]).unwrap();
        assert!(
            c.contains("TEST_F_TIMEOUT(inject, no_silent_skip_zap_pmd_range, 300)"),
            "{c}"
        );
        assert!(c.contains(".pte_plan = \"nth=2\","), "{c}");
    }
}
