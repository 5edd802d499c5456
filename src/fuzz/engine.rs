//! The built-in engine: works on stable, no instrumentation. Generation of random
//! byte strings plus mutation of a corpus, kept when a program reaches a new
//! model branch (or a new hit-count bucket of one). Deterministic for a given
//! seed and `--runs` with one job.

use super::findings::save_finding;
pub use super::findings::{Curated, Finding};
pub use super::stats::{Report, StatsRow};
use crate::base::Geometry;
use crate::base::Violation;
use crate::fuzz::fixes::FixHint;
use crate::model::coverage;
use crate::model::mm::COV_BITS;
use crate::model::policy::Policy;
use crate::run::{run_program, RunConfig};
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
    /// Where this campaign writes its minimized reproducers:
    /// DIR/<policy>/<invariant>-<function>.txt (+ .bin). The CLI's default is
    /// the run directory's crashes/, never the curated crashes/.
    pub crashes_dir: PathBuf,
    /// The curated findings (read only): a finding whose signature has a
    /// reproducer here that is no longer than this run's is reported as that
    /// file; a shorter one is written to `crashes_dir` and offered, never
    /// swapped in.
    pub known_dir: Option<PathBuf>,
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
    /// reproducers in the temp dir, no curated findings.
    pub fn new(policy: Policy, geometry: Geometry) -> FuzzOptions {
        FuzzOptions {
            policy,
            geometry,
            duration: None,
            max_runs: None,
            jobs: 1,
            seed: 0,
            crashes_dir: std::env::temp_dir().join("splitfuzz-crashes"),
            known_dir: None,
            corpus_dir: None,
            progress: Progress::Off,
            stop: None,
            stats_csv: None,
            stats_every: Duration::from_secs(1),
        }
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
/// What every worker and the reporter share during one campaign.
struct Campaign<'a> {
    opts: &'a FuzzOptions,
    cfg: RunConfig,
    jobs: usize,
    label: String,
    start: Instant,
    global: Mutex<Global>,
    /// Execution tickets handed out (the run budget).
    tickets: AtomicU64,
    executed: AtomicU64,
    /// Every worker stops: the budget, the deadline, a signal or a write error.
    halt: AtomicBool,
}

/// Run one campaign (see the module doc). Seeds come from `corpus_dir`.
pub fn fuzz(opts: &FuzzOptions) -> Result<Report> {
    let cfg = RunConfig::new(opts.policy.clone(), opts.geometry);
    let mut stats_file = open_stats_csv(opts)?;
    let seeds = read_seeds(opts)?;
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
    let c = Campaign {
        opts,
        cfg,
        jobs: opts.jobs.max(1),
        label: opts.policy.label(),
        start,
        global: Mutex::new(global),
        tickets: AtomicU64::new(0),
        executed: AtomicU64::new(0),
        halt: AtomicBool::new(false),
    };
    let bar = (opts.progress == Progress::Bar).then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{elapsed}] {msg}").unwrap(),
        );
        b.enable_steady_tick(Duration::from_millis(250));
        b
    });
    let (tx, rx) = std::sync::mpsc::channel::<Msg>();
    let mut rows: Vec<StatsRow> = Vec::new();
    let mut interrupted = false;
    let job_hits: Vec<Vec<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..c.jobs)
            .map(|job| {
                let tx = tx.clone();
                let c = &c;
                s.spawn(move || c.worker(job, tx))
            })
            .collect();
        drop(tx);
        interrupted = c.report(&rx, bar.as_ref(), &mut stats_file, &mut rows);
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
    let execs = c.executed.load(Ordering::Relaxed);
    let mut g = c.global.into_inner().unwrap();
    let reached_unreachable = witnesses(&hits, &g.corpus, &c.cfg, &opts.policy);
    if let Some(dir) = &opts.corpus_dir {
        let new: Vec<Vec<u8>> = g.corpus[g.seeds..].iter().map(|(_, b)| b.clone()).collect();
        if let Err(e) = save_corpus(dir, &new) {
            g.errors.push(format!("{e:#}"));
        }
    }
    Ok(Report {
        policy: c.label,
        geometry: opts.geometry,
        jobs: c.jobs,
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
        unreachable: crate::model::coverage::NAMES
            .iter()
            .filter(|n| crate::model::coverage::unreachable(n, &opts.policy).is_some())
            .map(|n| n.to_string())
            .collect(),
        reached_unreachable,
    })
}

