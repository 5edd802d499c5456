//! The engines behind one trait (`splitfuzz::engines`), triage of crash files,
//! and the two subcommands that drive them: `splitfuzz engine` and
//! `splitfuzz continuous`. Only the built-in engine runs here (in process, no
//! external tool); runs are a few seconds.

use splitfuzz::engines::triage::{Triage, Verdict};
use splitfuzz::engines::Target;
use splitfuzz::fuzz::Curated;
use splitfuzz::Program;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const ZAP: &str = "no-silent-skip zap_pmd_range";

mod common;
use common::{run_in as sf, text, BIN};

fn tmp(name: &str) -> PathBuf {
    common::fresh_dir("engines", name)
}

fn curated() -> PathBuf {
    Path::new(ROOT).join("crashes")
}

fn zap_bin() -> PathBuf {
    curated().join("lazy-v3/no-silent-skip-zap_pmd_range.bin")
}

/// Every file under a folder with its bytes and modification time.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, SystemTime)> {
    let mut m = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            m.extend(snapshot(&p));
        } else {
            let t = std::fs::metadata(&p).unwrap().modified().unwrap();
            m.insert(p.clone(), (std::fs::read(&p).unwrap(), t));
        }
    }
    m
}

fn lazy_v3() -> Target {
    Target::parse("lazy_v3").unwrap()
}

// ------------------------------------------------------------------ triage

#[test]
fn triage_names_a_known_crash_and_writes_only_into_the_work_dir() {
    let d = tmp("triage");
    let before = snapshot(&curated());
    let mut t = Triage::new(d.join("findings"), Some(curated()));
    let v = t.file(&zap_bin(), lazy_v3(), "a test").unwrap();
    assert!(matches!(&v, Verdict::New(s) if s == ZAP), "{v:?}");
    let s = t.get("lazy-v3", ZAP).unwrap();
    // The curated reproducer is no longer: it is the one reported ...
    assert_eq!(s.saved.curated, Curated::Saved);
    assert_eq!(
        s.saved.path,
        curated().join("lazy-v3/no-silent-skip-zap_pmd_range.txt")
    );
    // ... and this run's minimized one is in the work dir, with the original bytes.
    let own = d.join("findings/lazy-v3/no-silent-skip-zap_pmd_range.txt");
    assert_eq!(s.saved.own.as_deref(), Some(own.as_path()));
    let min = Program::parse(&std::fs::read_to_string(&own).unwrap()).unwrap();
    assert!(min.ops.len() <= 4, "minimized: {} ops", min.ops.len());
    assert_eq!(
        min.expect
            .as_ref()
            .map(|e| e.describe())
            .unwrap_or_default(),
        format!("{ZAP} [data-loss]")
    );
    assert_eq!(
        std::fs::read(own.with_extension("bin")).unwrap(),
        std::fs::read(zap_bin()).unwrap()
    );
    // The same signature again is counted, not saved again.
    let copy = d.join("again.bin");
    std::fs::copy(zap_bin(), &copy).unwrap();
    let v = t.file(&copy, lazy_v3(), "a test").unwrap();
    assert!(matches!(&v, Verdict::Seen(s) if s == ZAP), "{v:?}");
    assert_eq!(t.get("lazy-v3", ZAP).unwrap().count, 2);
    // An input that violates nothing does not reproduce.
    let clean = d.join("clean.bin");
    std::fs::write(
        &clean,
        b"\x03\x00\x03\x00\x00\x00\x00\x1f\x01\x04\x00\x00\x1f\x01",
    )
    .unwrap();
    let v = t.file(&clean, lazy_v3(), "a test").unwrap();
    assert!(matches!(v, Verdict::NoRepro(_)), "{v:?}");
    assert_eq!(t.norepro, 1);
    assert_eq!(snapshot(&curated()), before, "crashes/ was written");
}

