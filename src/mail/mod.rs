//! `splitfuzz report --mail FINDING`: a finding as plain text ready to paste
//! into a reply on the list: a subject, the kernel and the series, the call
//! chain, the program (ours and syzkaller's), what the kernel logged,
//! memory.events under the memcg trigger, and the C reproducer.
//!
//! A finding is a file of crashes/ (its comments: `# splitfuzz finding:
//! SIG`, `# severity:`, `# kernel: CHAIN`, `# as posted: ...`, `#
//! reproduced without injection ...` with memory.events), or a `vm check`
//! finding (`# vm check finding: SIG [SEVERITY]`, its detail, `# kernel:
//! LOG LINE`s). What a file does not hold is said, with the command that
//! gets it.

use crate::base::caller::SplitCaller;
use crate::csource::{emit_c, emit_c_with, syscall_name};
use crate::prog::Program;
use crate::syz::{emit_syz, SyzKind};
use std::fmt::Write as _;

/// The series each lazy policy models: (version, its thread's subject, what
/// it is).
fn series(policy: &str) -> Option<(&'static str, &'static str, &'static str)> {
    Some(match policy {
        "lazy-v1" => (
            "RFC v1",
            "Re: [RFC 1/2] mm: thp: allocate PTE page tables lazily at split time",
            "RFC v1 (2026-02-11)",
        ),
        "lazy-v2" => (
            "RFC v2",
            "Re: [RFC v2] mm: thp: allocate PTE page tables lazily at split time",
            "RFC v2 (2026-02-26, 21 patches)",
        ),
        "lazy-v3" => (
            "v3",
            "Re: [v3 00/24] mm: thp: lazy PTE page table allocation at PMD split time",
            "v3 (2026-03-27, 24 patches, on mm-unstable d6f51e38)",
        ),
        _ => return None,
    })
}

/// The comment lines of a finding file, without their `# `.
fn comments(raw: &str) -> Vec<&str> {
    raw.lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect()
}

fn after<'a>(cs: &[&'a str], key: &str) -> Option<&'a str> {
    cs.iter().find_map(|c| c.strip_prefix(key)).map(str::trim)
}

fn indent(s: &mut String, text: &str) {
    for l in text.lines() {
        let _ = writeln!(s, "  {l}");
    }
}

