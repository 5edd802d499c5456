//! The built-in engine: works on stable, no instrumentation. Generation of random
//! byte strings plus mutation of a corpus, kept when a program reaches a new
//! model branch (or a new hit-count bucket of one). Deterministic for a given
//! seed and `--runs` with one job.

use crate::base::Geometry;
use crate::check::Severity;
use crate::fuzz::fixes::{self, FixHint};
use crate::model::coverage;
use crate::model::mm::COV_BITS;
use crate::model::policy::Policy;
use crate::prog::minimize::minimize;
use crate::prog::Program;
use crate::run::{run, run_program, RunConfig};
use anyhow::{Context, Result};
use rand::{Rng, RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How a campaign shows progress on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Nothing but errors.
    Off,
    /// An indicatif spinner line (for a terminal) plus a line per new finding.
    Bar,
    /// A progress line at this interval plus a line per new finding (for logs).
    Lines(Duration),
}

pub struct FuzzOptions {
    pub policy: Policy,
    pub geometry: Geometry,
    /// Wall-clock budget of this campaign; None: until `max_runs` or `stop`.
    pub duration: Option<Duration>,
    /// Stop after this many executions (deterministic with one job).
    pub max_runs: Option<u64>,
    pub jobs: usize,
    pub seed: u64,
    pub crashes_dir: PathBuf,
    /// Seeds the campaign; its new inputs are added to it at the end.
    pub corpus_dir: Option<PathBuf>,
    pub progress: Progress,
    /// Set from outside (e.g. a signal handler) to end the campaign cleanly.
    pub stop: Option<&'static AtomicBool>,
    /// Append a row of `StatsRow::CSV_HEADER` columns here every `stats_every`
    /// and at the end.
    pub stats_csv: Option<PathBuf>,
    pub stats_every: Duration,
}

impl FuzzOptions {
    /// A campaign of `max_runs` executions with one job, seed 0, no progress,
    /// reproducers under `crashes/`.
    pub fn new(policy: Policy, geometry: Geometry) -> FuzzOptions {
        FuzzOptions {
            policy,
            geometry,
            duration: None,
            max_runs: None,
            jobs: 1,
            seed: 0,
            crashes_dir: PathBuf::from("crashes"),
            corpus_dir: None,
            progress: Progress::Off,
            stop: None,
            stats_csv: None,
            stats_every: Duration::from_secs(1),
        }
    }
}

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
}

/// One sample of a campaign over time.
#[derive(Clone, Debug, PartialEq)]
pub struct StatsRow {
    pub policy: String,
    /// Seconds since this campaign started.
    pub time: f64,
    pub execs: u64,
    /// Executions per second over the interval since the previous row.
    pub exec_per_sec: f64,
    pub corpus: usize,
    /// Coverage features (model branch x hit-count bucket).
    pub coverage: usize,
    /// Model branches (named coverage points) reached.
    pub branches: usize,
    pub findings: usize,
}

impl StatsRow {
    pub const CSV_HEADER: &'static str =
        "policy,time_s,execs,exec_per_s,corpus,coverage,branches,findings";
    pub fn csv(&self) -> String {
        format!(
            "{},{:.3},{},{:.1},{},{},{},{}",
            self.policy,
            self.time,
            self.execs,
            self.exec_per_sec,
            self.corpus,
            self.coverage,
            self.branches,
            self.findings
        )
    }
    pub fn parse_csv(line: &str) -> Option<StatsRow> {
        let f: Vec<&str> = line.trim().split(',').collect();
        if f.len() != 8 {
            return None;
        }
        Some(StatsRow {
            policy: f[0].to_string(),
            time: f[1].parse().ok()?,
            execs: f[2].parse().ok()?,
            exec_per_sec: f[3].parse().ok()?,
            corpus: f[4].parse().ok()?,
            coverage: f[5].parse().ok()?,
            branches: f[6].parse().ok()?,
            findings: f[7].parse().ok()?,
        })
    }
}

#[derive(Clone, Debug)]
pub struct Report {
    pub policy: String,
    pub geometry: Geometry,
    pub jobs: usize,
    pub execs: u64,
    pub elapsed: Duration,
    /// Inputs in the shared corpus (seeds included).
    pub corpus: usize,
    /// Coverage features of the union of every job's runs.
    pub features: usize,
    /// Executions that reached each coverage slot (see `coverage::table`).
    pub hits: Vec<u64>,
    pub findings: Vec<Finding>,
    /// Ended by `stop` (a signal) before its budget.
    pub interrupted: bool,
    /// Reproducers or corpus entries that could not be written.
    pub errors: Vec<String>,
    pub stats: Vec<StatsRow>,
}

