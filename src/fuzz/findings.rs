//! A campaign's findings: one per signature (invariant + kernel function),
//! minimized and saved as a text reproducer (+ the original bytes), checked
//! against the curated findings, which a campaign only ever reads.

use super::engine::FuzzOptions;
use crate::base::Severity;
use crate::fuzz::fixes::{self, FixHint};
use crate::prog::Program;
use crate::run::{minimize, run, RunConfig};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Finding {
    pub signature: String,
    pub severity: Severity,
    /// Where the harm appears (the violation's kernel function).
    pub function: String,
    pub first_exec: u64,
    pub first_time: Duration,
    pub count: u64,
    pub path: PathBuf,
    pub ops: usize,
    pub message: String,
    /// The overrides that act on the minimized reproducer.
    pub fix: FixHint,
    /// How the finding relates to the curated findings (`known_dir`).
    pub curated: Curated,
}

/// A finding against the curated findings of `FuzzOptions::known_dir`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Curated {
    /// No curated reproducer has its signature (or no `known_dir`).
    #[default]
    New,
    /// `path` is the curated reproducer: this run's is no shorter.
    Saved,
    /// This run's reproducer (`path`) is shorter than the curated one, which
    /// stays as it is: copy it over to adopt it.
    Shorter {
        curated: PathBuf,
        curated_ops: usize,
    },
}

impl Curated {
    /// The words the findings table and the finding lines use.
    pub fn describe(&self, ops: usize) -> String {
        match self {
            Curated::New => "new (not among the curated findings)".into(),
            Curated::Saved => "already saved".into(),
            Curated::Shorter {
                curated,
                curated_ops,
            } => format!(
                "a shorter reproducer ({ops} ops) than the saved {} ({curated_ops} ops), offered: copy it there to adopt it",
                curated.display()
            ),
        }
    }
}

fn slug(sig: &str) -> String {
    sig.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

pub(super) struct Saved {
    pub path: PathBuf,
    pub ops: usize,
    pub message: String,
    pub fix: FixHint,
    pub curated: Curated,
}

/// A reproducer at `path` that still gives signature `sig`: (its ops, its message).
fn still_reproduces(path: &Path, sig: &str, cfg: &RunConfig) -> Option<(Program, String)> {
    let p = Program::parse(&std::fs::read_to_string(path).ok()?).ok()?;
    let out = run(&p, cfg);
    (out.signature().as_deref() == Some(sig))
        .then(|| (p, out.violation.map(|v| v.to_string()).unwrap_or_default()))
}

pub(super) fn save_finding(opts: &FuzzOptions, bytes: &[u8], cfg: &RunConfig) -> Result<Saved> {
    let prog = Program::decode(bytes);
    let min = minimize(&prog, cfg).unwrap_or(prog);
    let out = run(&min, cfg);
    let sig = out.signature().unwrap_or_default();
    let msg = out
        .violation
        .as_ref()
        .map(|v| v.to_string())
        .unwrap_or_default();
    let file = format!("{}.txt", slug(&sig));
    // A curated reproducer of the same signature is read, never written.
    let mut curated = Curated::New;
    if let Some(known) = opts
        .known_dir
        .as_ref()
        .map(|d| d.join(opts.policy.label()).join(&file))
    {
        if let Some((p, message)) = still_reproduces(&known, &sig, cfg) {
            if p.ops.len() <= min.ops.len() {
                return Ok(Saved {
                    fix: fixes::hint(&p, cfg),
                    path: known,
                    ops: p.ops.len(),
                    message,
                    curated: Curated::Saved,
                });
            }
            curated = Curated::Shorter {
                curated: known,
                curated_ops: p.ops.len(),
            };
        }
    }
    let dir = opts.crashes_dir.join(opts.policy.label());
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(&file);
    // Keep this run directory's reproducer of the same signature (a campaign
    // run again into it) if it is no longer.
    if let Some((p, message)) = still_reproduces(&path, &sig, cfg) {
        if p.ops.len() <= min.ops.len() {
            return Ok(Saved {
                fix: fixes::hint(&p, cfg),
                path,
                ops: p.ops.len(),
                message,
                curated,
            });
        }
    }
    let fix = fixes::hint(&min, cfg);
    let mut header = format!(
        "# splitfuzz finding: {sig}\n# found by the built-in engine, minimized; replay: splitfuzz repro {}\n# {}\n",
        path.display(),
        fix.summary()
    );
    if let Some(v) = &out.violation {
        header.push_str(&format!("# severity: {}\n", v.severity));
        if let Some(chain) = crate::model::policy::SplitCaller::call_chain(&v.function) {
            header.push_str(&format!("# kernel: {chain}\n"));
        }
        if let Some(c) = crate::model::policy::SplitCaller::for_finding(&v.function) {
            let s = cfg.policy.strategy(c);
            let base = crate::model::policy::cell(cfg.policy.preset, c);
            let cite = if s == base.strategy {
                base.cite
            } else {
                "override"
            };
            header.push_str(&format!(
                "# as posted: {} {} ({cite}): {}\n",
                c.name(),
                s.name(),
                c.describe(s)
            ));
        }
    }
    std::fs::write(&path, header + &min.to_text())
        .with_context(|| format!("cannot write {}", path.display()))?;
    let bin = path.with_extension("bin");
    std::fs::write(&bin, bytes).with_context(|| format!("cannot write {}", bin.display()))?;
    let curated = match curated {
        // Asked to write into the curated folder itself (--crashes crashes).
        Curated::Shorter { .. } if Some(&path) == curated_path(&curated) => Curated::Saved,
        c => c,
    };
    Ok(Saved {
        path,
        ops: min.ops.len(),
        message: msg,
        fix,
        curated,
    })
}

fn curated_path(c: &Curated) -> Option<&PathBuf> {
    match c {
        Curated::Shorter { curated, .. } => Some(curated),
        _ => None,
    }
}
