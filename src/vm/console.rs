//! The guest's console (the kernel log): which lines are complaints, and which
//! op of which program printed them (the executor marks both in the log).

/// Kernel log lines that are complaints (substrings).
pub const COMPLAINTS: &[&str] = &[
    "BUG:",
    "kernel BUG",
    "Oops",
    "WARNING:",
    "bad pmd",
    "Bad rss-counter",
    "Bad page state",
    "Bad page map",
    "Bad swap",
    "soft lockup",
    "blocked for more than",
    "Kernel panic",
    "general protection fault",
    "non-zero pgtables_bytes",
];

pub fn is_complaint(line: &str) -> bool {
    COMPLAINTS.iter().any(|c| line.contains(c))
}

/// The console lines of program `k` in `console` (from its begin marker to its
/// end marker or the end of the log), attributed to ops.
pub fn console_segment(
    console: &str,
    k: usize,
    nops: usize,
) -> (Vec<(Option<usize>, String)>, Option<usize>) {
    let begin = format!("splitfuzz: begin {k}");
    let end = format!("splitfuzz: end {k}");
    let mut out = Vec::new();
    let mut inside = false;
    let mut op: Option<usize> = None;
    let mut last = None;
    for l in console.lines() {
        let l = l.trim_end_matches('\r');
        if !inside {
            if l.ends_with(&begin) {
                inside = true;
                out.clear();
                op = None;
            }
            continue;
        }
        if l.ends_with(&end) {
            inside = false;
            continue;
        }
        if let Some(i) = l
            .rsplit_once("splitfuzz: op ")
            .and_then(|(_, r)| r.trim().parse::<usize>().ok())
        {
            op = Some(i);
            last = Some(i);
            continue;
        }
        if l.ends_with("splitfuzz: teardown") {
            op = Some(nops);
            continue;
        }
        out.push((op, l.to_string()));
    }
    (out, last)
}

/// The text of a console line after its printk timestamp ("[   1.234] ").
fn body(line: &str) -> &str {
    let l = line.trim_start();
    match l.strip_prefix('[').and_then(|r| r.split_once("] ")) {
        Some((_, rest)) => rest,
        None => l,
    }
}

/// A frame line of a kernel stack dump: " func+0x1a/0x40" (reliable frames
/// only; "? func+..." guesses are skipped). The function's name.
fn frame(b: &str) -> Option<&str> {
    let b = b.trim();
    if b.starts_with('?') {
        return None;
    }
    let (name, off) = b.split_once("+0x")?;
    (off.contains("/0x") && !name.is_empty() && !name.contains(' ')).then_some(name)
}

/// Does this line open a stack dump (dump_stack(), a WARNING's or a BUG's
/// register dump)? "CPU: 0 UID: 0 PID: 95 Comm: …" in 7.x.
fn opens_dump(b: &str) -> bool {
    b.starts_with("CPU: ") && (b.contains(" PID: ") || b.contains(" UID: ")) && b.contains("Comm:")
}

