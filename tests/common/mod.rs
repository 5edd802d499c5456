//! Helpers shared by the integration tests.
// Each test crate uses only some of these.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Write the C source `c` to `dir/NAME.c` and compile it to `dir/NAME` with
/// `cc -O2 -Wall -Werror`; a compiler error fails the test with its output.
pub fn compile_c(dir: &Path, name: &str, c: &str) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    let bin = dir.join(name);
    std::fs::write(&src, c).unwrap();
    let out = std::process::Command::new("cc")
        .args(["-O2", "-Wall", "-Werror", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cc {name}.c failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

/// A fresh scratch folder `splitfuzz-TAG-PID` in the temp dir when a C
/// compiler is installed; else None (the caller skips, and this prints why).
pub fn c_scratch_dir(tag: &str) -> Option<PathBuf> {
    if std::process::Command::new("cc")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("SKIPPED: no C compiler");
        return None;
    }
    let dir = std::env::temp_dir().join(format!("splitfuzz-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    Some(dir)
}