/// For each point the unreachable table calls dead under `policy` that the
/// campaign reached (its own slot, no hash collision): the shortest program
/// found that reaches it, from the first corpus input that does (a corpus
/// keeps every input that reached a point first, so one is there).
fn witnesses(
    hits: &[u64],
    corpus: &[(usize, Vec<u8>)],
    cfg: &RunConfig,
    policy: &crate::model::policy::Policy,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for b in coverage::table(hits) {
        if b.hits == 0
            || !b.shares_slot_with.is_empty()
            || coverage::unreachable(&b.name, policy).is_none()
        {
            continue;
        }
        let found = corpus.iter().find_map(|(_, bytes)| {
            crate::run::minimize_reaching(&crate::prog::Program::decode(bytes), &b.name, cfg)
        });
        if let Some(p) = found {
            out.push((b.name, p.to_text()));
        }
    }
    out
}

/// stats.csv, opened for appending (with its header when new).
fn open_stats_csv(opts: &FuzzOptions) -> Result<Option<(PathBuf, std::fs::File)>> {
    let Some(p) = &opts.stats_csv else {
        return Ok(None);
    };
    Ok(Some((p.clone(), append_stats_csv(p)?)))
}

/// A stats.csv at `p`, opened for appending (with its header when new); the
/// built-in engine's and `vm fuzz`'s.
pub fn append_stats_csv(p: &std::path::Path) -> Result<std::fs::File> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .with_context(|| format!("cannot open {}", p.display()))?;
    if f.metadata().map(|m| m.len() == 0).unwrap_or(false) {
        writeln!(f, "{}", StatsRow::CSV_HEADER)
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(f)
}

/// Seeds: whatever the corpus folder already holds (sorted, so runs repeat).
fn read_seeds(opts: &FuzzOptions) -> Result<Vec<Vec<u8>>> {
    match &opts.corpus_dir {
        Some(d) if d.is_dir() => input_files(d)
            .with_context(|| format!("cannot read {}", d.display()))?
            .iter()
            .map(|f| std::fs::read(f).with_context(|| format!("cannot read {}", f.display())))
            .collect(),
        _ => Ok(Vec::new()),
    }
}

