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

/// The environment afl-fuzz always gets (scripts/bench_engines.py `AFL_ENV`
/// is the same; a test there compares them). Only variables AFL++ knows:
/// after warning about one it does not know, afl-fuzz sleeps 2 s per check
/// (4 s at every start with `AFL_SUPPRESS_ERROR`, which it does not know).
///
/// `AFL_FRAMESHIFT_DISABLE`: AFL++ 4.40c's FrameShift analysis rewrites
/// bytes of every executed input at offsets it learned from the queue entry
/// being fuzzed. A custom mutator's output is laid out differently and often
/// shorter, so those writes corrupt the program and land past the end of the
/// mutator's buffer: afl-fuzz corrupted its own heap and aborted ("free():
/// invalid next size") 10-45 s into every run with the custom mutator
/// (AFL++ issue 2840, "FrameShift out of bounds write when mutator reduces
/// input size").
pub const ENV: [(&str, &str); 5] = [
    ("AFL_NO_UI", "1"),
    ("AFL_SKIP_CPUFREQ", "1"),
    ("AFL_NO_AFFINITY", "1"),
    ("AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES", "1"),
    ("AFL_FRAMESHIFT_DISABLE", "1"),
];

/// The environment beside the custom mutator library. AFL++ gives a custom
/// mutator without `afl_custom_fuzz_count` 1/256 of its havoc budget per
/// queue entry (at least 12 calls, AFL++ src/afl-fuzz-one.c, custom mutator
/// stage) and then runs 256 or more byte-level havoc mutations that break the
/// program format; with `AFL_CUSTOM_MUTATOR_ONLY` every mutation is the
/// shared mutator's, which has a byte layer of its own. Measured on lazy_v3
/// from the minimal seed (docs/engines.md): all four findings in 41-61 s
/// beside havoc, in 11-41 s with it alone.
pub const MUTATOR_ENV: [(&str, &str); 1] = [("AFL_CUSTOM_MUTATOR_ONLY", "1")];

impl Afl {
    fn out(job: &Job) -> PathBuf {
        job.dir("afl")
    }
    fn instance(job: &Job) -> PathBuf {
        Self::out(job).join("main")
    }
    /// The `cargo afl fuzz` command of a job, with the custom mutator
    /// library `lib` when there is one.
    fn command(job: &Job, lib: Option<PathBuf>) -> Command {
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
        if let Some(lib) = lib {
            c.env("AFL_CUSTOM_MUTATOR_LIBRARY", lib).envs(MUTATOR_ENV);
        }
        // The output resumes run after run.
        c.envs(ENV).env("AFL_AUTORESUME", "1");
        c
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
        Ok(Launch::Process(Self::command(job, mutator_lib(job.paths))))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    fn env_of(c: &Command) -> Vec<(String, String)> {
        c.get_envs()
            .filter_map(|(k, v)| Some((k.to_str()?.to_string(), v?.to_str()?.to_string())))
            .collect()
    }

    #[test]
    fn afl_fuzz_runs_without_frameshift_and_with_only_the_shared_mutator() {
        static STOP: AtomicBool = AtomicBool::new(false);
        let paths = Paths {
            root: Paths::find_root(),
            work: std::env::temp_dir().join("splitfuzz-afl-env-test"),
        };
        let job = Job {
            paths: &paths,
            target: Target::parse("lazy_v3").unwrap(),
            time: std::time::Duration::from_secs(1),
            seed: Some(3),
            extra: &[],
            stop: &STOP,
        };
        let lib = PathBuf::from("/x/libsplitfuzz_afl_mutator.so");
        let with = env_of(&Afl::command(&job, Some(lib.clone())));
        let has =
            |e: &[(String, String)], k: &str, v: &str| e.iter().any(|(a, b)| a == k && b == v);
        assert!(has(&with, "AFL_FRAMESHIFT_DISABLE", "1"), "{with:?}");
        assert!(has(&with, "AFL_CUSTOM_MUTATOR_ONLY", "1"), "{with:?}");
        assert!(has(
            &with,
            "AFL_CUSTOM_MUTATOR_LIBRARY",
            lib.to_str().unwrap()
        ));
        assert!(has(&with, "AFL_AUTORESUME", "1"));
        // An unknown AFL_ variable costs afl-fuzz 2 s sleeps at every start.
        assert!(
            !with.iter().any(|(k, _)| k == "AFL_SUPPRESS_ERROR"),
            "{with:?}"
        );
        // Without the library AFL++'s own mutations are all there is.
        let without = env_of(&Afl::command(&job, None));
        assert!(has(&without, "AFL_FRAMESHIFT_DISABLE", "1"));
        assert!(
            !without
                .iter()
                .any(|(k, _)| k.starts_with("AFL_CUSTOM_MUTATOR")),
            "{without:?}"
        );
    }
}