impl Report {
    pub fn exec_per_sec(&self) -> f64 {
        self.execs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The named coverage of the campaign.
    pub fn coverage(&self) -> Vec<coverage::Branch> {
        coverage::table(&self.hits)
    }

    /// The findings table printed at the end of a campaign.
    pub fn table(&self) -> String {
        let cov = self.coverage();
        let reached = cov.iter().filter(|b| b.hits > 0).count();
        let mut s = format!(
            "\n== {} ({} geometry, {} job{}): {} execs in {:.1}s ({:.0} exec/s){}, corpus {}, {} coverage features, {} of {} model branches reached, {} finding(s)\n",
            self.policy,
            self.geometry.name(),
            self.jobs,
            if self.jobs == 1 { "" } else { "s" },
            self.execs,
            self.elapsed.as_secs_f64(),
            self.exec_per_sec(),
            if self.interrupted { ", interrupted" } else { "" },
            self.corpus,
            self.features,
            reached,
            cov.len(),
            self.findings.len()
        );
        let never: Vec<&str> = cov
            .iter()
            .filter(|b| b.hits == 0)
            .map(|b| b.name.as_str())
            .collect();
        if !never.is_empty() {
            s.push_str(&format!("   never reached: {}\n", never.join(", ")));
        }
        if self.findings.is_empty() {
            s.push_str("   no violation found\n");
            return s;
        }
        s.push_str(&format!(
            "   {:<15} {:<52} {:>9} {:>9} {:>4}  {:<28} {}\n",
            "severity",
            "signature (invariant, where the harm appears)",
            "first hit",
            "count",
            "ops",
            "override that removes it",
            "reproducer"
        ));
        for f in &self.findings {
            s.push_str(&format!(
                "   {:<15} {:<52} {:>8.2}s {:>9} {:>4}  {:<28} {}\n",
                f.severity.name(),
                f.signature,
                f.first_time.as_secs_f64(),
                f.count,
                f.ops,
                f.fix.best().unwrap_or("-"),
                f.path.display()
            ));
        }
        for f in &self.findings {
            s.push_str(&format!("   - {}\n     {}\n", f.message, f.fix.summary()));
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

/// Re-plan: the same ops under another `pte_alloc_one()` plan. The plan is
/// the input's first two bytes (program.rs `plan()`: tag % 4 = nth, from, at,
/// never; then the call index); nth, from and never take exactly these two
/// bytes, so the ops decode as before (an `at` plan, which reads more bytes,
/// is left alone). A program that reaches a split under a transient failure
/// is then tried under a sustained one (`from`), which the retry loops need.
pub fn replan(rng: &mut Xoshiro256PlusPlus, v: &mut [u8]) {
    if v.len() < 2 || v[0] % 4 == 2 {
        return;
    }
    v[0] = [0u8, 1, 3][rng.gen_range(0..3)] + 4 * rng.gen_range(0..64u8);
    if rng.gen_ratio(1, 2) {
        v[1] = rng.gen();
    }
}

pub fn mutate(rng: &mut Xoshiro256PlusPlus, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    let n = rng.gen_range(1..=4);
    for _ in 0..n {
        match rng.gen_range(0..8) {
            7 if v.len() >= 2 && v[0] % 4 != 2 => replan(rng, &mut v),
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

struct Saved {
    path: PathBuf,
    ops: usize,
    message: String,
    fix: FixHint,
}

fn save_finding(opts: &FuzzOptions, bytes: &[u8], cfg: &RunConfig) -> Result<Saved> {
    let prog = Program::decode(bytes);
    let min = minimize(&prog, cfg).unwrap_or(prog);
    let out = run(&min, cfg);
    let sig = out.signature().unwrap_or_default();
    let msg = out
        .violation
        .as_ref()
        .map(|v| v.to_string())
        .unwrap_or_default();
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
                let fix = fixes::hint(&p, cfg);
                return Ok(Saved {
                    path,
                    ops: p.ops.len(),
                    message: msg,
                    fix,
                });
            }
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
    Ok(Saved {
        path,
        ops: min.ops.len(),
        message: msg,
        fix,
    })
}

/// What every job shares: the corpus, the coverage map (the union of every
/// job's), the findings.
struct Global {
    seen: Vec<bool>,
    branch_seen: Vec<bool>,
    features: usize,
    branches: usize,
    /// (job that added it, input); seeds come first with job usize::MAX.
    corpus: Vec<(usize, Vec<u8>)>,
    seeds: usize,
    findings: BTreeMap<String, Finding>,
    errors: Vec<String>,
}

impl Global {
    /// Mark features as seen; true if any was new to the union.
    fn add(&mut self, feats: &[usize]) -> bool {
        let mut new = false;
        for &f in feats {
            if !self.seen[f] {
                self.seen[f] = true;
                self.features += 1;
                new = true;
                let b = f / 8;
                if !self.branch_seen[b] {
                    self.branch_seen[b] = true;
                    self.branches += 1;
                }
            }
        }
        new
    }
}

/// Executions between two imports of the other jobs' corpus entries.
const SYNC_EVERY: u64 = 2048;

enum Msg {
    Finding(String),
}

/// Run one campaign. With one job and `max_runs` (and no `duration` or
/// `stop`), the findings, counts and corpus depend only on the options: wall
/// time decides only when progress and stats rows are printed.
pub fn fuzz(opts: &FuzzOptions) -> Result<Report> {
    let cfg = RunConfig::new(opts.policy.clone(), opts.geometry);
    let jobs = opts.jobs.max(1);
    let mut stats_file = match &opts.stats_csv {
        Some(p) => {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("cannot open {}", p.display()))?;
            if f.metadata().map(|m| m.len() == 0).unwrap_or(false) {
                writeln!(f, "{}", StatsRow::CSV_HEADER)
                    .with_context(|| format!("cannot write {}", p.display()))?;
            }
            Some((p.clone(), f))
        }
        None => None,
    };
    // Seeds: whatever the corpus folder already holds (sorted, so runs repeat).
    let seeds: Vec<Vec<u8>> = match &opts.corpus_dir {
        Some(d) if d.is_dir() => input_files(d)
            .with_context(|| format!("cannot read {}", d.display()))?
            .iter()
            .map(|f| std::fs::read(f).with_context(|| format!("cannot read {}", f.display())))
            .collect::<Result<_>>()?,
        _ => Vec::new(),
    };
    let start = Instant::now();
    let mut global = Global {
        seen: vec![false; COV_BITS * 8],
        branch_seen: vec![false; COV_BITS],
        features: 0,
        branches: 0,
        corpus: Vec::new(),
        seeds: seeds.len(),
        findings: BTreeMap::new(),
        errors: Vec::new(),
    };
    let mut hits = vec![0u64; COV_BITS];
    let mut feats = Vec::new();
    for sd in seeds {
        let out = run_program(&sd, &cfg);
        feats.clear();
        feats.extend(features(&out.cov));
        coverage::accumulate(&mut hits, &out.cov);
        global.add(&feats);
        global.corpus.push((usize::MAX, sd));
    }
    let global = Mutex::new(global);
    let tickets = AtomicU64::new(0);
    let executed = AtomicU64::new(0);
    let halt = AtomicBool::new(false);
    let stopped = || opts.stop.is_some_and(|s| s.load(Ordering::Relaxed));
    let bar = if opts.progress == Progress::Bar {
        let b = indicatif::ProgressBar::new_spinner();
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{elapsed}] {msg}").unwrap(),
        );
        b.enable_steady_tick(Duration::from_millis(250));
        Some(b)
    } else {
        None
    };
    let (tx, rx) = std::sync::mpsc::channel::<Msg>();
    let label = opts.policy.label();
    let mut rows: Vec<StatsRow> = Vec::new();
    let mut interrupted = false;

    let job_hits: Vec<Vec<u64>> = std::thread::scope(|s| {
        let mut handles = Vec::new();
        for job in 0..jobs {
            let cfg = &cfg;
            let global = &global;
            let tickets = &tickets;
            let executed = &executed;
            let halt = &halt;
            let stopped = &stopped;
            let label = &label;
            let tx = tx.clone();
            handles.push(s.spawn(move || {
                let mut rng = Xoshiro256PlusPlus::seed_from_u64(
                    opts.seed.wrapping_mul(0x9e37_79b9).wrapping_add(job as u64),
                );
                let (mut corpus, mut seen, mut synced) = {
                    let g = global.lock().unwrap();
                    let c: Vec<Vec<u8>> = g.corpus.iter().map(|(_, b)| b.clone()).collect();
                    (c, g.seen.clone(), g.corpus.len())
                };
                let mut hits = vec![0u64; COV_BITS];
                let mut newf: Vec<usize> = Vec::new();
                let mut local_execs = 0u64;
                loop {
                    if halt.load(Ordering::Relaxed) || stopped() {
                        break;
                    }
                    let n = tickets.fetch_add(1, Ordering::Relaxed);
                    if opts.max_runs.is_some_and(|m| n >= m) {
                        halt.store(true, Ordering::Relaxed);
                        break;
                    }
                    if jobs > 1 && local_execs % SYNC_EVERY == SYNC_EVERY - 1 {
                        // Import the other jobs' new inputs and the union's coverage.
                        let g = global.lock().unwrap();
                        for (j, b) in &g.corpus[synced..] {
                            if *j != job {
                                corpus.push(b.clone());
                            }
                        }
                        synced = g.corpus.len();
                        seen.copy_from_slice(&g.seen);
                    }
                    local_execs += 1;
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
                    executed.fetch_add(1, Ordering::Relaxed);
                    newf.clear();
                    for (i, &c) in out.cov.iter().enumerate() {
                        if c != 0 {
                            hits[i] += 1;
                            let f = i * 8 + bucket(c);
                            if !seen[f] {
                                seen[f] = true;
                                newf.push(f);
                            }
                        }
                    }
                    if !newf.is_empty() {
                        let mut g = global.lock().unwrap();
                        if g.add(&newf) {
                            g.corpus.push((job, input.clone()));
                            drop(g);
                            corpus.push(input.clone());
                        }
                    }
                    if let Some(v) = out.violation {
                        let sig = v.signature();
                        let first = {
                            let mut g = global.lock().unwrap();
                            match g.findings.get_mut(&sig) {
                                Some(f) => {
                                    f.count += 1;
                                    false
                                }
                                None => {
                                    g.findings.insert(
                                        sig.clone(),
                                        Finding {
                                            signature: sig.clone(),
                                            severity: v.severity,
                                            function: v.function.clone(),
                                            first_exec: n,
                                            first_time: start.elapsed(),
                                            count: 1,
                                            path: PathBuf::new(),
                                            ops: 0,
                                            message: v.to_string(),
                                            fix: FixHint::default(),
                                        },
                                    );
                                    true
                                }
                            }
                        };
                        if first {
                            let saved = save_finding(opts, &input, cfg);
                            let mut g = global.lock().unwrap();
                            match saved {
                                Ok(sv) => {
                                    let f = g.findings.get_mut(&sig).unwrap();
                                    f.path = sv.path;
                                    f.ops = sv.ops;
                                    f.message = format!("{} [minimized reproducer]", sv.message);
                                    f.fix = sv.fix;
                                    let line = format!(
                                        "new finding: {label} {sig} at {:.2}s (exec {n}): {}; {}",
                                        f.first_time.as_secs_f64(),
                                        f.path.display(),
                                        f.fix.summary()
                                    );
                                    let _ = tx.send(Msg::Finding(line));
                                }
                                Err(e) => {
                                    g.errors.push(format!(
                                        "cannot save the reproducer of {sig}: {e:#}"
                                    ));
                                    halt.store(true, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                }
                drop(tx);
                hits
            }));
        }
        drop(tx);
        // This thread reports: progress, stats rows, the deadline, signals.
        let tick = Duration::from_millis(50);
        let mut last_log = (Duration::ZERO, 0u64);
        let mut last_row = (Duration::ZERO, 0u64);
        // The sample before `last_row`: the final row's rate is taken over it
        // when the final interval is too short to mean anything.
        let mut prev_row = (Duration::ZERO, 0u64);
        let sample = |now: Duration, last: (Duration, u64)| {
            let g = global.lock().unwrap();
            let execs = executed.load(Ordering::Relaxed);
            let dt = (now - last.0).as_secs_f64().max(1e-9);
            StatsRow {
                policy: label.clone(),
                time: now.as_secs_f64(),
                execs,
                exec_per_sec: (execs - last.1) as f64 / dt,
                corpus: g.corpus.len(),
                coverage: g.features,
                branches: g.branches,
                findings: g.findings.len(),
            }
        };
        let mut write_row = |row: StatsRow, rows: &mut Vec<StatsRow>| {
            if let Some((p, f)) = &mut stats_file {
                if let Err(e) = writeln!(f, "{}", row.csv()) {
                    global
                        .lock()
                        .unwrap()
                        .errors
                        .push(format!("cannot write {}: {e}", p.display()));
                    halt.store(true, Ordering::Relaxed);
                }
            }
            rows.push(row);
        };
        let announce_stop = || {
            let msg =
                format!("{label}: interrupted, stopping (the findings table and corpus follow)");
            match &bar {
                Some(b) => b.println(msg),
                None if matches!(opts.progress, Progress::Lines(_)) => eprintln!("{msg}"),
                None => {}
            }
        };
        loop {
            match rx.recv_timeout(tick) {
                Ok(Msg::Finding(line)) => match &bar {
                    Some(b) => b.println(line),
                    None if matches!(opts.progress, Progress::Lines(_)) => eprintln!("{line}"),
                    None => {}
                },
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
            let now = start.elapsed();
            if opts.duration.is_some_and(|d| now >= d) {
                halt.store(true, Ordering::Relaxed);
            }
            if stopped() && !interrupted {
                interrupted = true;
                halt.store(true, Ordering::Relaxed);
                announce_stop();
            }
            if now - last_row.0 >= opts.stats_every {
                let row = sample(now, last_row);
                prev_row = last_row;
                last_row = (now, row.execs);
                let line = progress_line(&row);
                write_row(row, &mut rows);
                if let Some(b) = &bar {
                    b.set_message(line);
                }
            }
            if let Progress::Lines(every) = opts.progress {
                if now - last_log.0 >= every {
                    let row = sample(now, last_log);
                    last_log = (now, row.execs);
                    eprintln!("{}", progress_line(&row));
                }
            }
        }
        // The workers may have seen the stop before this thread did.
        if stopped() && !interrupted {
            interrupted = true;
            announce_stop();
        }
        let now = start.elapsed();
        let base = if now - last_row.0 < opts.stats_every / 2 {
            prev_row
        } else {
            last_row
        };
        let row = sample(now, base);
        write_row(row, &mut rows);
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    for h in job_hits {
        for (a, b) in hits.iter_mut().zip(h) {
            *a += b;
        }
    }
    let mut g = global.into_inner().unwrap();
    if let Some(dir) = &opts.corpus_dir {
        let new: Vec<Vec<u8>> = g.corpus[g.seeds..].iter().map(|(_, b)| b.clone()).collect();
        if let Err(e) = save_corpus(dir, &new) {
            g.errors.push(format!("{e:#}"));
        }
    }
    let execs = executed.load(Ordering::Relaxed);
    Ok(Report {
        policy: label,
        geometry: opts.geometry,
        jobs,
        execs,
        elapsed: start.elapsed(),
        corpus: g.corpus.len(),
        features: g.features,
        hits,
        findings: {
            // Worst first, then by signature.
            let mut f: Vec<Finding> = g.findings.into_values().collect();
            f.sort_by(|a, b| (a.severity, &a.signature).cmp(&(b.severity, &b.signature)));
            f
        },
        interrupted,
        errors: g.errors,
        stats: rows,
    })
}

fn progress_line(r: &StatsRow) -> String {
    format!(
        "[{:>7.1}s] {}: {} execs, {:.0} exec/s, corpus {}, coverage {} features / {} branches, findings {}",
        r.time, r.policy, r.execs, r.exec_per_sec, r.corpus, r.coverage, r.branches, r.findings
    )
}

/// Write corpus entries named by a content hash.
pub fn save_corpus(dir: &Path, corpus: &[Vec<u8>]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for c in corpus {
        let mut h: u64 = 0xcbf29ce484222325;
        for b in c {
            h ^= *b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        let p = dir.join(format!("{h:016x}"));
        std::fs::write(&p, c).with_context(|| format!("cannot write {}", p.display()))?;
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

/// The files of a corpus folder, sorted by name (so runs repeat).
pub fn input_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
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
