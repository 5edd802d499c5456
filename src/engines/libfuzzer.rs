//! libFuzzer through cargo-fuzz (nightly): the targets are built with
//! `cargo +nightly fuzz build -s none` and run directly, in fork mode so that
//! a crash does not end the run. It works on the shared corpus itself. The
//! targets mutate with the model's structure-aware mutator (libfuzzer-sys
//! custom mutator and crossover, fuzz/src/lib.rs) and get the byte format's
//! dictionary.

use super::{host_triple, tool, Engine, Job, Launch, Paths, Target};
use anyhow::Result;
use std::path::Path;
use std::process::Command;

pub struct LibFuzzer;

/// cargo-fuzz on nightly, in the fuzz crate.
fn cargo_fuzz(paths: &Paths, sub: &str) -> Command {
    let mut c = tool("cargo");
    c.args(["+nightly", "fuzz", sub, "-s", "none"])
        .current_dir(paths.fuzz_crate());
    c
}

impl Engine for LibFuzzer {
    fn name(&self) -> &'static str {
        "libfuzzer"
    }

    fn installed(&self) -> Result<(), String> {
        let ok = tool("cargo")
            .args(["+nightly", "fuzz", "--version"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            Ok(())
        } else {
            Err("libfuzzer: cargo-fuzz or the nightly toolchain is not installed (scripts/install-engines.sh libfuzzer)".into())
        }
    }

    fn build(&self, paths: &Paths, target: Option<Target>) -> Option<Command> {
        let mut c = cargo_fuzz(paths, "build");
        c.args(target.map(|t| t.name));
        Some(c)
    }

    fn launch(&self, job: &Job) -> Result<Launch> {
        let bin = job
            .paths
            .fuzz_crate()
            .join("target")
            .join(host_triple()?)
            .join("release")
            .join(job.target.name);
        let mut c = tool(bin);
        c.arg(job.corpus())
            .args([
                "-fork=1",
                "-ignore_crashes=1",
                "-ignore_timeouts=1",
                "-ignore_ooms=1",
            ])
            .arg(format!("-max_total_time={}", job.secs()))
            .arg(format!(
                "-artifact_prefix={}/",
                job.dir(self.name()).display()
            ))
            .arg("-print_final_stats=1")
            .args(job.seed.map(|s| format!("-seed={s}")))
            .args(job.paths.dict().map(|d| format!("-dict={}", d.display())))
            .args(job.extra);
        Ok(Launch::Process(c))
    }

    fn is_crash(&self, name: &str) -> bool {
        name.starts_with("crash-")
    }

    /// The last `#N` status line (fork mode prints the total).
    fn execs(&self, _: &Job, log: &str) -> Option<u64> {
        log.lines().rev().find_map(|l| {
            let n = l.strip_prefix('#')?;
            n[..n.find(|c: char| !c.is_ascii_digit())?].parse().ok()
        })
    }

    /// `cargo fuzz cmin`: libFuzzer's merge, by its own coverage.
    fn cmin(&self, paths: &Paths, target: Target, dir: &Path) -> Option<Command> {
        let mut c = cargo_fuzz(paths, "cmin");
        c.arg(target.name).arg(dir);
        Some(c)
    }
}