#[test]
fn triage_offers_a_shorter_reproducer_and_tells_new_ones() {
    let d = tmp("triage-shorter");
    // A curated folder whose reproducer is the whole fuzzer input (60+ ops).
    let known = d.join("known");
    std::fs::create_dir_all(known.join("lazy-v3")).unwrap();
    let mut long = Program::decode(&std::fs::read(zap_bin()).unwrap());
    long.policy = Some("lazy-v3".into());
    let long_file = known.join("lazy-v3/no-silent-skip-zap_pmd_range.txt");
    std::fs::write(&long_file, long.to_text()).unwrap();
    let before = snapshot(&known);
    let mut t = Triage::new(d.join("findings"), Some(known.clone()));
    t.file(&zap_bin(), lazy_v3(), "a test").unwrap();
    let s = t.get("lazy-v3", ZAP).unwrap();
    let own = d.join("findings/lazy-v3/no-silent-skip-zap_pmd_range.txt");
    assert_eq!(s.saved.path, own, "the shorter one is offered");
    assert_eq!(
        s.saved.curated,
        Curated::Shorter {
            curated: long_file,
            curated_ops: long.ops.len()
        }
    );
    assert!(s.saved.ops < long.ops.len());
    assert_eq!(snapshot(&known), before, "the curated file stays as it is");
    // No curated reproducer: new.
    let mut t = Triage::new(d.join("findings2"), Some(d.join("empty")));
    t.file(&zap_bin(), lazy_v3(), "a test").unwrap();
    assert_eq!(t.get("lazy-v3", ZAP).unwrap().saved.curated, Curated::New);
    assert!(d
        .join("findings2/lazy-v3/no-silent-skip-zap_pmd_range.txt")
        .exists());
}

// ------------------------------------------------------------------ engine

#[test]
fn engine_builtin_finds_something_and_exits_1_every_time() {
    let d = tmp("engine");
    let work = d.join("work");
    let w = work.to_str().unwrap();
    let before = snapshot(&curated());
    for round in 0..2 {
        let o = sf(
            &d,
            &[
                "engine", "builtin", "lazy_v3", "--time", "3s", "--work", w, "--seed", "1",
            ],
        );
        let out = text(&o.stdout);
        assert_eq!(
            o.status.code(),
            Some(1),
            "round {round}: {out}{}",
            text(&o.stderr)
        );
        assert!(out.contains("CRASHES: "), "{out}");
        assert!(out.contains("builtin/lazy_v3: done after"), "{out}");
        assert!(
            out.contains("replay: splitfuzz repro --policy lazy-v3"),
            "{out}"
        );
    }
    let findings: Vec<_> = std::fs::read_dir(work.join("findings/lazy-v3"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "txt"))
        .collect();
    assert!(!findings.is_empty());
    assert!(work.join("log/builtin-lazy_v3.log").exists());
    // The shared corpus holds no input that violates.
    let cfg = lazy_v3().config().unwrap();
    let corpus: Vec<_> = std::fs::read_dir(work.join("corpus/lazy_v3"))
        .unwrap()
        .flatten()
        .collect();
    assert!(corpus.len() > 10, "{} inputs", corpus.len());
    for e in corpus {
        let b = std::fs::read(e.path()).unwrap();
        assert!(
            splitfuzz::run_program(&b, &cfg).violation.is_none(),
            "{}",
            e.path().display()
        );
    }
    assert_eq!(snapshot(&curated()), before, "crashes/ was written");
}

