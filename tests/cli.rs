//! The command line as a user meets it: the built binary run with
//! std::process::Command. Campaigns here are short (`--runs`, or a few seconds).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

mod common;
use common::{run_in as sf, text};

/// A fresh temporary folder per test.
fn tmp(name: &str) -> PathBuf {
    common::fresh_dir("cli", name)
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// The lazy-v1 finding whose harm appears in copy_pmd_range and whose caller is
/// copy_huge_pmd (fork of a pinned THP with a failed void split).
const COPY_PMD: &str = "policy lazy-v1\nfail pte_alloc nth=1\nmmap 26M 4352K thp\npin 30208K 256K\nfork\nexpect violation kernel-assertion copy_pmd_range\n";

// ------------------------------------------------------------------ usage

#[test]
fn no_arguments_prints_usage_and_exits_2() {
    let d = tmp("noargs");
    let o = sf(&d, &[]);
    assert_eq!(code(&o), 2);
    let e = text(&o.stderr);
    assert!(e.contains("Usage: splitfuzz <COMMAND>"), "{e}");
    for sub in ["run", "check", "fuzz", "report", "cmin"] {
        assert!(e.contains(&format!("  {sub} ")), "{sub} missing from:\n{e}");
    }
}

#[test]
fn usage_errors_are_printed_whole() {
    let d = tmp("usage");
    let o = sf(&d, &["fuzz"]);
    assert_eq!(code(&o), 2);
    let e = text(&o.stderr);
    assert!(
        e.contains("the following required arguments were not provided"),
        "{e}"
    );
    assert!(e.contains("--policy <POLICY>"), "the missing argument: {e}");
    assert!(e.contains("Usage: splitfuzz fuzz"), "the usage: {e}");
    let o = sf(&d, &["run", "--bogus", "x"]);
    assert_eq!(code(&o), 2);
    let e = text(&o.stderr);
    assert!(e.contains("unexpected argument '--bogus'"), "{e}");
    assert!(e.contains("Usage: splitfuzz run"), "{e}");
    let o = sf(&d, &["run"]);
    assert_eq!(code(&o), 2);
    assert!(text(&o.stderr).contains("<FILE>"), "{}", text(&o.stderr));
    // Help is not an error.
    let o = sf(&d, &["fuzz", "--help"]);
    assert_eq!(code(&o), 0);
    assert!(text(&o.stdout).contains("--log-every"));
}

// ------------------------------------------------------------ fuzz options

#[test]
fn fuzz_checks_every_option_before_the_first_campaign() {
    let d = tmp("validate");
    for (args, want) in [
        (&["--policy", "lazy-v3,bogus"][..], "unknown policy 'bogus'"),
        (
            &["--policy", "lazy-v3", "--override", "nope=error"][..],
            "unknown split caller 'nope'",
        ),
        (&["--policy", "lazy-v3", "--jobs", "0"][..], "--jobs 0"),
        (
            &["--policy", "lazy-v3", "--jobs", "100000"][..],
            "--jobs 100000",
        ),
        (&["--policy", "lazy-v3", "--runs", "0"][..], "--runs 0"),
        (
            &["--policy", "lazy-v3", "--time", "soon"][..],
            "bad duration 'soon'",
        ),
        (&["--policy", "lazy-v3", "--time", "0s"][..], "more than 0"),
        (&["--policy", "lazy-v3,lazy-v3"][..], "given twice"),
    ] {
        let start = Instant::now();
        let mut a = vec!["fuzz", "--crashes", "cr", "--out", "run"];
        a.extend_from_slice(args);
        let o = sf(&d, &a);
        assert_eq!(code(&o), 2, "{args:?}");
        let e = text(&o.stderr);
        assert!(e.contains(want), "{args:?}: {e}");
        assert_eq!(e.lines().count(), 1, "one clear line: {e}");
        assert!(!e.contains("panicked"));
        assert!(text(&o.stdout).is_empty(), "no campaign ran: {args:?}");
        assert!(start.elapsed() < Duration::from_secs(5), "{args:?}");
    }
    assert!(
        !d.join("cr").exists(),
        "nothing written before the checks pass"
    );
}

#[test]
fn an_unknown_policy_is_one_line_naming_every_preset_in_every_subcommand() {
    let d = tmp("bogus-policy");
    std::fs::write(d.join("prog.txt"), COPY_PMD).unwrap();
    for args in [
        &["diff", "--policy", "bogus", "--generate", "1"][..],
        &["diff", "--policy", "bogus", "prog.txt"][..],
        &[
            "fuzz",
            "--policy",
            "bogus",
            "--crashes",
            "cr",
            "--out",
            "run",
        ][..],
        &["run", "--policy", "bogus", "prog.txt"][..],
        &["check", "--policy", "bogus", "prog.txt"][..],
        &["minimize", "--policy", "bogus", "prog.txt"][..],
        &[
            "vm", "run", "--kernel", "none", "--policy", "bogus", "prog.txt",
        ][..],
    ] {
        let o = sf(&d, args);
        assert_eq!(code(&o), 2, "{args:?}");
        let e = text(&o.stderr);
        assert_eq!(e.lines().count(), 1, "{args:?}: one line: {e}");
        assert!(
            e.starts_with("splitfuzz: unknown policy 'bogus'"),
            "{args:?}: {e}"
        );
        for p in ["deposit", "lazy-v1", "lazy-v2", "lazy-v3", "lazy-fixed"] {
            assert!(e.contains(p), "{args:?}: {p} missing from {e}");
        }
        assert!(text(&o.stdout).is_empty(), "{args:?}");
    }
}

#[test]
fn durations_take_units_and_time_is_the_whole_run() {
    let d = tmp("durations");
    // 1h30m and 1d parse (--runs ends these campaigns).
    for t in ["1h30m", "1d"] {
        let o = sf(
            &d,
            &[
                "fuzz",
                "--policy",
                "deposit",
                "--time",
                t,
                "--runs",
                "50",
                "--crashes",
                "cr",
                "--out",
                t,
            ],
        );
        assert_eq!(code(&o), 0, "{t}: {}", text(&o.stderr));
    }
    let o = sf(
        &d,
        &[
            "fuzz", "--policy", "deposit", "--time", "1h30m", "--runs", "50", "--out", "x",
        ],
    );
    assert!(text(&o.stderr).contains("1h 30m"), "{}", text(&o.stderr));
    // Two policies share one budget of 2 s.
    let start = Instant::now();
    let o = sf(
        &d,
        &[
            "fuzz",
            "--policy",
            "lazy-fixed,deposit",
            "--time",
            "2s",
            "--crashes",
            "cr",
            "--out",
            "two",
        ],
    );
    let wall = start.elapsed();
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("2s in total (1s each)"),
        "{}",
        text(&o.stderr)
    );
    assert!(wall < Duration::from_millis(3500), "took {wall:?}");
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("two/run.json")).unwrap()).unwrap();
    let total: f64 = run["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["elapsed_s"].as_f64().unwrap())
        .sum();
    assert!(
        (1.8..2.6).contains(&total),
        "the policies took {total}s together"
    );
    // 500ms
    let o = sf(
        &d,
        &[
            "fuzz", "--policy", "deposit", "--time", "500ms", "--out", "half",
        ],
    );
    assert_eq!(code(&o), 0);
}

