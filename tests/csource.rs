//! The C reproducers of `emit-c` compile warning-free: the C executor
//! (src/csource/runtime.c) on its own, against its example program.h, and
//! every reproducer of tests/programs/deposit/. Skipped with a message where
//! there is no C compiler. (That the C executor agrees with the Rust one is
//! tests/real.rs's `c_and_rust_executors_agree`; docs/csource.md.)

mod common;

use splitfuzz::csource::{emit_c, emit_c_with};
use splitfuzz::Program;
use std::path::{Path, PathBuf};

/// The runtime passes -Wextra too (the reproducers' own build line is
/// `cc -O2 -Wall`).
const RUNTIME_FLAGS: [&str; 5] = ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn runtime_compiles_alone() {
    let Some(dir) = common::c_scratch_dir("csource-runtime") else {
        return;
    };
    let src = root().join("src/csource/runtime.c");
    // -fsyntax-only, then to an object file: gcc's warnings that need the
    // optimiser (-Wmaybe-uninitialized, -Wformat-truncation...) come only with
    // code generation.
    for out in [vec!["-fsyntax-only"], vec!["-c", "-o"]] {
        let mut cmd = std::process::Command::new("cc");
        cmd.args(RUNTIME_FLAGS).args(&out);
        if out.len() > 1 {
            cmd.arg(dir.join("runtime.o"));
        }
        let o = cmd.arg(&src).output().unwrap();
        assert!(
            o.status.success(),
            "cc {} {} src/csource/runtime.c:\n{}",
            RUNTIME_FLAGS.join(" "),
            out.join(" "),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn deposit_programs() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("tests/programs/deposit"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    v.sort();
    v
}

#[test]
fn emitted_deposit_reproducers_compile() {
    let Some(dir) = common::c_scratch_dir("csource-deposit") else {
        return;
    };
    let (mut n, mut memcg) = (0, 0);
    for (i, path) in deposit_programs().iter().enumerate() {
        let p = Program::parse(&std::fs::read_to_string(path).unwrap()).unwrap();
        let c = emit_c(&p).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        common::compile_c(&dir, &format!("d{i}"), &c);
        n += 1;
        // The memcg trigger, where the plan is expressible without injection.
        if let Ok(c) = emit_c_with(&p, true) {
            common::compile_c(&dir, &format!("d{i}-memcg"), &c);
            memcg += 1;
        }
    }
    println!("{n} reproducers and {memcg} memcg reproducers compiled");
    assert!(n >= 15 && memcg >= 2, "{n} {memcg}");
    let _ = std::fs::remove_dir_all(&dir);
}