#[test]
fn bad_arguments_exit_2_with_one_line() {
    let d = tmp("bad");
    std::fs::write(d.join("file"), "").unwrap();
    let cases: &[&[&str]] = &[
        &["engine", "bogus", "lazy_v3", "--time", "3s"],
        &["engine", "builtin", "lazy_v9", "--time", "3s"],
        &["engine", "builtin", "decode", "--time", "3s"],
        &["engine", "builtin", "lazy_v3", "--time", "soon"],
        &["engine", "builtin", "lazy_v3", "--time", "0s"],
        &[
            "engine", "builtin", "lazy_v3", "--time", "1s", "--", "-runs=1",
        ],
        &[
            "engine", "builtin", "lazy_v3", "--time", "1s", "--work", "file",
        ],
        &["continuous", "--engines", "bogus"],
        &["continuous", "--engines", "builtin,builtin"],
        &["continuous", "--targets", "lazy_v3,nope"],
        &["continuous", "--slice", "0"],
        &["continuous", "--cmin-every", "often"],
        &["continuous", "--time", "1 fortnight"],
        &[
            "continuous",
            "--engines",
            "builtin",
            "--targets",
            "decode",
            "--work",
            "w",
        ],
    ];
    for args in cases {
        let o = sf(&d, args);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| !l.starts_with("[continuous"))
            .collect();
        assert_eq!(lines.len(), 1, "{args:?}: {err}");
        assert!(lines[0].starts_with("splitfuzz: "), "{args:?}: {err}");
        assert!(o.stdout.is_empty(), "{args:?}: {}", text(&o.stdout));
    }
}

/// The binary with no engine tool to be found.
fn without_tools(d: &Path, args: &[&str]) -> Output {
    let empty = d.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    Command::new(BIN)
        .args(args)
        .current_dir(d)
        .env("PATH", &empty)
        .env("CARGO_HOME", &empty)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn an_engine_not_installed_is_an_error_for_engine_and_skipped_by_continuous() {
    let d = tmp("missing");
    let o = without_tools(&d, &["engine", "afl", "lazy_v3", "--time", "1s"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("scripts/install-engines.sh afl"), "{err}");
    let o = without_tools(
        &d,
        &[
            "continuous",
            "--engines",
            "builtin,afl",
            "--targets",
            "lazy_v1",
            "--time",
            "2s",
            "--slice",
            "2s",
            "--work",
            "w",
        ],
    );
    let err = text(&o.stderr);
    let out = text(&o.stdout);
    assert!(
        err.contains("afl: cargo-afl is not installed (scripts/install-engines.sh afl): skipped"),
        "{err}"
    );
    assert!(out.contains("engines builtin\n"), "{out}");
    assert!(out.contains("\nbuiltin    lazy_v1 "), "{out}");
    assert!(!out.contains("\nafl "), "{out}");
}

// ------------------------------------------------------------------ continuous

#[test]
fn continuous_rotates_triages_minimizes_and_ends_cleanly_on_sigterm() {
    let d = tmp("continuous");
    let before = snapshot(&curated());
    let (status, out, err) = common::stop_after(
        &d,
        &[
            "continuous",
            "--engines",
            "builtin",
            "--targets",
            "lazy_v1,lazy_v3",
            "--slice",
            "2s",
            "--cmin-every",
            "1s",
            "--work",
            "w",
        ],
        Duration::from_millis(5000),
        nix::sys::signal::Signal::SIGTERM,
    );
    assert_eq!(status.code(), Some(1), "found something: {out}{err}");
    assert!(
        err.contains("rotation of 2 slices: builtin/lazy_v1 builtin/lazy_v3"),
        "{err}"
    );
    assert!(err.contains("minimizing the shared corpora"), "{err}");
    assert!(err.contains("/corpus/lazy_v1: "), "{err}");
    assert!(out.contains("== continuous: "), "{out}");
    assert!(out.contains("\nbuiltin    lazy_v1 "), "{out}");
    assert!(out.contains("\nbuiltin    lazy_v3 "), "{out}");
    assert!(out.contains("\n  lazy-v1 "), "signature rows: {out}");
    assert!(out.ends_with("interrupted by SIGTERM\n"), "{out}");
    assert!(d.join("w/findings/lazy-v1").is_dir());
    // Triaged crash files are dropped; the first of each signature is kept.
    let left = std::fs::read_dir(d.join("w/builtin/lazy_v1/crashes/lazy-v1"))
        .map(|r| {
            r.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "bin"))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(left, 0, "crash files left");
    assert_eq!(snapshot(&curated()), before, "crashes/ was written");
}