#[test]
fn unwritable_corpus_or_reproducer_is_exit_2() {
    let d = tmp("unwritable");
    std::fs::write(d.join("afile"), b"x").unwrap();
    for (flag, path, want) in [
        (
            "--corpus",
            "/proc/splitfuzz-x",
            "cannot create the corpus folder",
        ),
        ("--corpus", "afile", "exists and is not a directory"),
        ("--crashes", "afile", "exists and is not a directory"),
        (
            "--out",
            "/proc/splitfuzz-x",
            "cannot create the run directory",
        ),
    ] {
        let o = sf(
            &d,
            &["fuzz", "--policy", "lazy-v1", "--runs", "100", flag, path],
        );
        assert_eq!(code(&o), 2, "{flag} {path}");
        assert!(text(&o.stderr).contains(want), "{}", text(&o.stderr));
    }
    // A reproducer that cannot be written mid-run: crashes/lazy-v1 is a file.
    std::fs::create_dir_all(d.join("cr")).unwrap();
    std::fs::write(d.join("cr/lazy-v1"), b"x").unwrap();
    let o = sf(
        &d,
        &[
            "fuzz",
            "--policy",
            "lazy-v1,lazy-v3",
            "--runs",
            "20000",
            "--crashes",
            "cr",
            "--out",
            "run",
            "--quiet",
        ],
    );
    assert_eq!(code(&o), 2);
    let e = text(&o.stderr);
    assert!(e.contains("cannot save the reproducer"), "{e}");
    assert!(e.contains("cannot create cr/lazy-v1"), "{e}");
    // The campaign stopped there: its table is printed, lazy-v3 did not run.
    let out = text(&o.stdout);
    assert!(out.contains("== lazy-v1"), "{out}");
    assert!(!out.contains("== lazy-v3"), "{out}");
}

