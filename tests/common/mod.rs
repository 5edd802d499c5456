//! Helpers shared by the integration tests.
// Each test crate uses only some of these.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Write the C source `c` to `dir/NAME.c` and compile it to `dir/NAME` with
/// `cc -O2 -Wall -Werror`; a compiler error fails the test with its output.
pub fn compile_c(dir: &Path, name: &str, c: &str) -> PathBuf {
    compile_c_with(dir, name, c, &[])
}

/// `compile_c` with more arguments after the source (e.g. `-I DIR`, `-lpthread`).
pub fn compile_c_with(dir: &Path, name: &str, c: &str, extra: &[&std::ffi::OsStr]) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    let bin = dir.join(name);
    std::fs::write(&src, c).unwrap();
    let out = std::process::Command::new("cc")
        .args(["-O2", "-Wall", "-Werror", "-o"])
        .arg(&bin)
        .arg(&src)
        .args(extra)
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

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_splitfuzz");

/// A fresh, empty scratch folder `splitfuzz-TAG-PID-NAME` in the temp dir.
pub fn fresh_dir(tag: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("splitfuzz-{tag}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Run the binary in `dir` (stdin closed) and wait for it.
pub fn run_in(dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Start the binary in `dir`, send it `sig` after `after`, and wait (at most
/// 30 s) for it to end: its status, stdout and stderr.
pub fn stop_after(
    dir: &Path,
    args: &[&str],
    after: std::time::Duration,
    sig: nix::sys::signal::Signal,
) -> (std::process::ExitStatus, String, String) {
    use std::time::{Duration, Instant};
    let out = std::fs::File::create(dir.join("stdout")).unwrap();
    let err = std::fs::File::create(dir.join("stderr")).unwrap();
    let mut child = std::process::Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "did not stop after {sig}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    (status, read("stdout"), read("stderr"))
}

/// The `.txt` files of a folder of the repository (e.g. crashes/lazy-v3), sorted.
pub fn txt_files(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    v.sort();
    v
}
