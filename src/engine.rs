//! The built-in engine: works on stable, no instrumentation. Generation of random
//! byte strings plus mutation of a corpus, kept when a program reaches a new
//! model branch (or a new hit-count bucket of one). Deterministic for a given
//! seed and `--runs` with one job.

use crate::exec::{run, run_program, RunConfig};
use crate::minimize::minimize;
use crate::mm::{Geometry, COV_BITS};
use crate::policy::Policy;
use crate::program::Program;
use anyhow::{Context, Result};
use rand::{Rng, RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct FuzzOptions {
    pub policy: Policy,
    pub geometry: Geometry,
    pub duration: Duration,
    pub max_runs: Option<u64>,
    pub jobs: usize,
    pub seed: u64,
    pub crashes_dir: PathBuf,
    pub corpus_dir: Option<PathBuf>,
    pub progress: bool,
}

#[derive(Clone, Debug)]
pub struct Finding {
    pub signature: String,
    pub first_exec: u64,
    pub first_time: Duration,
    pub count: u64,
    pub path: PathBuf,
    pub ops: usize,
    pub message: String,
}

#[derive(Clone, Debug)]
pub struct Report {
    pub policy: String,
    pub geometry: Geometry,
    pub execs: u64,
    pub elapsed: Duration,
    pub corpus: usize,
    pub features: usize,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn exec_per_sec(&self) -> f64 {
        self.execs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The findings table printed at the end of a campaign.
    pub fn table(&self) -> String {
        let mut s = format!(
            "\n== {} ({} geometry): {} execs in {:.1}s ({:.0} exec/s), corpus {}, {} coverage features, {} finding(s)\n",
            self.policy,
            self.geometry.name(),
            self.execs,
            self.elapsed.as_secs_f64(),
            self.exec_per_sec(),
            self.corpus,
            self.features,
            self.findings.len()
        );
        if self.findings.is_empty() {
            s.push_str("   no violation found\n");
            return s;
        }
        s.push_str(&format!(
            "   {:<58} {:>10} {:>9} {:>4}  {}\n",
            "signature (invariant kernel-function)", "first hit", "count", "ops", "reproducer"
        ));
        for f in &self.findings {
            s.push_str(&format!(
                "   {:<58} {:>9.2}s {:>9} {:>4}  {}\n",
                f.signature,
                f.first_time.as_secs_f64(),
                f.count,
                f.ops,
                f.path.display()
            ));
        }
        for f in &self.findings {
            s.push_str(&format!("   - {}\n", f.message));
        }
        s
    }
}

fn bucket(c: u8) -> usize {
    match c {
        0 => 0,
        1 => 1,
        2 => 2,
        3 => 3,
        4..=7 => 4,
        8..=15 => 5,
        16..=63 => 6,
        _ => 7,
    }
}

struct Shared {
    findings: BTreeMap<String, Finding>,
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

pub fn mutate(rng: &mut Xoshiro256PlusPlus, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    let n = rng.gen_range(1..=4);
    for _ in 0..n {
        match rng.gen_range(0..7) {
            0 if !v.is_empty() => {
                let i = rng.gen_range(0..v.len());
                v[i] ^= 1 << rng.gen_range(0..8);
            }
            1 if !v.is_empty() => {
                let i = rng.gen_range(0..v.len());
                v[i] = rng.gen();
            }
            2 => {
                let i = rng.gen_range(0..=v.len());
                let k = rng.gen_range(1..=8);
                for _ in 0..k {
                    v.insert(i, rng.gen());
                }
            }
            3 if v.len() > 2 => {
                let i = rng.gen_range(0..v.len());
                let k = rng.gen_range(1..=8.min(v.len() - i));
                v.drain(i..i + k);
            }
            4 if !other.is_empty() => {
                // splice: our head + other's tail
                let a = rng.gen_range(0..=v.len());
                let b = rng.gen_range(0..other.len());
                v.truncate(a);
                v.extend_from_slice(&other[b..]);
            }
            5 if v.len() > 4 => {
                // duplicate a chunk (repeats an op sequence)
                let i = rng.gen_range(0..v.len());
                let k = rng.gen_range(1..=16.min(v.len() - i));
                let chunk: Vec<u8> = v[i..i + k].to_vec();
                let at = rng.gen_range(0..=v.len());
                for (j, b) in chunk.into_iter().enumerate() {
                    v.insert(at + j, b);
                }
            }
            _ if !v.is_empty() => {
                // small arithmetic on one byte (sizes, call indices)
                let i = rng.gen_range(0..v.len());
                v[i] = v[i]
                    .wrapping_add(rng.gen_range(1..=4))
                    .wrapping_sub(if rng.gen() { 0 } else { 5 });
            }
            _ => v.push(rng.gen()),
        }
    }
    v.truncate(400);
    v
}

fn save_finding(
    opts: &FuzzOptions,
    bytes: &[u8],
    cfg: &RunConfig,
) -> Result<(PathBuf, usize, String)> {
    let prog = Program::decode(bytes);
    let min = minimize(&prog, cfg).unwrap_or(prog);
    let out = run(&min, cfg);
    let sig = out.signature().unwrap_or_default();
    let msg = out.violation.map(|v| v.to_string()).unwrap_or_default();
    let dir = opts.crashes_dir.join(opts.policy.label());
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{}.txt", slug(&sig)));
    // Keep an existing reproducer of the same signature if it is no longer.
    if let Ok(old) = std::fs::read_to_string(&path) {
        if let Ok(p) = Program::parse(&old) {
            if run(&p, cfg).signature().as_deref() == Some(sig.as_str())
                && p.ops.len() <= min.ops.len()
            {
                let msg = run(&p, cfg)
                    .violation
                    .map(|v| v.to_string())
                    .unwrap_or_default();
                return Ok((path, p.ops.len(), msg));
            }
        }
    }
    let header = format!(
        "# splitfuzz finding: {sig}\n# found by the built-in engine, minimized; replay: splitfuzz repro {}\n",
        path.display()
    );
    std::fs::write(&path, header + &min.to_text())
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::write(path.with_extension("bin"), bytes)?;
    Ok((path, min.ops.len(), msg))
}

pub fn fuzz(opts: &FuzzOptions) -> Result<Report> {
    let cfg = RunConfig::new(opts.policy.clone(), opts.geometry);
    let start = Instant::now();
    let execs = AtomicU64::new(0);
    let shared = Mutex::new(Shared {
        findings: BTreeMap::new(),
    });
    let corpus_total = AtomicU64::new(0);
    let feature_total = AtomicU64::new(0);
    let bar = if opts.progress {
        let b = indicatif::ProgressBar::new_spinner();
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{elapsed}] {msg}").unwrap(),
        );
        b.enable_steady_tick(Duration::from_millis(250));
        Some(b)
    } else {
        None
    };
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // Seeds: whatever the corpus folder already holds (sorted, so runs repeat).
    let seeds: Vec<Vec<u8>> = match &opts.corpus_dir {
        Some(d) => {
            let mut files: Vec<PathBuf> = std::fs::read_dir(d)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.path())
                        .filter(|p| p.is_file())
                        .collect()
                })
                .unwrap_or_default();
            files.sort();
            files.iter().filter_map(|f| std::fs::read(f).ok()).collect()
        }
        None => Vec::new(),
    };
    let done = |n: u64| start.elapsed() >= opts.duration || opts.max_runs.is_some_and(|m| n >= m);

    std::thread::scope(|s| {
        for job in 0..opts.jobs {
            let cfg = &cfg;
            let execs = &execs;
            let shared = &shared;
            let bar = &bar;
            let corpus_total = &corpus_total;
            let feature_total = &feature_total;
            let seeds = &seeds;
            s.spawn(move || {
                let mut rng = Xoshiro256PlusPlus::seed_from_u64(
                    opts.seed.wrapping_mul(0x9e37_79b9).wrapping_add(job as u64),
                );
                let mut corpus: Vec<Vec<u8>> = Vec::new();
                let mut seen = vec![false; COV_BITS * 8];
                let mut features_n = 0usize;
                let mut last_print = Instant::now();
                for sd in seeds {
                    let out = run_program(sd, cfg);
                    for f in features(&out.cov) {
                        if !seen[f] {
                            seen[f] = true;
                            features_n += 1;
                        }
                    }
                    corpus.push(sd.clone());
                }
                loop {
                    let n = execs.fetch_add(1, Ordering::Relaxed);
                    if done(n) {
                        break;
                    }
                    let input = if corpus.is_empty() || rng.gen_ratio(1, 8) {
                        let len = rng.gen_range(4..160);
                        let mut b = vec![0u8; len];
                        rng.fill_bytes(&mut b);
                        b
                    } else {
                        let a = rng.gen_range(0..corpus.len());
                        let b = rng.gen_range(0..corpus.len());
                        mutate(&mut rng, &corpus[a], &corpus[b])
                    };
                    let out = run_program(&input, cfg);
                    let mut new = false;
                    for f in features(&out.cov) {
                        if !seen[f] {
                            seen[f] = true;
                            new = true;
                            features_n += 1;
                        }
                    }
                    if new {
                        corpus.push(input.clone());
                        corpus_total.fetch_add(1, Ordering::Relaxed);
                        feature_total.fetch_max(features_n as u64, Ordering::Relaxed);
                    }
                    if let Some(v) = out.violation {
                        let sig = v.signature();
                        let first = {
                            let mut sh = shared.lock().unwrap();
                            match sh.findings.get_mut(&sig) {
                                Some(f) => {
                                    f.count += 1;
                                    false
                                }
                                None => {
                                    sh.findings.insert(
                                        sig.clone(),
                                        Finding {
                                            signature: sig.clone(),
                                            first_exec: n,
                                            first_time: start.elapsed(),
                                            count: 1,
                                            path: PathBuf::new(),
                                            ops: 0,
                                            message: v.to_string(),
                                        },
                                    );
                                    true
                                }
                            }
                        };
                        if first {
                            let saved = save_finding(opts, &input, cfg);
                            let mut sh = shared.lock().unwrap();
                            let f = sh.findings.get_mut(&sig).unwrap();
                            match saved {
                                Ok((p, ops, msg)) => {
                                    f.path = p;
                                    f.ops = ops;
                                    f.message = format!("{msg} [minimized reproducer]");
                                }
                                Err(e) => {
                                    f.message = format!("{} (could not save: {e:#})", f.message)
                                }
                            }
                            if let Some(b) = bar {
                                b.println(format!("new finding: {sig}"));
                            } else {
                                eprintln!("new finding: {sig}");
                            }
                        }
                    }
                    if job == 0 && n % 256 == 0 {
                        let nf = shared.lock().unwrap().findings.len();
                        let el = start.elapsed().as_secs_f64().max(1e-9);
                        let msg = format!(
                            "{}: {} execs, {:.0} exec/s, corpus {}, features {}, findings {}",
                            opts.policy.label(),
                            n,
                            n as f64 / el,
                            corpus_total.load(Ordering::Relaxed),
                            feature_total.load(Ordering::Relaxed),
                            nf
                        );
                        if let Some(b) = bar {
                            b.set_message(msg);
                        } else if !tty
                            && opts.progress
                            && last_print.elapsed() > Duration::from_secs(10)
                        {
                            eprintln!("{msg}");
                            last_print = Instant::now();
                        }
                    }
                }
                if let Some(dir) = &opts.corpus_dir {
                    let _ = save_corpus(dir, &corpus);
                }
            });
        }
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let total = execs
        .load(Ordering::Relaxed)
        .min(opts.max_runs.unwrap_or(u64::MAX));
    let findings = shared
        .into_inner()
        .unwrap()
        .findings
        .into_values()
        .collect();
    Ok(Report {
        policy: opts.policy.label(),
        geometry: opts.geometry,
        execs: total,
        elapsed: start.elapsed(),
        corpus: corpus_total.load(Ordering::Relaxed) as usize,
        features: feature_total.load(Ordering::Relaxed) as usize,
        findings,
    })
}

/// Write corpus entries named by a content hash.
pub fn save_corpus(dir: &Path, corpus: &[Vec<u8>]) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    for c in corpus {
        let mut h: u64 = 0xcbf29ce484222325;
        for b in c {
            h ^= *b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        std::fs::write(dir.join(format!("{h:016x}")), c)?;
    }
    Ok(())
}

/// The coverage features of one execution (model branch × hit-count bucket).
pub fn features(cov: &[u8]) -> impl Iterator<Item = usize> + '_ {
    cov.iter()
        .enumerate()
        .filter(|(_, c)| **c != 0)
        .map(|(i, c)| i * 8 + bucket(*c))
}

/// Corpus minimization with the model's own coverage (no instrumentation):
/// smallest inputs first, keep one whenever it adds a feature or a new
/// violation signature. Returns the indices kept, in input order.
pub fn cmin(inputs: &[Vec<u8>], cfg: &RunConfig) -> Vec<usize> {
    let mut order: Vec<usize> = (0..inputs.len()).collect();
    order.sort_by_key(|&i| (inputs[i].len(), i));
    let mut seen = vec![false; COV_BITS * 8];
    let mut sigs = std::collections::BTreeSet::new();
    let mut keep = Vec::new();
    for i in order {
        let out = run_program(&inputs[i], cfg);
        let mut new = false;
        for f in features(&out.cov) {
            if !seen[f] {
                seen[f] = true;
                new = true;
            }
        }
        if let Some(s) = out.signature() {
            new |= sigs.insert(s);
        }
        if new {
            keep.push(i);
        }
    }
    keep.sort_unstable();
    keep
}