/// The kernel log of an op without its stack dumps, and the backtrace of the
/// first failure our interface injected (with `backtrace` on, kernel/patches/
/// 0001 dumps the stack of the first failure after each plan write): the
/// functions from the failing allocation outwards, to the system call or the
/// fault entry. A complaint's own dump is dropped from the lines but its
/// first line ("WARNING: …", "kernel BUG at …") is kept.
pub fn split_backtrace<'a>(
    lines: impl IntoIterator<Item = &'a str>,
) -> (Vec<&'a str>, Vec<String>) {
    // The functions of our interface and of dump_stack() itself, above the
    // allocation that failed.
    const OURS: &[&str] = &[
        "dump_stack_lvl",
        "dump_stack",
        "splitfuzz_should_fail",
        "splitfuzz_pte_alloc_one",
    ];
    const ENTRY: &[&str] = &["do_syscall_64", "asm_exc_page_fault", "exc_page_fault"];
    let mut kept = Vec::new();
    let mut trace: Vec<String> = Vec::new();
    let mut after_failure = false;
    let mut want = false;
    let mut inside = false;
    let mut done = false;
    for line in lines {
        let b = body(line);
        if !inside && opens_dump(b) {
            inside = true;
            want = after_failure && trace.is_empty() && !done;
            continue;
        }
        if inside {
            if b.trim() == "</TASK>" {
                inside = false;
                if want {
                    done = true;
                }
                continue;
            }
            if want && !done {
                if let Some(f) = frame(b) {
                    let ours = trace.is_empty() && OURS.contains(&f);
                    let past_entry = trace.last().is_some_and(|l| ENTRY.contains(&l.as_str()));
                    if !ours && !past_entry {
                        trace.push(f.to_string());
                    }
                }
            }
            continue;
        }
        // Our dump follows its "failing … call" line at once.
        after_failure = b.starts_with("splitfuzz: failing ");
        kept.push(line);
    }
    (kept, trace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_segments_attribute_lines_to_ops() {
        let con = "[ 1.0] boot\n[ 2.0] splitfuzz: begin 3\n[ 2.1] early\n[ 2.2] splitfuzz: op 0\n[ 2.3] WARNING: CPU: 0 PID: 9 at mm/x.c\n[ 2.4] splitfuzz: op 1\n[ 2.5] splitfuzz: teardown\n[ 2.6] BUG: Bad rss-counter state\n[ 2.7] splitfuzz: end 3\n[ 2.8] other\n";
        let (log, last) = console_segment(con, 3, 2);
        assert_eq!(last, Some(1));
        assert_eq!(log.len(), 3);
        assert_eq!(log[0].0, None);
        assert_eq!(log[1].0, Some(0));
        assert!(log[1].1.contains("WARNING"));
        assert_eq!(log[2].0, Some(2));
        assert!(is_complaint(&log[2].1));
        assert!(!is_complaint("splitfuzz: failing pte_alloc call 3"));
    }

    #[test]
    fn the_first_failures_backtrace_is_taken_and_dumps_are_dropped() {
        let con = "\
[ 5.0] splitfuzz: failing pte_alloc call 1 (splitfuzz pid 95)
[ 5.0] CPU: 1 UID: 0 PID: 95 Comm: splitfuzz Not tainted 7.2.13 #1 PREEMPT(voluntary)
[ 5.0] Hardware name: QEMU Standard PC (i440FX + PIIX, 1996)
[ 5.0] Call Trace:
[ 5.0]  <TASK>
[ 5.0]  dump_stack_lvl+0x5d/0x80
[ 5.0]  splitfuzz_should_fail+0xa5/0xc0
[ 5.0]  pte_alloc_one+0x10/0x30
[ 5.0]  ? __pfx_pte_alloc_one+0x10/0x10
[ 5.0]  __split_huge_pmd+0x61/0x120
[ 5.0]  zap_pmd_range+0x1c0/0x200
[ 5.0]  unmap_page_range+0x90/0x100
[ 5.0]  do_syscall_64+0x50/0x100
[ 5.0]  entry_SYSCALL_64_after_hwframe+0x76/0x7e
[ 5.0] RIP: 0033:0x4a2b3c
[ 5.0]  </TASK>
[ 5.1] splitfuzz: failing pte_alloc call 2 (splitfuzz pid 95)
[ 5.2] WARNING: CPU: 1 PID: 95 at mm/huge_memory.c:3000 __split_huge_pmd+0x1/0x2
[ 5.2] CPU: 1 UID: 0 PID: 95 Comm: splitfuzz Not tainted 7.2.13 #1
[ 5.2] Call Trace:
[ 5.2]  <TASK>
[ 5.2]  __split_huge_pmd+0x61/0x120
[ 5.2]  </TASK>
[ 5.3] done
";
        let (kept, trace) = split_backtrace(con.lines());
        assert_eq!(
            trace,
            [
                "pte_alloc_one",
                "__split_huge_pmd",
                "zap_pmd_range",
                "unmap_page_range",
                "do_syscall_64"
            ]
        );
        assert_eq!(kept.len(), 4, "{kept:?}");
        assert!(kept[0].contains("call 1") && kept[2].starts_with("[ 5.2] WARNING"));
        assert!(kept[3].ends_with("done"));
        // No failure line before the dump: a complaint's dump is not the
        // failing allocation's backtrace.
        let (_, none) = split_backtrace(con.lines().skip(1));
        assert!(none.is_empty());
    }
}
