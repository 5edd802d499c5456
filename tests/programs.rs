//! Replays every hand-written program (tests/programs/**/*.txt) and every saved
//! finding (crashes/**/*.txt) and checks its `expect` line, in both geometries.

use splitfuzz::run::{self, RunConfig};
use splitfuzz::{Geometry, Program};
use std::path::{Path, PathBuf};

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|e| e == "txt") {
            out.push(p);
        }
    }
}

fn replay(root: &str, must_exist: bool) -> usize {
    let mut files = Vec::new();
    collect(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join(root),
        &mut files,
    );
    assert!(!must_exist || !files.is_empty(), "no programs under {root}");
    let mut failures = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let prog = match Program::parse(&text) {
            Ok(p) => p,
            Err(e) => {
                failures.push(format!("{}: {e}", f.display()));
                continue;
            }
        };
        let Some(_) = &prog.expect else {
            failures.push(format!("{}: no expect line", f.display()));
            continue;
        };
        if prog.policy.is_none() {
            failures.push(format!("{}: no policy line", f.display()));
            continue;
        }
        let policy = run::program_policy(&prog, None, &[]).unwrap();
        for geom in [Geometry::SMALL, Geometry::KERNEL] {
            let out = run::run(&prog, &RunConfig::new(policy.clone(), geom));
            if let Err(why) = run::check_expectations(&prog, &out) {
                failures.push(format!(
                    "{} ({} geometry): {why}{}",
                    f.display(),
                    geom.name(),
                    out.violation.map(|v| format!(": {v}")).unwrap_or_default()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    files.len()
}

#[test]
fn hand_written_programs_meet_their_expectations() {
    let n = replay("tests/programs", true);
    assert!(n >= 10, "only {n} programs");
}

#[test]
fn saved_findings_replay() {
    replay("crashes", false);
}