// --------------------------------------------------------------- progress

#[test]
fn non_terminal_gets_progress_lines_and_finding_lines() {
    let d = tmp("progress");
    let o = sf(
        &d,
        &[
            "fuzz",
            "--policy",
            "lazy-v1",
            "--time",
            "1500ms",
            "--log-every",
            "300ms",
            "--crashes",
            "cr",
            "--out",
            "run",
        ],
    );
    assert_eq!(code(&o), 1, "lazy-v1 has findings");
    let e = text(&o.stderr);
    let progress = e
        .lines()
        .filter(|l| l.contains("] lazy-v1: ") && l.contains(" exec/s"))
        .count();
    assert!(progress >= 3, "progress lines every 300 ms:\n{e}");
    assert!(e.contains("new finding: lazy-v1 "), "{e}");
    assert!(
        e.contains("removes it"),
        "finding lines name the override: {e}"
    );
    // --quiet: nothing on stderr.
    let o = sf(
        &d,
        &[
            "fuzz",
            "--policy",
            "lazy-v1",
            "--time",
            "700ms",
            "--log-every",
            "100ms",
            "--crashes",
            "cr",
            "--out",
            "q",
            "--quiet",
        ],
    );
    assert_eq!(code(&o), 1);
    assert_eq!(text(&o.stderr), "", "--quiet is quiet");
    assert!(text(&o.stdout).contains("== lazy-v1"));
}

fn stopped_by(sig: nix::sys::signal::Signal, name: &str) {
    let d = tmp(name);
    let (status, stdout, stderr) = common::stop_after(
        &d,
        &[
            "fuzz",
            "--policy",
            "lazy-v1,lazy-v3",
            "--time",
            "1h",
            "--log-every",
            "200ms",
            "--crashes",
            "cr",
            "--corpus",
            "corpus",
            "--out",
            "run",
        ],
        Duration::from_millis(2500),
        sig,
    );
    assert_eq!(status.code(), Some(1), "usual status (findings): {stderr}");
    assert!(
        stderr.contains("] lazy-v1: "),
        "progress in the log: {stderr}"
    );
    assert!(stdout.contains("== lazy-v1"), "findings table: {stdout}");
    assert!(stdout.contains(", interrupted, corpus"), "{stdout}");
    assert!(
        stderr.contains("lazy-v1: interrupted, stopping"),
        "{stderr}"
    );
    assert!(
        stdout.contains(&format!("interrupted by {name}; not run: lazy-v3")),
        "{stdout}"
    );
    let corpus = std::fs::read_dir(d.join("corpus")).unwrap().count();
    assert!(corpus > 10, "corpus written: {corpus} files");
    let run = std::fs::read_to_string(d.join("run/run.json")).unwrap();
    assert!(run.contains("\"interrupted\": true"), "{run}");
    assert!(d.join("run/report.html").exists());
}

