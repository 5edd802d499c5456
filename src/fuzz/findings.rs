//! A campaign's findings: one per signature (invariant + kernel function),
//! minimized and saved as a text reproducer (+ the original bytes), checked
//! against the curated findings, which a campaign only ever reads.

use super::engine::FuzzOptions;
use crate::base::Severity;
use crate::fuzz::fixes::{self, FixHint};
use crate::prog::Program;
use crate::run::{minimize, run, Outcome, RunConfig};
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

/// `<invariant>-<function>.txt`: a signature's reproducer file.
fn file_name(sig: &str) -> String {
    format!("{}.txt", slug(sig))
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

/// A saved finding: the reproducer to report and how it relates to the
/// curated findings.
#[derive(Clone, Debug)]
pub struct Saved {
    /// The reproducer to report: the curated one when it is no longer, else
    /// the one in the run's folder.
    pub path: PathBuf,
    pub ops: usize,
    pub message: String,
    pub fix: FixHint,
    pub curated: Curated,
    /// The reproducer in the run's folder (written now or kept from before);
    /// None when nothing was written there (the curated one is reported).
    pub own: Option<PathBuf>,
}

/// Where [`save`] writes a finding and what it checks it against.
pub struct SaveTo<'a> {
    /// This run's folder: DIR/<policy>/<invariant>-<function>.txt (+ .bin).
    pub dir: &'a Path,
    /// The curated findings (read only), laid out the same way.
    pub known: Option<&'a Path>,
    /// Who found it, for the reproducer's header ("the built-in engine").
    pub found_by: &'a str,
    /// Write this run's reproducer even when a curated one is no longer (the
    /// curated one is still the one reported).
    pub always_write: bool,
}

/// A reproducer at `path` that still gives signature `sig`: (its ops, its message).
fn still_reproduces(path: &Path, sig: &str, cfg: &RunConfig) -> Option<(Program, String)> {
    let p = Program::parse(&std::fs::read_to_string(path).ok()?).ok()?;
    let out = run(&p, cfg);
    (out.signature().as_deref() == Some(sig))
        .then(|| (p, out.violation.map(|v| v.to_string()).unwrap_or_default()))
}

/// The built-in engine's findings: into `crashes_dir`, against `known_dir`.
pub(super) fn save_finding(opts: &FuzzOptions, bytes: &[u8], cfg: &RunConfig) -> Result<Saved> {
    save(
        &SaveTo {
            dir: &opts.crashes_dir,
            known: opts.known_dir.as_deref(),
            found_by: "the built-in engine",
            always_write: false,
        },
        bytes,
        cfg,
    )
}

/// Minimize a violating input (`bytes`, as any engine gives them) keeping its
/// signature, and save it as text (+ the original bytes) under `to.dir`
/// unless the curated findings already have a reproducer no longer than it
/// (see [`SaveTo::always_write`]). Never writes into `to.known`.
pub fn save(to: &SaveTo, bytes: &[u8], cfg: &RunConfig) -> Result<Saved> {
    let prog = Program::decode(bytes);
    let min = minimize(&prog, cfg).unwrap_or(prog);
    let out = run(&min, cfg);
    let sig = out.signature().unwrap_or_default();
    // A curated reproducer of the same signature is read, never written.
    let mut curated = Curated::New;
    let mut reported = None;
    if let Some(known) = to
        .known
        .map(|d| d.join(cfg.policy.label()).join(file_name(&sig)))
    {
        if let Some((p, message)) = still_reproduces(&known, &sig, cfg) {
            if p.ops.len() <= min.ops.len() {
                let saved = Saved {
                    fix: fixes::hint(&p, cfg),
                    path: known,
                    ops: p.ops.len(),
                    message,
                    curated: Curated::Saved,
                    own: None,
                };
                if !to.always_write {
                    return Ok(saved);
                }
                reported = Some(saved);
            } else {
                curated = Curated::Shorter {
                    curated: known,
                    curated_ops: p.ops.len(),
                };
            }
        }
    }
    let mine = write_own(to, bytes, cfg, &min, &out, curated)?;
    Ok(match reported {
        Some(r) => Saved { own: mine.own, ..r },
        None => mine,
    })
}

/// [`save`]'s write into `to.dir`: keep a reproducer of the same signature
/// already there (a campaign run again into it) if it is no longer.
fn write_own(
    to: &SaveTo,
    bytes: &[u8],
    cfg: &RunConfig,
    min: &Program,
    out: &Outcome,
    curated: Curated,
) -> Result<Saved> {
    let sig = out.signature().unwrap_or_default();
    let msg = out
        .violation
        .as_ref()
        .map(|v| v.to_string())
        .unwrap_or_default();
    let dir = to.dir.join(cfg.policy.label());
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(file_name(&sig));
    if let Some((p, message)) = still_reproduces(&path, &sig, cfg) {
        if p.ops.len() <= min.ops.len() {
            return Ok(Saved {
                fix: fixes::hint(&p, cfg),
                own: Some(path.clone()),
                path,
                ops: p.ops.len(),
                message,
                curated,
            });
        }
    }
    let fix = fixes::hint(min, cfg);
    let mut header = format!(
        "# splitfuzz finding: {sig}\n# found by {}, minimized; replay: splitfuzz repro {}\n# {}\n",
        to.found_by,
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
        own: Some(path.clone()),
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
