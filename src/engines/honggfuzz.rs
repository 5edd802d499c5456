//! honggfuzz through honggfuzz-rs: the targets are built with `cargo hfuzz
//! build` (the `honggfuzz` feature) into fuzz/hfuzz_target, which also holds
//! the honggfuzz binary; it runs persistent (-P) on the shared corpus, which
//! it adds to itself, and saves every crash (--save_all) in its workspace.
//! honggfuzz has no custom-mutator interface (only an external command per
//! input, `--mutate_cmd`, a process per execution), so it gets the byte
//! format's dictionary (-w) but not the model's structure-aware mutator.

use super::{host_triple, needs, tool, Engine, Job, Launch, Paths, Target};
use anyhow::Result;
use std::ffi::OsStr;
use std::process::Command;

pub struct Honggfuzz;

/// honggfuzz's `-F` (largest input, bytes). It cannot take the shared
/// mutator, and its byte-level mutations grow inputs into long programs whose
/// extra ops dilute the few that matter; inputs of at most 96 bytes (about a
/// dozen ops) found every lazy-v3 finding in 6 of 6 runs where the default
/// found them in 5 of 6 (docs/engines.md, Measurements).
/// scripts/bench_engines.py passes the same value (a test checks).
pub const MAX_INPUT: &str = "96";

impl Engine for Honggfuzz {
    fn name(&self) -> &'static str {
        "honggfuzz"
    }

    fn installed(&self) -> Result<(), String> {
        needs("cargo-hfuzz", self.name())
    }

    /// Every target (cargo hfuzz builds the crate's binaries).
    fn build(&self, _: &Paths, _: Option<Target>) -> Option<Command> {
        let mut c = tool("cargo");
        c.args(["hfuzz", "build"]).env(
            "HFUZZ_BUILD_ARGS",
            "--no-default-features --features honggfuzz",
        );
        Some(c)
    }

    fn launch(&self, job: &Job) -> Result<Launch> {
        let dir = job.paths.fuzz_crate().join("hfuzz_target");
        let bin = dir
            .join(host_triple()?)
            .join("release")
            .join(job.target.name);
        let mut c = tool(dir.join("honggfuzz"));
        c.arg("-W")
            .arg(job.dir(self.name()))
            .arg("-f")
            .arg(job.corpus())
            .args(["-P", "-n", "1", "--save_all", "-F", MAX_INPUT, "--run_time"])
            .arg(job.secs().to_string())
            .args(
                job.paths
                    .dict()
                    .iter()
                    .flat_map(|d| [OsStr::new("-w"), d.as_os_str()]),
            )
            .args(job.extra)
            .arg("--")
            .arg(bin);
        Ok(Launch::Process(c))
    }

    fn is_crash(&self, name: &str) -> bool {
        name.ends_with(".fuzz")
    }

    /// The last `iterations:N` of its summary.
    fn execs(&self, _: &Job, log: &str) -> Option<u64> {
        let at = log.rfind("iterations:")? + "iterations:".len();
        let n = &log[at..];
        n[..n.find(|c: char| !c.is_ascii_digit()).unwrap_or(n.len())]
            .parse()
            .ok()
    }
}
