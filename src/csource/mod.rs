//! `splitfuzz emit-c FILE`: a standalone C reproducer (libc only) of a program:
//! the same system calls as the shared executor of `splitfuzz real` and `vm
//! run` (src/host/), one process per mm driven over pipes, and after every op
//! the same observation lines (`op I res R` and one `mm ...` line per live
//! process).
//!
//! The prediction of the model under the program's policy (its `policy` line,
//! else deposit), with its fault plan, in the kernel geometry is embedded:
//! every line that differs is reported on stderr (`# model predicted: ...`).
//! For a finding (the model breaks an invariant at op K) the prediction runs
//! through op K: a livelock is an op that does not return within 10 s.
//! Exit status: 0 the kernel did what the model predicts (a finding:
//! reproduced), 1 it did not, 2 it cannot run here.
//!
//! The fault plan is written to our kernel patch's interface
//! (/sys/kernel/debug/splitfuzz, kernel/patches/; any kernel `splitfuzz vm
//! build` makes has it): `pte_alloc_one()` calls and THP allocations are
//! counted across the program's processes (make-it-fail), so the planned call
//! fails on the kernel exactly where it fails in the model, whatever the
//! policy. After every op the counts are compared with the model's. With a
//! plan it first writes 2 to /proc/sys/vm/drop_caches, so that the huge zero
//! folio's first use allocates, as in the model's fresh kernel. `splitfuzz vm
//! exec BINARY...` runs reproducers in the guest.
//!
//! # Two executors
//!
//! The reproducer's runtime, runtime.c (a C file, copied verbatim), is a
//! second executor beside the Rust one in src/host/. We keep both: the
//! reproducer must build with nothing but a C compiler on a kernel
//! developer's machine, and the Rust executor is what the host oracle, the
//! guest and the tests share (and it reports more than the transcript). A
//! reproducer that checked only its finding's symptom would need less C, but
//! every reproducer compares every observation and allocation count with the
//! model, which the `vm exec` tests and the memcg reproducers rely on. The
//! price, drift between the two, is paid by tests that run the same programs
//! through both and require the same transcript byte for byte: on the host
//! (tests/real.rs `c_and_rust_executors_agree`) and in the guest
//! (tests/vm.rs `c_and_rust_executors_agree_in_the_guest`). docs/csource.md
//! has the reasoning.
//!
//! A reproducer is: a comment with the program (`head_comment`), runtime.c
//! up to its `#include "program.h"` line, in place of that line the
//! program's #defines and tables (`defines`, `op_tables`,
//! `expected_tables`; program.h is an example), the rest of runtime.c, and
//! the program's `do_op()` (`do_op`).

use crate::base::NPAGES;
use crate::host::{ARENA_BASE, GUARD_HI, GUARD_LO};
use crate::model::policy::Policy;
use crate::observe::{ModelRun, Transcript};
use crate::prog::{Advice, Op, Program, ARENA_SIZE, MAX_MMS};
use crate::run;
use std::fmt::Write as _;

pub mod kselftest;
pub use kselftest::{emit_kselftest, syscall_name, KselftestInput};

/// The C executor: runtime.c from its `#define _GNU_SOURCE` on (its head
/// comment is not copied), split at its `#include "program.h"` line, which
/// the program's #defines and tables replace (see runtime.c).
const RUNTIME_C: &str = include_str!("runtime.c");

/// runtime.c's two parts: the includes (up to the `#include "program.h"`
/// line), and the runtime after that line.
pub(crate) fn runtime_parts() -> (&'static str, &'static str) {
    const START: &str = "\n#define _GNU_SOURCE\n";
    const PROGRAM: &str = "\n#include \"program.h\"\n";
    let start = RUNTIME_C
        .find(START)
        .expect("runtime.c defines _GNU_SOURCE")
        + 1;
    let at = RUNTIME_C
        .find(PROGRAM)
        .expect("runtime.c includes program.h");
    (&RUNTIME_C[start..=at], &RUNTIME_C[at + PROGRAM.len()..])
}

