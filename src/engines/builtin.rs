//! The built-in engine (`splitfuzz fuzz`), run in this process: one
//! campaign of the target's policy. Its own corpus holds inputs that may
//! violate, so only the clean ones go to the shared corpus; its reproducers of
//! a run are the crash files (the original bytes, `.bin`).

use super::{files, mkdir, Engine, Job, Launch, Paths, Target};
use crate::fuzz::engine::{FuzzOptions, Progress};
use crate::model::policy::Policy;
use crate::Geometry;
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::Command;

pub struct Builtin;

impl Builtin {
    fn corpus(job: &Job) -> PathBuf {
        job.dir("builtin").join("corpus")
    }
    /// FuzzOptions::crashes_dir; the files land in its <policy>/ folder.
    fn crashes(job: &Job) -> PathBuf {
        job.dir("builtin").join("crashes")
    }
}

impl Engine for Builtin {
    fn name(&self) -> &'static str {
        "builtin"
    }

    fn installed(&self) -> Result<(), String> {
        Ok(())
    }

    fn supports(&self, t: Target) -> bool {
        t.preset.is_some()
    }

    fn takes_arguments(&self) -> bool {
        false
    }

    fn build(&self, _: &Paths, _: Option<Target>) -> Option<Command> {
        None
    }

    /// Its crash folder holds one run's reproducers (they were triaged);
    /// its corpus gets the shared corpus's inputs it lacks.
    fn prepare(&self, job: &Job) -> Result<()> {
        let crashes = Self::crashes(job);
        if crashes.exists() {
            std::fs::remove_dir_all(&crashes)
                .with_context(|| format!("cannot empty {}", crashes.display()))?;
        }
        let corpus = Self::corpus(job);
        mkdir(&corpus)?;
        for f in files(&job.corpus()) {
            let dest = corpus.join(f.file_name().unwrap_or_default());
            if !dest.exists() {
                std::fs::copy(&f, &dest).with_context(|| format!("cannot copy {}", f.display()))?;
            }
        }
        Ok(())
    }

    fn launch(&self, job: &Job) -> Result<Launch> {
        let preset = job
            .target
            .preset
            .with_context(|| format!("the builtin engine has no {} target", job.target.name))?;
        let seed = job.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        });
        Ok(Launch::InProcess(Box::new(FuzzOptions {
            duration: Some(job.time),
            seed,
            crashes_dir: Self::crashes(job),
            // Every finding is written here; triage compares with the curated ones.
            known_dir: None,
            corpus_dir: Some(Self::corpus(job)),
            progress: Progress::Off,
            stop: Some(job.stop),
            ..FuzzOptions::new(Policy::preset(preset), Geometry::SMALL)
        })))
    }

    fn crash_dir(&self, job: &Job) -> PathBuf {
        let label = job.target.preset.map(|p| Policy::preset(p).label());
        Self::crashes(job).join(label.unwrap_or_default())
    }

    fn is_crash(&self, name: &str) -> bool {
        name.ends_with(".bin")
    }

    fn queue(&self, job: &Job) -> Option<PathBuf> {
        Some(Self::corpus(job))
    }

    fn execs(&self, _: &Job, _: &str) -> Option<u64> {
        // Counted in process (see `super::run`).
        None
    }
}