impl Campaign<'_> {
    fn stopped(&self) -> bool {
        self.opts.stop.is_some_and(|s| s.load(Ordering::Relaxed))
    }

    /// One job: generate or mutate, run, keep new coverage, record findings.
    /// Returns the job's hit counts per coverage slot.
    fn worker(&self, job: usize, tx: std::sync::mpsc::Sender<Msg>) -> Vec<u64> {
        let opts = self.opts;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(
            opts.seed.wrapping_mul(0x9e37_79b9).wrapping_add(job as u64),
        );
        let (mut corpus, mut seen, mut synced) = {
            let g = self.global.lock().unwrap();
            let c: Vec<Vec<u8>> = g.corpus.iter().map(|(_, b)| b.clone()).collect();
            (c, g.seen.clone(), g.corpus.len())
        };
        let mut hits = vec![0u64; COV_BITS];
        let mut newf: Vec<usize> = Vec::new();
        let mut local_execs = 0u64;
        loop {
            if self.halt.load(Ordering::Relaxed) || self.stopped() {
                break;
            }
            let n = self.tickets.fetch_add(1, Ordering::Relaxed);
            if opts.max_runs.is_some_and(|m| n >= m) {
                self.halt.store(true, Ordering::Relaxed);
                break;
            }
            if self.jobs > 1 && local_execs % SYNC_EVERY == SYNC_EVERY - 1 {
                // Import the other jobs' new inputs and the union's coverage.
                let g = self.global.lock().unwrap();
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
                crate::prog::mutate::mutate(&mut rng, &corpus[a], &corpus[b])
            };
            let out = run_program(&input, &self.cfg);
            self.executed.fetch_add(1, Ordering::Relaxed);
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
                let mut g = self.global.lock().unwrap();
                if g.add(&newf) {
                    g.corpus.push((job, input.clone()));
                    drop(g);
                    corpus.push(input.clone());
                }
            }
            if let Some(v) = out.violation {
                self.record(&v, n, &input, &tx);
            }
        }
        hits
    }

    /// Count a violation; the first of its signature is minimized and saved.
    fn record(&self, v: &Violation, n: u64, input: &[u8], tx: &std::sync::mpsc::Sender<Msg>) {
        let sig = v.signature();
        {
            let mut g = self.global.lock().unwrap();
            if let Some(f) = g.findings.get_mut(&sig) {
                f.count += 1;
                return;
            }
            g.findings.insert(
                sig.clone(),
                Finding {
                    signature: sig.clone(),
                    severity: v.severity,
                    function: v.function.clone(),
                    first_exec: n,
                    first_time: self.start.elapsed(),
                    count: 1,
                    path: PathBuf::new(),
                    ops: 0,
                    message: v.to_string(),
                    fix: FixHint::default(),
                    curated: Curated::New,
                },
            );
        }
        let saved = save_finding(self.opts, input, &self.cfg);
        let mut g = self.global.lock().unwrap();
        match saved {
            Ok(sv) => {
                let f = g.findings.get_mut(&sig).unwrap();
                f.path = sv.path;
                f.ops = sv.ops;
                f.message = format!("{} [minimized reproducer]", sv.message);
                f.fix = sv.fix;
                f.curated = sv.curated;
                let line = format!(
                    "new finding: {} {sig} at {:.2}s (exec {n}): {} ({}); {}",
                    self.label,
                    f.first_time.as_secs_f64(),
                    f.path.display(),
                    f.curated.describe(f.ops),
                    f.fix.summary()
                );
                let _ = tx.send(Msg::Finding(line));
            }
            Err(e) => {
                g.errors
                    .push(format!("cannot save the reproducer of {sig}: {e:#}"));
                self.halt.store(true, Ordering::Relaxed);
            }
        }
    }

    /// A stats row at `now`, its rate taken since `last`.
    fn sample(&self, now: Duration, last: (Duration, u64)) -> StatsRow {
        let g = self.global.lock().unwrap();
        let execs = self.executed.load(Ordering::Relaxed);
        let dt = (now - last.0).as_secs_f64().max(1e-9);
        StatsRow {
            policy: self.label.clone(),
            time: now.as_secs_f64(),
            execs,
            exec_per_sec: (execs - last.1) as f64 / dt,
            corpus: g.corpus.len(),
            coverage: g.features,
            branches: g.branches,
            findings: g.findings.len(),
        }
    }

    /// Print a line on the bar, or on stderr when progress goes to lines.
    fn say(&self, bar: Option<&indicatif::ProgressBar>, line: String) {
        match bar {
            Some(b) => b.println(line),
            None if matches!(self.opts.progress, Progress::Lines(_)) => eprintln!("{line}"),
            None => {}
        }
    }

    /// The reporting thread until every worker is done: finding lines,
    /// progress, stats rows, the deadline, signals. True if interrupted.
    fn report(
        &self,
        rx: &std::sync::mpsc::Receiver<Msg>,
        bar: Option<&indicatif::ProgressBar>,
        stats_file: &mut Option<(PathBuf, std::fs::File)>,
        rows: &mut Vec<StatsRow>,
    ) -> bool {
        let opts = self.opts;
        let tick = Duration::from_millis(50);
        let mut interrupted = false;
        let mut last_log = (Duration::ZERO, 0u64);
        let mut last_row = (Duration::ZERO, 0u64);
        // The sample before `last_row`: the final row's rate is taken over it
        // when the final interval is too short to mean anything.
        let mut prev_row = (Duration::ZERO, 0u64);
        let mut write_row = |row: StatsRow, rows: &mut Vec<StatsRow>| {
            if let Some((p, f)) = stats_file {
                if let Err(e) = writeln!(f, "{}", row.csv()) {
                    self.global
                        .lock()
                        .unwrap()
                        .errors
                        .push(format!("cannot write {}: {e}", p.display()));
                    self.halt.store(true, Ordering::Relaxed);
                }
            }
            rows.push(row);
        };
        let announce_stop = || {
            self.say(
                bar,
                format!(
                    "{}: interrupted, stopping (the findings table and corpus follow)",
                    self.label
                ),
            )
        };
        loop {
            match rx.recv_timeout(tick) {
                Ok(Msg::Finding(line)) => self.say(bar, line),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
            let now = self.start.elapsed();
            if opts.duration.is_some_and(|d| now >= d) {
                self.halt.store(true, Ordering::Relaxed);
            }
            if self.stopped() && !interrupted {
                interrupted = true;
                self.halt.store(true, Ordering::Relaxed);
                announce_stop();
            }
            if now - last_row.0 >= opts.stats_every {
                let row = self.sample(now, last_row);
                prev_row = last_row;
                last_row = (now, row.execs);
                let line = progress_line(&row);
                write_row(row, rows);
                if let Some(b) = bar {
                    b.set_message(line);
                }
            }
            if let Progress::Lines(every) = opts.progress {
                if now - last_log.0 >= every {
                    let row = self.sample(now, last_log);
                    last_log = (now, row.execs);
                    eprintln!("{}", progress_line(&row));
                }
            }
        }
        // The workers may have seen the stop before this thread did.
        if self.stopped() && !interrupted {
            interrupted = true;
            announce_stop();
        }
        let now = self.start.elapsed();
        let base = if now - last_row.0 < opts.stats_every / 2 {
            prev_row
        } else {
            last_row
        };
        write_row(self.sample(now, base), rows);
        interrupted
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::policy::Preset;
    use crate::prog::Program;

    /// A reached point the table calls dead comes with a program that reaches
    /// it, shortened. Here the runs are lazy-v3's and the table deposit's, under
    /// which a failed split is dead: the witness is a lazy-v3 program whose
    /// split fails, with the op that does not matter gone.
    #[test]
    fn a_point_listed_unreachable_but_reached_comes_with_a_short_program() {
        let text =
            "fail pte_alloc nth=1\nmmap 0 4M thp\ntouch 0 2M write\nmmap 8M 2M\nmunmap 1M 256K\n";
        let p = Program::parse(text).unwrap();
        let cfg = RunConfig::new(Policy::preset(Preset::LazyV3), Geometry::SMALL);
        let out = run_program(&crate::prog::encode(&p).unwrap(), &cfg);
        let mut hits = vec![0u64; COV_BITS];
        coverage::accumulate(&mut hits, &out.cov);
        let name = "split_huge_pmd_address:enomem";
        assert!(
            hits[coverage::slot(name)] > 0,
            "the program must reach {name}"
        );
        let corpus = vec![(0, crate::prog::encode(&p).unwrap())];
        let w = witnesses(&hits, &corpus, &cfg, &Policy::preset(Preset::Deposit));
        let (_, prog) = w
            .iter()
            .find(|(n, _)| n == name)
            .expect("a witness for the contradicted point");
        let q = Program::parse(prog).unwrap();
        assert!(q.ops.len() < p.ops.len(), "not shortened:\n{prog}");
        assert!(
            !prog.contains("mmap 8M"),
            "kept an op that does not matter:\n{prog}"
        );
        let again = run_program(&crate::prog::encode(&q).unwrap(), &cfg);
        assert!(again.cov[coverage::slot(name)] > 0);
        // Under the runs' own policy nothing is contradicted.
        assert!(
            witnesses(&hits, &corpus, &cfg, &Policy::preset(Preset::LazyV3))
                .iter()
                .all(|(n, _)| n != name)
        );
    }
}