/// A C string literal's contents.
pub(crate) fn c_str(t: &str) -> String {
    t.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The policy a reproducer predicts: the program's `policy` line, else deposit.
pub fn emit_policy(prog: &Program) -> Result<Policy, String> {
    let name = prog.policy.as_deref().unwrap_or("deposit");
    run::program_policy(prog, Some(name), &[])
}

/// The C reproducer of `prog` (see the module doc).
pub fn emit_c(prog: &Program) -> Result<String, String> {
    emit_c_with(prog, false)
}

/// `emit_c`, or with `memcg` the reproducer that realises the plan without
/// fault injection: it creates a cgroup-v2 memory cgroup, runs the program's
/// processes in it with oom_score_adj -1000, and puts it at its limit during
/// the ops that hold the planned failures (memcg.rs). It predicts what the
/// model predicts at those limits; a plan the model cannot predict there is
/// an error (with the reasons).
///
/// The reproducer: a comment with the program, runtime.c's includes, the
/// program's #defines and tables, the runtime, the program's `do_op()`.
pub fn emit_c_with(prog: &Program, memcg: bool) -> Result<String, String> {
    if prog.ops.len() > u32::MAX as usize {
        return Err("too many ops".into());
    }
    if !memcg && (prog.faults.pte_alloc.is_op_scoped() || prog.faults.thp.is_op_scoped()) {
        return Err("an op-scoped fault plan (op=I:..., from-op=I) is armed per op, which the C runtime does not do yet: use --trigger memcg, or `vm run` with the text program".into());
    }
    let policy = emit_policy(prog)?;
    let p = predict(prog, &policy, memcg)?;
    let (includes, runtime) = runtime_parts();
    let mut c = String::new();
    head_comment(
        &mut c,
        prog,
        &policy,
        memcg.then_some(p.memcg_note.as_str()),
    );
    c.push_str(includes);
    geometry(&mut c);
    for d in program_defines(prog, Some(&p.run), memcg) {
        let _ = writeln!(c, "#define {} {}", d.name, d.value);
    }
    op_tables(&mut c, "", prog, &p.limits);
    let hung_ok: Vec<bool> = p.run.t.results[..prog.ops.len()]
        .iter()
        .map(|r| r.as_deref() == Some("oom-loop"))
        .collect();
    expected_tables(&mut c, "", Some(&p.run.t), &hung_ok);
    c.push_str(runtime);
    do_op(&mut c, "do_op", prog);
    Ok(c)
}

/// What a reproducer predicts.
pub(crate) struct Prediction {
    /// The model's run (with `memcg`, at the cgroup's limits).
    pub(crate) run: ModelRun,
    /// Per op: -1, or the pages it may free (the memcg trigger's limit).
    pub(crate) limits: Vec<i64>,
    /// The memcg trigger: how the plan is realised ("" without a limit).
    pub(crate) memcg_note: String,
}

/// The model's prediction of `prog` in the kernel geometry: under its plan,
/// or with `memcg` at the memory-cgroup limits that realise the plan (an
/// error when they cannot).
pub(crate) fn predict(prog: &Program, policy: &Policy, memcg: bool) -> Result<Prediction, String> {
    let linux = crate::model::mm::LINUX_DEFAULT;
    let mut limits: Vec<i64> = vec![-1; prog.ops.len()];
    if !memcg {
        return Ok(Prediction {
            run: crate::observe::model_run_with(prog, policy, linux, &[]),
            limits,
            memcg_note: String::new(),
        });
    }
    let re = crate::observe::memcg::realise(prog, policy, linux);
    if !re.inexpressible.is_empty() {
        return Err(format!(
            "not expressible without injection: {}",
            re.inexpressible.join("; ")
        ));
    }
    for (i, slack) in re.limits() {
        limits[i] = slack as i64;
    }
    Ok(Prediction {
        run: crate::observe::memcg::model_at_limits(prog, policy, linux, &re.limited, &[]),
        limits,
        memcg_note: re.summary(),
    })
}

/// The reproducer's head comment: the program, what it needs and prints, and
/// with `memcg_note` (the memcg trigger) how the plan is realised.
fn head_comment(c: &mut String, prog: &Program, policy: &Policy, memcg_note: Option<&str>) {
    let _ = writeln!(
        c,
        "/*\n * splitfuzz reproducer (generated by `splitfuzz emit-c`). Build: cc -O2 -Wall repro.c\n *"
    );
    for l in prog.to_text().lines() {
        let _ = writeln!(c, " *   {}", l.replace("*/", "* /"));
    }
    let _ = writeln!(
        c,
        " *\n * Runs as root on a kernel with THP (madvise or always) and PAGEMAP_SCAN (6.7+); a fault\n * plan needs our fault-plan interface (/sys/kernel/debug/splitfuzz: any kernel `splitfuzz vm\n * build` makes, e.g. `splitfuzz vm build --source YOUR_TREE`). Prints after every op `op I res\n * R` and one line per live process: change of VmPTE in tables, anon pages and THPs of the\n * arena (smaps), its VMAs, per-page state (. none, p anon, z zero page, H THP PMD, Z huge\n * zero PMD, s swap, g guard) and the tag read from each present page (wOP: written by op\n * OP). Predicted by the {} model (kernel geometry, Linux 7.2); differences go to stderr.\n * Exit: 0 as the model predicts (a finding: reproduced), 1 not, 2 cannot run here.\n */",
        policy
    );
    if let Some(note) = memcg_note {
        let _ = writeln!(
            c,
            "/*\n * Without fault injection (`emit-c --trigger memcg`): needs root, cgroup v2 at\n * /sys/fs/cgroup and a kernel with CONFIG_MEMCG and CONFIG_SWAP; no debugfs. The\n * plan is realised by memory-cgroup limits ({}); the prediction is the\n * model's at those limits. Allocation counts are not checked (no counting interface).\n */",
            if note.is_empty() {
                "no op holds a planned failure: no limit".to_string()
            } else {
                note.replace("*/", "* /")
            }
        );
    }
}

/// Whether an op of `prog` satisfies `f`.
fn uses(prog: &Program, f: impl Fn(&Op) -> bool) -> bool {
    prog.ops.iter().any(|l| f(&l.op))
}

/// One of the #defines the runtime reads per program (program.h lists
/// them): its name, the C type a kselftest's program struct gives it
/// (kselftest.rs), its value.
pub(crate) struct Define {
    pub(crate) name: &'static str,
    pub(crate) ty: &'static str,
    pub(crate) value: String,
}

/// The executor's geometry, the same for every program.
pub(crate) fn geometry(c: &mut String) {
    let _ = writeln!(c, "#define ARENA_BASE {ARENA_BASE:#x}ULL");
    let _ = writeln!(c, "#define ARENA_SIZE {ARENA_SIZE:#x}ULL");
    let _ = writeln!(c, "#define NPAGES {NPAGES}");
    let _ = writeln!(c, "#define GUARD_LO {GUARD_LO:#x}ULL");
    let _ = writeln!(c, "#define GUARD_HI {GUARD_HI:#x}ULL");
    let _ = writeln!(c, "#define MAX_MMS {MAX_MMS}");
}

/// The program's #defines: its size, plan and features, and the model's
/// finding (`mr`: the prediction; None: no finding predicted).
pub(crate) fn program_defines(prog: &Program, mr: Option<&ModelRun>, memcg: bool) -> Vec<Define> {
    let has_plan = !memcg && (!prog.faults.pte_alloc.is_never() || !prog.faults.thp.is_never());
    let uffd_use = uses(prog, |o| {
        matches!(
            o,
            Op::UffdWp { .. }
                | Op::UffdRegister { .. }
                | Op::UffdUnregister { .. }
                | Op::UffdMove { .. }
                | Op::PagemapScan { .. }
        )
    });
    let guard_use = uses(prog, |o| {
        matches!(
            o,
            Op::Madvise {
                advice: Advice::GuardInstall,
                ..
            }
        )
    });
    let (vop, vkind) = match mr.and_then(|m| m.violation_at) {
        Some((k, inv)) => (k as i64, inv.name()),
        None => (-1, ""),
    };
    let d = |name, ty, value: String| Define { name, ty, value };
    let flag = |b: bool| (b as u8).to_string();
    vec![
        d("NR_OPS", "int", prog.ops.len().to_string()),
        d("HAS_PLAN", "int", flag(has_plan)),
        d("MEMCG", "int", flag(memcg)),
        d(
            "PTE_PLAN",
            "const char *",
            format!("\"{}\"", prog.faults.pte_alloc),
        ),
        d(
            "THP_PLAN",
            "const char *",
            format!("\"{}\"", prog.faults.thp),
        ),
        d("UFFD_USE", "int", flag(uffd_use)),
        d("UFFD_ASYNC", "int", flag(prog.uffd_async)),
        d("GUARD_USE", "int", flag(guard_use)),
        d("VIOLATION_OP", "int", vop.to_string()),
        d("VIOLATION_KIND", "const char *", format!("\"{vkind}\"")),
        d(
            "VIOLATION_TEXT",
            "const char *",
            format!(
                "\"{}\"",
                c_str(mr.and_then(|m| m.violation.as_deref()).unwrap_or(""))
            ),
        ),
    ]
}

/// The per-op tables: kind, mm, the memcg trigger's slack (`limits`), text.
/// Each has at least one element, so that an empty program compiles.
pub(crate) fn op_tables(c: &mut String, pfx: &str, prog: &Program, limits: &[i64]) {
    let kinds: String = prog
        .ops
        .iter()
        .map(|l| match l.op {
            Op::Fork => 'f',
            Op::Exit => 'x',
            Op::Touch { .. } => 't',
            _ => 'o',
        })
        .collect();
    let _ = writeln!(c, "static const char {pfx}op_kind[] = \"{kinds}\";");
    let mms = if prog.ops.is_empty() {
        "0".to_string()
    } else {
        prog.ops
            .iter()
            .map(|l| l.mm.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(c, "static const int {pfx}op_mm[] = {{ {mms} }};");
    let _ = writeln!(
        c,
        "/* The memcg trigger: per op, -1 or the pages it may free (its limit is set that much lower). */"
    );
    let _ = writeln!(
        c,
        "static const long {pfx}limit_slack[] = {{ {}-1 }};",
        limits.iter().map(|x| format!("{x}, ")).collect::<String>()
    );
    let _ = writeln!(c, "static const char *const {pfx}op_text[] = {{");
    for l in &prog.ops {
        let _ = writeln!(c, "\t\"{l}\",");
    }
    let _ = writeln!(c, "\t\"\"\n}};");
}

/// The model's prediction per op (`expected`; None: no prediction):
/// result and observation lines, allocation counts; and per op whether it
/// may hang (`hung_ok`).
pub(crate) fn expected_tables(
    c: &mut String,
    pfx: &str,
    expected: Option<&Transcript>,
    hung_ok: &[bool],
) {
    let n = hung_ok.len();
    let _ = writeln!(
        c,
        "/* The model's prediction: result, then one line per live mm (NULL: no prediction). */"
    );
    let _ = writeln!(c, "static const char *const {pfx}expected[] = {{");
    for i in 0..n {
        match expected.and_then(|e| e.results[i].as_ref().map(|r| (r, &e.obs[i]))) {
            Some((r, obs)) => {
                let _ = write!(c, "\t\"{r}");
                for o in obs {
                    let _ = write!(c, "\\n\"\n\t\"{o}");
                }
                let _ = writeln!(c, "\",");
            }
            None => {
                let _ = writeln!(c, "\tNULL,");
            }
        }
    }
    let _ = writeln!(c, "\tNULL\n}};");
    let _ = writeln!(
        c,
        "/* pte_alloc_one() calls and THP allocations counted after each op (-1: none). */"
    );
    let _ = writeln!(c, "static const long {pfx}expected_alloc[][2] = {{");
    for i in 0..n {
        match expected.and_then(|e| e.allocs[i].filter(|_| e.results[i].is_some())) {
            Some((p, t)) => {
                let _ = writeln!(c, "\t{{ {p}, {t} }},");
            }
            _ => {
                let _ = writeln!(c, "\t{{ -1, -1 }},");
            }
        }
    }
    let _ = writeln!(c, "\t{{ -1, -1 }}\n}};");
    let _ = writeln!(
        c,
        "/* Ops the model ends in an OOM loop (a fault retried forever): a hang is expected. */"
    );
    let _ = writeln!(c, "static const char {pfx}hung_ok[] = {{");
    for &ok in hung_ok {
        let _ = writeln!(c, "\t{},", ok as u8);
    }
    let _ = writeln!(c, "\t0\n}};");
}

/// The program's `do_op()`: one case per op, calling the runtime.
pub(crate) fn do_op(c: &mut String, name: &str, prog: &Program) {
    let _ = write!(
        c,
        "\nstatic const char *{name}(unsigned i)\n{{\n\tswitch (i) {{\n"
    );
    for (i, l) in prog.ops.iter().enumerate() {
        let _ = writeln!(c, "\tcase {i}: /* {l} */");
        let _ = writeln!(c, "\t\t{}", op_call(i, &l.op));
    }
    c.push_str("\t}\n\treturn \"EINVAL\";\n}\n");
}

/// The C statement that does op `i`.
fn op_call(i: usize, op: &Op) -> String {
    match *op {
        Op::Mmap { start, len, thp } => {
            format!("return do_mmap({start:#x}, {len:#x}, {});", thp as u8)
        }
        Op::Munmap { start, len } => format!("return res(munmap(A({start:#x}), {len:#x}));"),
        Op::Mprotect { start, len, write } => format!(
            "return res(mprotect(A({start:#x}), {len:#x}, {}));",
            if write {
                "PROT_READ | PROT_WRITE"
            } else {
                "PROT_READ"
            }
        ),
        Op::Touch { start, len, write } => {
            format!(
                "return do_touch({i}, {start:#x}, {len:#x}, {});",
                write as u8
            )
        }
        Op::Madvise {
            start,
            len,
            advice: Advice::Pageout,
        } => format!("return do_pageout({start:#x}, {len:#x});"),
        Op::Madvise { start, len, advice } => format!(
            "return res(madvise(A({start:#x}), {len:#x}, {}));",
            match advice {
                Advice::Dontneed => "MADV_DONTNEED",
                Advice::Free => "MADV_FREE",
                Advice::Cold => "MADV_COLD_",
                Advice::Pageout => "MADV_PAGEOUT_",
                Advice::Collapse => "MADV_COLLAPSE_",
                Advice::GuardInstall => "102 /* MADV_GUARD_INSTALL */",
                Advice::GuardRemove => "103 /* MADV_GUARD_REMOVE */",
            }
        ),
        Op::Mremap { old, len, new } => {
            format!("return do_mremap({old:#x}, {len:#x}, {new:#x});")
        }
        Op::Pin { start, len } => format!("return do_pin({start:#x}, {len:#x});"),
        Op::Unpin { start, len } => format!("return do_unpin({start:#x}, {len:#x});"),
        Op::Reclaim { addr } => format!("return do_reclaim({addr:#x});"),
        Op::Migrate { addr } => format!("return do_migrate({addr:#x});"),
        Op::UffdRegister { start, len } => format!(
            "return do_uffd(UFFDIO_REGISTER_, ARENA_BASE + {start:#x}, {len:#x}, 2 /* MODE_WP */);"
        ),
        Op::UffdUnregister { start, len } => {
            format!("return do_uffd(UFFDIO_UNREGISTER_, ARENA_BASE + {start:#x}, {len:#x}, 0);")
        }
        Op::UffdWp { start, len, on } => format!(
            "return do_uffd(UFFDIO_WRITEPROTECT_, ARENA_BASE + {start:#x}, {len:#x}, {});",
            on as u8
        ),
        Op::UffdMove { dst, src, len } => format!(
            "return do_uffd(UFFDIO_MOVE_, ARENA_BASE + {dst:#x}, ARENA_BASE + {src:#x}, {len:#x});"
        ),
        Op::PagemapScan { start, len } => {
            format!("return do_pagemap_scan({start:#x}, {len:#x});")
        }
        Op::Mlock { start, len } => {
            format!("return res(syscall(SYS_mlock2, A({start:#x}), {len:#x}, 0));")
        }
        Op::Munlock { start, len } => format!("return res(munlock(A({start:#x}), {len:#x}));"),
        Op::Mbind { start, len, node } => {
            format!("return do_mbind({start:#x}, {len:#x}, {node});")
        }
        Op::DropCaches => {
            "return sf_write(\"/proc/sys/vm/drop_caches\", \"3\") ? res(-1) : \"ok\";".to_string()
        }
        Op::Fork | Op::Exit => "return \"ok\"; /* done by mm_loop() */".to_string(),
    }
}
