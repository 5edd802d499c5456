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
}