/// The mail for the finding `raw` (the file's text), read from `source`.
pub fn mail_report(source: &str, raw: &str) -> Result<String, String> {
    let prog = Program::parse(raw).map_err(|e| format!("{source}: {e}"))?;
    let cs = comments(raw);
    let crash = after(&cs, "splitfuzz finding:");
    let check = after(&cs, "vm check finding:");
    if crash.is_none() && check.is_none() {
        return Err(format!(
            "{source}: not a finding (no `# splitfuzz finding:` or `# vm check finding:` line)"
        ));
    }
    let policy = prog.policy.clone().unwrap_or_default();
    let ser = series(&policy);
    // The model's violation under the program's `policy` line (kernel
    // geometry), if it has one.
    let violation = prog
        .policy
        .as_ref()
        .and_then(|_| crate::run::program_policy(&prog, None, &[]).ok())
        .and_then(|p| {
            crate::run::run(
                &prog,
                &crate::run::RunConfig::new(p, crate::base::Geometry::KERNEL),
            )
            .violation
        });
    // The op that breaks: the model's violation, else the op-scoped plan's.
    let op = violation
        .as_ref()
        .map(|v| v.op_index)
        .or_else(|| prog.faults.pte_alloc.scoped_op())
        .or_else(|| prog.faults.thp.scoped_op())
        .filter(|&i| i < prog.ops.len());
    // A contract finding's program goes on after the op that broke; the
    // breach shows at that op, so the mail's program ends there.
    let mut prog = prog;
    let mut cut = None;
    if let (Some(_), Some(i)) = (check, op) {
        if i + 1 < prog.ops.len() {
            cut = Some(prog.ops.len() - i - 1);
            prog.ops.truncate(i + 1);
        }
    }
    let mut s = String::new();
    // Subject and summary.
    let what = crash
        .or(check.map(|c| c.rsplit_once(" [").map(|x| x.0).unwrap_or(c)))
        .unwrap_or("");
    let call = op
        .map(|i| syscall_name(&prog.ops[i].op))
        .unwrap_or("a call");
    let subject = match (ser, crash) {
        (Some((_, subj, _)), Some(_)) => subj.to_string(),
        _ => {
            format!("[BUG] mm: thp: {call}: {what} when a PMD split's page-table allocation fails")
        }
    };
    let _ = writeln!(s, "Subject: {subject}\n");
    let severity = after(&cs, "severity:")
        .map(str::to_string)
        .or_else(|| {
            check
                .and_then(|c| c.rsplit_once('['))
                .map(|(_, x)| x.trim_end_matches(']').to_string())
        })
        .or_else(|| violation.as_ref().map(|v| v.severity.to_string()))
        .unwrap_or_else(|| "see below".into());
    let _ = writeln!(
        s,
        "{call} breaks when the page-table allocation of a PMD split fails: {what} ({severity})."
    );
    if let Some(v) = &violation {
        let _ = writeln!(s, "{}", v.message);
    }
    for c in &cs {
        if c.starts_with('`') {
            let _ = writeln!(s, "{c}");
        }
    }
    // Kernel and series.
    let _ = writeln!(s, "\nKernel:");
    match ser {
        Some((v, _, desc)) => {
            let _ = writeln!(
                s,
                "  the series \"mm: thp: lazy PTE page table allocation at PMD split time\" {desc}, found in\n  splitfuzz's executable model of {v} on Linux 7.2 (policy {policy})."
            );
            if !cs.iter().any(|c| c.contains("7.2.13 + ")) {
                let _ = writeln!(
                    s,
                    "  Not recorded as run on a kernel with the series applied: `splitfuzz vm build --source TREE`,\n  then `splitfuzz vm run --kernel BZIMAGE {source}`."
                );
            }
        }
        None if check.is_some() => {
            let _ = writeln!(
                s,
                "  the kernel `splitfuzz vm check --kernel BZIMAGE` judged (the finding file does not record its version: give it here)."
            );
        }
        None => {
            let _ = writeln!(s, "  policy {policy}: not one of the posted series.");
        }
    }
    for c in cs
        .iter()
        .filter(|c| c.starts_with("  ") || c.starts_with("reproduced"))
    {
        let _ = writeln!(s, "  {}", c.trim());
    }
    // Call chain.
    let _ = writeln!(s, "\nCall chain:");
    let chain = if crash.is_some() {
        after(&cs, "kernel:").map(str::to_string)
    } else {
        None
    }
    .or_else(|| {
        violation
            .as_ref()
            .and_then(|v| SplitCaller::call_chain(&v.function))
            .map(str::to_string)
    });
    match chain {
        Some(c) => {
            let _ = writeln!(s, "  {c}");
        }
        None => {
            let _ = writeln!(
                s,
                "  not known from a contract finding: the op is {call}{}; the kernel log below names the allocation that failed.",
                op.map(|i| format!(" (op {i})")).unwrap_or_default()
            );
        }
    }
    if let Some(p) = after(&cs, "as posted:") {
        let _ = writeln!(s, "  as posted: {p}");
    }
    // The program.
    let _ = writeln!(
        s,
        "\nProgram (splitfuzz's text form: one call per line, ranges are offsets into a 32 MiB\narena at 0x7e3fff000000; `fail pte_alloc nth=K` fails the K-th pte_alloc_one()):"
    );
    indent(&mut s, &prog.to_text());
    if let Some(n) = cut {
        let _ = writeln!(
            s,
            "  ({n} later op(s) of the finding's program left out: the breach shows at the last op here)"
        );
    }
    let _ = writeln!(
        s,
        "\nThe same as a syzkaller program (fail_nth marks the call whose allocation fails):"
    );
    match emit_syz(&prog, SyzKind::Repro, source) {
        Ok(t) => indent(&mut s, &t),
        Err(e) => {
            let _ = writeln!(s, "  not expressible: {e}");
        }
    }
    // The kernel's log.
    let _ = writeln!(s, "\nWhat the kernel logged:");
    let log: Vec<&&str> = if check.is_some() {
        cs.iter().filter(|c| c.starts_with("kernel: ")).collect()
    } else {
        Vec::new()
    };
    if log.is_empty() {
        let _ = writeln!(
            s,
            "  not recorded in this finding file; `splitfuzz vm run --kernel BZIMAGE {source}` prints the\n  kernel's evidence (its log lines, whether the task survived SIGKILL)."
        );
    }
    for l in log {
        let _ = writeln!(s, "  {}", &l["kernel: ".len()..]);
    }
    // memory.events.
    let _ = writeln!(
        s,
        "\nmemory.events under the memcg trigger (no fault injection):"
    );
    let events: Vec<&&str> = cs.iter().filter(|c| c.contains("memory.events")).collect();
    for e in &events {
        let _ = writeln!(s, "  {}", e.trim());
    }
    let memcg_c = emit_c_with(&prog, true);
    if events.is_empty() {
        match &memcg_c {
            Ok(_) => {
                let _ = writeln!(
                    s,
                    "  not recorded in this finding file; `splitfuzz vm run --trigger memcg --kernel BZIMAGE {source}`\n  prints them, and so does the C reproducer below (`# memory.events after op I`)."
                );
            }
            Err(e) => {
                let _ = writeln!(s, "  none: the plan is {e}");
            }
        }
    }
    // The C reproducer: without injection where it can be, else with ours.
    let (c, how) = match memcg_c {
        Ok(c) => (c, "no fault injection: it puts a memory cgroup at its limit during the failing call; needs root and cgroup v2"),
        Err(_) => (
            emit_c(&prog).map_err(|e| format!("{source}: {e}"))?,
            "the failure is injected through splitfuzz's kernel patch (/sys/kernel/debug/splitfuzz)",
        ),
    };
    let _ = writeln!(
        s,
        "\nC reproducer ({how}). Build: gcc -O2 -Wall repro.c -lpthread; exit 0 means reproduced:\n\n---8<--- repro.c\n{c}---8<---"
    );
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZAP: &str = include_str!("../../crashes/lazy-v3/no-silent-skip-zap_pmd_range.txt");

    #[test]
    fn a_crash_file_gives_every_section() {
        let m = mail_report("crashes/lazy-v3/no-silent-skip-zap_pmd_range.txt", ZAP).unwrap();
        assert!(m.starts_with(
            "Subject: Re: [v3 00/24] mm: thp: lazy PTE page table allocation at PMD split time\n"
        ));
        for want in [
            "madvise(MADV_DONTNEED) breaks when",
            "found in\n  splitfuzz's executable model of v3 on Linux 7.2 (policy lazy-v3)",
            "zap_vma_range_batched → zap_pmd_range",
            "madvise 29440K 2M dontneed",
            "(fail_nth: 1) # op 2: madvise 29440K 2M dontneed",
            "memory.events max 18 oom 5 oom_kill 0",
            "#define MEMCG 1",
            "---8<--- repro.c",
        ] {
            assert!(m.contains(want), "no `{want}` in:\n{m}");
        }
    }

    #[test]
    fn a_vm_check_finding_gives_its_kernel_log() {
        let f = "# vm check finding: page-neither-old-nor-new madvise dontneed [data-loss]\n# `madvise 3840K 1280K dontneed` returned ok (deposit: ok)\n# kernel: [   25.389550] splitfuzz: failing pte_alloc call 1\nfail pte_alloc op=2:nth=1\nmmap 1536K 8M thp\ntouch 1536K 5M write\nmadvise 3840K 1280K dontneed\n";
        let m = mail_report("x.txt", f).unwrap();
        assert!(
            m.starts_with("Subject: [BUG] mm: thp: madvise(MADV_DONTNEED):"),
            "{m}"
        );
        assert!(
            m.contains("  [   25.389550] splitfuzz: failing pte_alloc call 1"),
            "{m}"
        );
        assert!(m.contains("splitfuzz vm run --trigger memcg"), "{m}");
    }

    #[test]
    fn a_program_that_is_not_a_finding_is_an_error() {
        assert!(mail_report("x", "mmap 0 2M thp\n")
            .unwrap_err()
            .contains("not a finding"));
    }
}
