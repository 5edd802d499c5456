//! Triage: what a crash file of any engine is. Its bytes are replayed with
//! [`run_program`] under the target's policy (as the fuzz targets run them);
//! the violation's signature (invariant + kernel function) names it. The first
//! crash of a signature is minimized and saved with [`findings::save`], the
//! built-in engine's way, into the run's findings folder and checked against
//! the curated findings, which are only read: a curated reproducer no longer
//! than the new one is the one reported; a shorter new one is offered.

use super::{mkdir, Target};
use crate::fuzz::findings::{self, SaveTo, Saved};
use crate::run::{run_program, Outcome, RunConfig};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What one crash file is.
#[derive(Debug)]
pub enum Verdict {
    /// Its bytes violate nothing under the target's policy (or the model
    /// panicked on them: the message says so).
    NoRepro(String),
    /// A signature this triage had already seen.
    Seen(String),
    /// The first crash of a signature: minimized and saved.
    New(String),
    /// A crash of the decode target (the formats' round trip; no policy):
    /// kept as it is in the findings folder's decode/.
    RoundTrip(PathBuf),
}

/// One signature a triage has seen.
#[derive(Clone, Debug)]
pub struct Signature {
    /// The policy's label (`lazy-v3`).
    pub policy: String,
    /// `<invariant> <function>`.
    pub signature: String,
    /// Who found it first, as the caller said.
    pub found_by: String,
    /// Crash files with this signature.
    pub count: u64,
    /// The reproducer reported (curated or this run's) and this run's own.
    pub saved: Saved,
}

/// The triage of one run (`splitfuzz engine`) or of a whole campaign
/// (`splitfuzz continuous`): the signatures seen so far.
pub struct Triage {
    findings: PathBuf,
    known: Option<PathBuf>,
    sigs: BTreeMap<(String, String), Signature>,
    /// Crash files that did not reproduce.
    pub norepro: u64,
    /// Crash files of the decode target.
    pub round_trips: u64,
}

/// Run bytes under `cfg`; Err with the panic's message when the model panics.
pub fn replay(bytes: &[u8], cfg: &RunConfig) -> Result<Outcome, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_program(bytes, cfg))).map_err(
        |e| {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            format!("the model panicked: {msg}")
        },
    )
}

impl Triage {
    /// Save into `findings` (`<policy>/<invariant>-<function>.txt` + `.bin`),
    /// check against `known` (read only).
    pub fn new(findings: PathBuf, known: Option<PathBuf>) -> Triage {
        Triage {
            findings,
            known,
            sigs: BTreeMap::new(),
            norepro: 0,
            round_trips: 0,
        }
    }

    /// Triage one crash file of `target`; `found_by` says who found it (for
    /// the reproducer's header and [`Signature::found_by`]).
    pub fn file(&mut self, path: &Path, target: Target, found_by: &str) -> Result<Verdict> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let Some(cfg) = target.config() else {
            let dir = self.findings.join(target.name);
            mkdir(&dir)?;
            let dest = dir.join(path.file_name().unwrap_or_default());
            std::fs::write(&dest, &bytes)
                .with_context(|| format!("cannot write {}", dest.display()))?;
            self.round_trips += 1;
            return Ok(Verdict::RoundTrip(dest));
        };
        let out = match replay(&bytes, &cfg) {
            Ok(out) => out,
            Err(why) => {
                self.norepro += 1;
                return Ok(Verdict::NoRepro(why));
            }
        };
        let Some(sig) = out.signature() else {
            self.norepro += 1;
            return Ok(Verdict::NoRepro(format!(
                "no violation under {}",
                cfg.policy
            )));
        };
        let key = (cfg.policy.label(), sig.clone());
        if let Some(s) = self.sigs.get_mut(&key) {
            s.count += 1;
            return Ok(Verdict::Seen(sig));
        }
        let saved = findings::save(
            &SaveTo {
                dir: &self.findings,
                known: self.known.as_deref(),
                found_by,
                always_write: true,
            },
            &bytes,
            &cfg,
        )?;
        self.sigs.insert(
            key.clone(),
            Signature {
                policy: key.0,
                signature: sig.clone(),
                found_by: found_by.to_string(),
                count: 1,
                saved,
            },
        );
        Ok(Verdict::New(sig))
    }

    /// A signature seen, by policy label and signature.
    pub fn get(&self, policy: &str, sig: &str) -> Option<&Signature> {
        self.sigs.get(&(policy.to_string(), sig.to_string()))
    }

    /// Every signature seen, by policy and signature.
    pub fn signatures(&self) -> impl Iterator<Item = &Signature> {
        self.sigs.values()
    }
}