#[test]
fn sigint_ends_the_campaign_cleanly() {
    stopped_by(nix::sys::signal::Signal::SIGINT, "SIGINT");
}

#[test]
fn sigterm_ends_the_campaign_cleanly() {
    stopped_by(nix::sys::signal::Signal::SIGTERM, "SIGTERM");
}

// ------------------------------------------------------- no silent misreads

#[test]
fn text_is_told_from_bytes_by_content() {
    let d = tmp("content");
    // A text program with a typo, not named .txt: an error naming the line.
    std::fs::write(d.join("prog"), "mmap 0 8M thp\ntuch 0 4M write\n").unwrap();
    let o = sf(&d, &["run", "prog"]);
    assert_eq!(code(&o), 2);
    let e = text(&o.stderr);
    assert!(e.contains("prog: line 2: unknown op 'tuch'"), "{e}");
    assert_eq!(e.lines().count(), 1);
    // Named .bin (as the engines name raw inputs): decoded as bytes, with a warning.
    std::fs::copy(d.join("prog"), d.join("prog.bin")).unwrap();
    let o = sf(&d, &["run", "prog.bin"]);
    assert!(code(&o) != 2, "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("named .bin, so decoded as fuzzer bytes"),
        "{}",
        text(&o.stderr)
    );
    // --format bytes decodes it as fuzzer bytes, on request.
    let o = sf(&d, &["run", "--format", "bytes", "prog"]);
    assert!(code(&o) != 2, "{}", text(&o.stderr));
    // A good text program without .txt runs as text (2 ops).
    std::fs::write(
        d.join("good"),
        "# two ops\nmmap 0 8M thp\ntouch 0 4M write\n",
    )
    .unwrap();
    let o = sf(&d, &["run", "good"]);
    assert_eq!(code(&o), 0);
    assert!(text(&o.stdout).contains("ok (2 ops"), "{}", text(&o.stdout));
    // Raw bytes named .txt are bytes, with a note.
    std::fs::write(d.join("raw.txt"), [0u8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 200, 3]).unwrap();
    let o = sf(&d, &["run", "raw.txt"]);
    assert!(code(&o) != 2);
    assert!(
        text(&o.stderr).contains("named .txt but not text"),
        "{}",
        text(&o.stderr)
    );
    // Printable text without a program line: decoded as bytes, said so.
    std::fs::write(d.join("hello"), "hello world\n").unwrap();
    let o = sf(&d, &["run", "hello"]);
    assert!(
        text(&o.stderr).contains("no program line; decoded as fuzzer bytes"),
        "{}",
        text(&o.stderr)
    );
    // Empty programs are warned about.
    std::fs::write(d.join("empty"), "").unwrap();
    std::fs::write(d.join("comments"), "# nothing\n").unwrap();
    for f in ["empty", "comments"] {
        let o = sf(&d, &["run", f]);
        assert!(
            text(&o.stderr).contains("empty program"),
            "{f}: {}",
            text(&o.stderr)
        );
    }
    // decode of a text program warns.
    let o = sf(&d, &["decode", "good"]);
    assert_eq!(code(&o), 0);
    assert!(
        text(&o.stderr).contains("looks like a text program"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn policy_comes_from_the_line_then_the_folder_and_is_printed() {
    let d = tmp("policy");
    // Bytes in crashes/lazy-v1/: lazy-v1 from the folder.
    std::fs::write(
        d.join("p.txt"),
        COPY_PMD
            .replace("policy lazy-v1\n", "")
            .replace("expect", "# expect"),
    )
    .unwrap();
    std::fs::create_dir_all(d.join("crashes/lazy-v1")).unwrap();
    let o = sf(&d, &["encode", "p.txt", "-o", "crashes/lazy-v1/f.bin"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let o = sf(&d, &["run", "crashes/lazy-v1/f.bin"]);
    let out = text(&o.stdout);
    assert_eq!(code(&o), 1, "{out}");
    assert!(
        out.contains("policy lazy-v1: lazy-v1 from the folder crashes/lazy-v1/"),
        "{out}"
    );
    assert!(out.contains("copy_pmd_range"), "{out}");
    // The same bytes elsewhere run under the default and say so.
    std::fs::copy(d.join("crashes/lazy-v1/f.bin"), d.join("f.bin")).unwrap();
    let o = sf(&d, &["run", "f.bin"]);
    assert!(
        text(&o.stdout).contains("lazy-v3 from the default"),
        "{}",
        text(&o.stdout)
    );
    // A folder named after a label with overrides applies them.
    std::fs::create_dir_all(d.join("crashes/lazy-v1+copy_huge_pmd=error")).unwrap();
    std::fs::copy(
        d.join("f.bin"),
        d.join("crashes/lazy-v1+copy_huge_pmd=error/f.bin"),
    )
    .unwrap();
    let o = sf(&d, &["run", "crashes/lazy-v1+copy_huge_pmd=error/f.bin"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stdout));
    // The `policy` line wins over the folder.
    std::fs::write(
        d.join("crashes/lazy-v1/v3.txt"),
        "policy lazy-v3\nmmap 0 2M thp\n",
    )
    .unwrap();
    let o = sf(&d, &["run", "crashes/lazy-v1/v3.txt"]);
    assert!(
        text(&o.stdout).contains("lazy-v3 from its `policy` line"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn expectations_in_words_and_a_check_that_exits_0() {
    let d = tmp("expect");
    std::fs::write(d.join("f.txt"), COPY_PMD).unwrap();
    std::fs::write(d.join("none.txt"), "policy lazy-v1\nmmap 0 2M thp\n").unwrap();
    std::fs::write(
        d.join("wrong.txt"),
        "policy deposit\nmmap 0 2M thp\nexpect violation no-livelock zap_pmd_range\n",
    )
    .unwrap();
    // run: the violation, the harm site and the override, the expectation held.
    let o = sf(&d, &["run", "f.txt"]);
    let out = text(&o.stdout);
    assert_eq!(code(&o), 1, "a violation: {out}");
    assert!(out.contains("the harm appears in copy_pmd_range"), "{out}");
    assert!(
        out.contains("--override copy_huge_pmd=error removes it"),
        "{out}"
    );
    assert!(
        out.contains("expect violation kernel-assertion copy_pmd_range: held"),
        "{out}"
    );
    // The fix tried with --override: no violation, exit 0, the expectation did not hold.
    for name in ["copy_huge_pmd", "copy_pmd_range"] {
        let o = sf(
            &d,
            &["run", "--override", &format!("{name}=error"), "f.txt"],
        );
        let out = text(&o.stdout);
        assert_eq!(code(&o), 0, "{name}: {out}");
        assert!(out.contains("lazy-v1+copy_huge_pmd=error ok"), "{out}");
        assert!(out.contains("did not hold"), "{out}");
    }
    // check: exit 0 when every expect line holds.
    let o = sf(&d, &["check", "f.txt"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stdout));
    assert!(text(&o.stdout).contains("holds"));
    assert!(text(&o.stdout).contains("check: 1 of 1 pass"));
    // ... 1 when one does not, or has no expect line.
    let o = sf(&d, &["check", "f.txt", "wrong.txt", "none.txt"]);
    assert_eq!(code(&o), 1);
    let out = text(&o.stdout);
    assert!(out.contains("wrong.txt: deposit under small: expect violation no-livelock zap_pmd_range: does not hold"), "{out}");
    assert!(
        out.contains("none.txt: lazy-v1 under small: no expect line"),
        "{out}"
    );
    assert!(out.contains("check: 1 of 3 pass"), "{out}");
    // check --fixed: exit 0 when the fix removes the violation, 1 when it does not.
    let o = sf(
        &d,
        &[
            "check",
            "--fixed",
            "--override",
            "copy_huge_pmd=error",
            "f.txt",
        ],
    );
    assert_eq!(code(&o), 0, "{}", text(&o.stdout));
    assert!(text(&o.stdout).contains("fixed: the expected kernel-assertion copy_pmd_range"));
    let o = sf(
        &d,
        &[
            "check",
            "--fixed",
            "--override",
            "zap_pmd_range=error",
            "f.txt",
        ],
    );
    assert_eq!(code(&o), 1);
    assert!(text(&o.stdout).contains("not fixed"));
}

// ------------------------------------------------------------------ names

#[test]
fn findings_name_the_harm_site_and_the_override() {
    let d = tmp("names");
    let o = sf(
        &d,
        &[
            "fuzz",
            "--policy",
            "lazy-v1",
            "--runs",
            "20000",
            "--seed",
            "3",
            "--crashes",
            "cr",
            "--out",
            "run",
        ],
    );
    let out = text(&o.stdout);
    assert_eq!(code(&o), 1);
    let row = out
        .lines()
        .find(|l| l.contains("kernel-assertion copy_pmd_range") && l.contains(".txt"))
        .unwrap_or_else(|| panic!("no copy_pmd_range row:\n{out}"));
    assert!(row.contains("copy_huge_pmd=error"), "{row}");
    let saved =
        std::fs::read_to_string(d.join("cr/lazy-v1/kernel-assertion-copy_pmd_range.txt")).unwrap();
    assert!(
        saved.contains("--override copy_huge_pmd=error removes it"),
        "{saved}"
    );
    // An unknown name lists the callers.
    let o = sf(
        &d,
        &[
            "run",
            "--override",
            "copy_pte=error",
            "cr/lazy-v1/kernel-assertion-copy_pmd_range.txt",
        ],
    );
    assert_eq!(code(&o), 2);
    assert!(
        text(&o.stderr).contains("unknown split caller 'copy_pte' (known: zap_pmd_range"),
        "{}",
        text(&o.stderr)
    );
}

// ---------------------------------------------------------- stats, report

#[test]
fn fuzz_writes_stats_and_a_report_that_report_rebuilds() {
    let d = tmp("report");
    let o = sf(
        &d,
        &[
            "fuzz",
            "--policy",
            "lazy-v1,lazy-v3,lazy-fixed",
            "--runs",
            "4000",
            "--seed",
            "3",
            "--stats-every",
            "50ms",
            "--crashes",
            "cr",
            "--out",
            "run",
            "--quiet",
        ],
    );
    assert_eq!(code(&o), 1, "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("run directory: run (stats.csv, run.json, report.html)"));
    let csv = std::fs::read_to_string(d.join("run/stats.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("policy,time_s,execs,exec_per_s,corpus,coverage,branches,findings")
    );
    let rows: Vec<Vec<String>> = lines
        .map(|l| l.split(',').map(String::from).collect())
        .collect();
    for p in ["lazy-v1", "lazy-v3", "lazy-fixed"] {
        let r: Vec<&Vec<String>> = rows.iter().filter(|r| r[0] == p).collect();
        assert!(r.len() >= 2, "{p}: {} rows", r.len());
        let execs: Vec<u64> = r.iter().map(|r| r[2].parse().unwrap()).collect();
        assert!(execs.windows(2).all(|w| w[0] <= w[1]), "{p} {execs:?}");
        assert_eq!(
            *execs.last().unwrap(),
            4000,
            "{p}: the last row has the total"
        );
        assert!(r.iter().all(|r| r[3].parse::<f64>().unwrap() >= 0.0));
    }
    let last = |p: &str| -> u64 {
        rows.iter().rev().find(|r| r[0] == p).unwrap()[7]
            .parse()
            .unwrap()
    };
    assert!(last("lazy-v1") >= 1);
    assert_eq!(last("lazy-fixed"), 0);

    let page = std::fs::read_to_string(d.join("run/report.html")).unwrap();
    check_page(&page);
    // `splitfuzz report` rebuilds it from the directory.
    let o = sf(&d, &["report", "run", "-o", "again.html"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    check_page(&std::fs::read_to_string(d.join("again.html")).unwrap());
    // Not a run directory: exit 2.
    let o = sf(&d, &["report", "cr"]);
    assert_eq!(code(&o), 2);
    assert!(text(&o.stderr).contains("run.json"));
}

fn check_page(page: &str) {
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert_eq!(page.matches("<svg").count(), 4, "four plots");
    for want in [
        "Coverage features",
        "Findings (distinct signatures)",
        "Executions per second",
        "lazy-v1",
        "lazy-fixed",
        "policy &times; signature",
        "v3 fixed relative to v1",
        "still found under lazy-fixed (must be none): none",
        "Model coverage by kernel function",
        "zap_pmd_range",
        "=error</td>",
        "<polyline",
    ] {
        assert!(page.contains(want), "report lacks {want}");
    }
    // Self-contained: no external resources.
    assert!(!page.contains("src=\"http"));
    assert!(!page.contains("<script src"));
}

// -------------------------------------------------------------------- cmin

#[test]
fn cmin_needs_out_or_in_place() {
    let d = tmp("cmin");
    std::fs::create_dir_all(d.join("c")).unwrap();
    for i in 0..20u8 {
        // Ten copies each of two inputs: cmin keeps at most two.
        let mut x = 0x9e37_79b9u32 + (i % 2) as u32;
        let bytes: Vec<u8> = (0..120)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (x >> 16) as u8
            })
            .collect();
        std::fs::write(d.join(format!("c/{i:02}")), bytes).unwrap();
    }
    let o = sf(&d, &["cmin", "c", "--policy", "lazy-v3"]);
    assert_eq!(code(&o), 2);
    assert!(
        text(&o.stderr).contains("-o OUT") && text(&o.stderr).contains("--in-place"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(std::fs::read_dir(d.join("c")).unwrap().count(), 20);
    let o = sf(&d, &["cmin", "c", "-o", "kept", "--policy", "lazy-v3"]);
    assert_eq!(code(&o), 0);
    assert_eq!(
        std::fs::read_dir(d.join("c")).unwrap().count(),
        20,
        "DIR left alone"
    );
    let kept = std::fs::read_dir(d.join("kept")).unwrap().count();
    assert!((1..=2).contains(&kept), "{kept}");
    let o = sf(&d, &["cmin", "c", "--in-place", "--policy", "lazy-v3"]);
    assert_eq!(code(&o), 0);
    assert!(
        text(&o.stdout).contains("(--in-place)"),
        "{}",
        text(&o.stdout)
    );
    assert_eq!(std::fs::read_dir(d.join("c")).unwrap().count(), kept);
}

// ------------------------------------------------------------ README, help

/// The long options a subcommand's --help lists (without --help).
fn flags_of(help: &str) -> Vec<String> {
    help.lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| l.split([',', ' ']).find(|w| w.starts_with("--")))
        .map(String::from)
        .filter(|f| f != "--help" && f != "--version")
        .collect()
}

/// Every `--word` in a text.
fn flags_in(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(j) = text[i..].find("--") {
        let s = i + j;
        let mut e = s + 2;
        while e < b.len() && (b[e].is_ascii_lowercase() || b[e] == b'-') {
            e += 1;
        }
        if e > s + 2 && (s == 0 || !b[s - 1].is_ascii_alphanumeric()) {
            out.push(text[s..e].to_string());
        }
        i = e.max(s + 2);
    }
    out
}

#[test]
fn readme_and_help_agree() {
    let d = tmp("readme");
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    // The command reference lives in docs/commands.md; the main command stays in the README.
    let commands =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/commands.md")).unwrap();
    let start = commands
        .find("## Command reference")
        .expect("a command reference");
    let rest = &commands[start + 3..];
    let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    let top = text(&sf(&d, &["--help"]).stdout);
    let subs: Vec<String> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .filter(|s| s != "help")
        .collect();
    assert!(subs.len() >= 10, "{subs:?}");
    for sub in &subs {
        let key = format!("- `splitfuzz {sub}");
        let at = section
            .find(&key)
            .unwrap_or_else(|| panic!("docs/commands.md's command reference lacks {sub}"));
        let bullet = &section[at..];
        let bullet = &bullet[..bullet[2..]
            .find("\n- ")
            .map(|e| e + 2)
            .unwrap_or(bullet.len())];
        let help = text(&sf(&d, &[sub, "--help"]).stdout);
        let flags = flags_of(&help);
        for f in &flags {
            assert!(
                bullet.contains(f.as_str()),
                "docs/commands.md: `splitfuzz {sub}` lacks {f}"
            );
        }
        for f in flags_in(bullet) {
            assert!(
                flags.contains(&f),
                "docs/commands.md: `splitfuzz {sub}` names {f}, --help does not"
            );
        }
    }
    // What --time means: the whole run, in --help and in the README's main command.
    let fuzz_help = text(&sf(&d, &["fuzz", "--help"]).stdout);
    assert!(fuzz_help.contains("budget of the whole run"), "{fuzz_help}");
    let main = &readme[readme.find("## The two commands").unwrap()..];
    let main = &main[..main.find("cargo test --release").unwrap()];
    assert!(
        main.contains("fuzz --policy lazy-v1,lazy-v3 --time 60s"),
        "{main}"
    );
    assert!(main.contains("60-second campaign, the whole run"), "{main}");
    assert!(main.contains("30 s each"), "{main}");
    assert!(
        top.contains("--time 60s (60 s in total, 30 s per policy)"),
        "{top}"
    );
}

#[test]
fn emit_c_memcg_trigger() {
    let d = tmp("emit-c-memcg");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Expressible: the reproducer creates the cgroup and sets the limit itself.
    let zap = root.join("crashes/lazy-v3/no-silent-skip-zap_pmd_range.txt");
    let o = sf(&d, &["emit-c", "--trigger", "memcg", zap.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let c = text(&o.stdout);
    assert!(c.contains("#define MEMCG 1") && c.contains("#define HAS_PLAN 0"));
    assert!(
        c.contains("static const long limit_slack[] = { -1, -1, 16, -1 };"),
        "{c}"
    );
    // The default is injection.
    let o = sf(&d, &["emit-c", zap.to_str().unwrap()]);
    assert!(text(&o.stdout).contains("#define MEMCG 0"));
    // Not expressible: one line, exit 2.
    let mremap = root.join("crashes/lazy-v3/no-silent-skip-unmap_source_vma.txt");
    let o = sf(
        &d,
        &["emit-c", "--trigger", "memcg", mremap.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(2));
    let e = text(&o.stderr);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.contains("not expressible without injection") && e.contains("copy_vma"),
        "{e}"
    );
    // A bad trigger is a usage error.
    let o = sf(&d, &["emit-c", "--trigger", "oom", zap.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
}

/// `vm run` and `vm exec` take at least one vCPU and a bound of at least one
/// second: 0 is a usage error (exit 2), before any kernel is looked for.
#[test]
fn vm_rejects_zero_cpus_and_zero_timeouts() {
    let d = tmp("vm-zero");
    std::fs::write(d.join("prog.txt"), COPY_PMD).unwrap();
    for args in [
        &["vm", "run", "--smp", "0", "prog.txt"][..],
        &["vm", "run", "--timeout", "0", "prog.txt"][..],
        &["vm", "exec", "--smp", "0", "x"][..],
        &["vm", "exec", "--timeout", "0", "x"][..],
    ] {
        let o = sf(&d, args);
        assert_eq!(code(&o), 2, "{args:?}");
        let e = text(&o.stderr);
        assert!(e.contains("invalid value '0'"), "{args:?}: {e}");
        assert!(!e.contains("panicked"), "{args:?}: {e}");
    }
}
