//! AFL++ through cargo-afl: the targets are built with the `afl` feature into
//! fuzz/target/afl and run by `cargo afl fuzz` as a main instance that
//! resumes its output run after run and imports the shared corpus (-F); its
//! queue's new inputs go to the shared corpus. It loads the model's
//! structure-aware mutator ([`mutator_lib`]) and the byte format's dictionary.

use super::{needs, tool, Engine, Job, Launch, Paths, Target};
use anyhow::Result;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;

pub struct Afl;

/// The model's structure-aware mutator as an AFL++ custom mutator library
/// (fuzz/afl-mutator), built (a no-op when it is current) into
/// fuzz/target/afl-mutator without AFL++'s instrumentation; None when the
/// build fails (AFL++ then runs with its own mutations only).
pub fn mutator_lib(paths: &Paths) -> Option<PathBuf> {
    let dir = paths.fuzz_crate().join("target/afl-mutator");
    let ok = tool("cargo")
        .args(["build", "--release", "-q", "-p", "splitfuzz-afl-mutator"])
        .env("CARGO_TARGET_DIR", &dir)
        .current_dir(paths.fuzz_crate())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    Some(dir.join("release/libsplitfuzz_afl_mutator.so")).filter(|l| ok && l.is_file())
}

impl Afl {
    fn out(job: &Job) -> PathBuf {
        job.dir("afl")
    }
    fn instance(job: &Job) -> PathBuf {
        Self::out(job).join("main")
    }
}

impl Engine for Afl {
    fn name(&self) -> &'static str {
        "afl"
    }

    fn installed(&self) -> Result<(), String> {
        needs("cargo-afl", self.name())
    }

    fn build(&self, paths: &Paths, target: Option<Target>) -> Option<Command> {
        let mut c = tool("cargo");
        c.args([
            "afl",
            "build",
            "--release",
            "--no-default-features",
            "--features",
            "afl",
        ])
        .args(target.iter().flat_map(|t| ["--bin", t.name]))
        .env("CARGO_TARGET_DIR", paths.fuzz_crate().join("target/afl"));
        Some(c)
    }

    fn launch(&self, job: &Job) -> Result<Launch> {
        let bin = job
            .paths
            .fuzz_crate()
            .join("target/afl/release")
            .join(job.target.name);
        let mut c = tool("cargo");
        c.args(["afl", "fuzz", "-V", &job.secs().to_string(), "-M", "main"])
            .arg("-i")
            .arg(job.corpus())
            .arg("-o")
            .arg(Self::out(job))
            .arg("-F")
            .arg(job.corpus())
            .args(
                job.seed
                    .iter()
                    .flat_map(|s| ["-s".to_string(), s.to_string()]),
            )
            .args(
                job.paths
                    .dict()
                    .iter()
                    .flat_map(|d| [OsStr::new("-x"), d.as_os_str()]),
            )
            .args(job.extra)
            .arg(bin);
        if let Some(lib) = mutator_lib(job.paths) {
            c.env("AFL_CUSTOM_MUTATOR_LIBRARY", lib);
        }
        for (k, v) in [
            ("AFL_NO_UI", "1"),
            ("AFL_AUTORESUME", "1"),
            ("AFL_SKIP_CPUFREQ", "1"),
            ("AFL_NO_AFFINITY", "1"),
            ("AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES", "1"),
            ("AFL_SUPPRESS_ERROR", "1"),
        ] {
            c.env(k, v);
        }
        Ok(Launch::Process(c))
    }

    fn crash_dir(&self, job: &Job) -> PathBuf {
        Self::instance(job).join("crashes")
    }

    fn is_crash(&self, name: &str) -> bool {
        name.starts_with("id:")
    }

    fn queue(&self, job: &Job) -> Option<PathBuf> {
        Some(Self::instance(job).join("queue"))
    }

    /// `execs_done` of fuzzer_stats: cumulative across resumed runs.
    fn execs(&self, job: &Job, _: &str) -> Option<u64> {
        let stats = std::fs::read_to_string(Self::instance(job).join("fuzzer_stats")).ok()?;
        stats.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "execs_done").then(|| v.trim().parse().ok())?
        })
    }
}
