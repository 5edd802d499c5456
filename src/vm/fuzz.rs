//! `vm fuzz`: the kernel itself fuzzed, with kernel coverage (KCOV) as the
//! feedback, op-scoped fault plans as the aim, and the contract as the oracle.
//!
//! Each job boots one guest for the campaign and streams programs to its
//! persistent executor (`guest::run_stream`); the guest boots again only when
//! the kernel dies or a task survives SIGKILL. A program comes, in order of
//! preference, from
//! * the seed queue (the model's corpus and crashes/, with no plan), run once
//!   to count each op's allocations on this kernel;
//! * the plan queue: once a program enters the corpus, the op-scoped plans
//!   that fail each allocation its ops made (the first one, and every one, per
//!   kind; `check::variants`), a few at random;
//! * a mutation of a corpus program: its ops mutated in their byte form
//!   (`prog::mutate`) or its plan moved to another allocation it made, or a
//!   freshly generated program.
//!
//! A program whose op reaches a kernel edge not seen before is kept; an edge
//! reached while an allocation inside the op fails (the plan interface's
//! `failed` counters moved during the op) counts on its own, and such a
//! program is picked more often. Every run with a plan is judged by the
//! contract (`check::judge`, as `vm check` does). A new breach is confirmed (the
//! program without its plan must agree with deposit, as `vm check` requires),
//! minimized in the guest (ops, then plan: `prog::minimize::shrink`), and
//! counted in a `check::Tally`, saved as `vm check` saves its findings.

use super::check::{self, Tally};
use super::console::console_segment;
use super::judge::GuestRun;
use super::protocol::{write_streamed, End, Msg};
use super::qemu::{boot_stream, Session, VmOptions};
use crate::host;
use crate::prog::{Plan, Program};
use crate::verdict::contract::{self, Contract};
use anyhow::{bail, Context, Result};
use rand::{Rng, RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A campaign's settings.
pub struct FuzzConfig {
    pub vm: VmOptions,
    /// Seed programs (name, program); their plans are dropped.
    pub seeds: Vec<(String, Program)>,
    pub budget: Option<Duration>,
    pub jobs: usize,
    pub seed: u64,
    /// Set when the campaign must end (SIGINT).
    pub stop: &'static AtomicBool,
    /// A progress line this often (stderr).
    pub progress_every: Duration,
    /// A stats row this often.
    pub stats_every: Duration,
    /// Guest runs one finding's minimization may take.
    pub minimize_runs: usize,
    /// stats.csv, appended to.
    pub stats_csv: Option<PathBuf>,
}

/// A corpus program: the calls each op made in the run that kept it, and
/// whether it reached an edge with an allocation failing.
#[derive(Clone, Debug)]
pub struct Entry {
    pub prog: Program,
    pub calls: Vec<Option<(u32, u32)>>,
    pub failing: bool,
}

/// Kernel coverage of a campaign: PCs (low 32 bits) and edges, over every
/// op and over the ops in which an allocation failed.
#[derive(Default, Debug)]
pub struct Coverage {
    pub pcs: HashSet<u32>,
    pub edges: HashSet<u32>,
    pub fail_pcs: HashSet<u32>,
    pub fail_edges: HashSet<u32>,
}

impl Coverage {
    /// Merge one run's coverage: (new edges, new edges with a failure).
    pub fn merge(&mut self, g: &GuestRun) -> (usize, usize) {
        let (mut n, mut nf) = (0, 0);
        for c in g.hr.cov.iter().flatten() {
            if c.failed {
                self.fail_pcs.extend(c.pcs.iter().copied());
                nf += c
                    .edges
                    .iter()
                    .filter(|e| self.fail_edges.insert(**e))
                    .count();
            }
            self.pcs.extend(c.pcs.iter().copied());
            n += c.edges.iter().filter(|e| self.edges.insert(**e)).count();
        }
        (n, nf)
    }
}

/// What the jobs share.
struct Shared {
    corpus: Vec<Entry>,
    seeds: VecDeque<Program>,
    plans: VecDeque<Program>,
    cov: Coverage,
    tally: Tally,
    /// Breaches not confirmed, by signature: the program did not agree with
    /// deposit without its plan (a model gap), or did not break the contract
    /// again on a second run.
    unconfirmed: BTreeMap<String, usize>,
    execs: u64,
    ops: u64,
    boots: u64,
    /// Signatures being confirmed and minimized by some job.
    pending: HashSet<String>,
    errors: Vec<String>,
}

/// The end of a campaign.
pub struct Outcome {
    pub tally: Tally,
    pub cov: Coverage,
    pub corpus: Vec<Entry>,
    pub unconfirmed: BTreeMap<String, usize>,
    pub execs: u64,
    pub ops: u64,
    pub boots: u64,
    pub elapsed: Duration,
    pub interrupted: bool,
    pub rows: Vec<crate::fuzz::engine::StatsRow>,
    pub errors: Vec<String>,
}

/// One guest with its persistent executor.
struct Guest<'a> {
    o: &'a VmOptions,
    dir: PathBuf,
    initrd: PathBuf,
    boot_no: usize,
    cur: Option<(Session, std::os::unix::net::UnixStream)>,
    linux: (u32, u32),
    console_off: usize,
    next_k: usize,
    boots: u64,
}

impl<'a> Guest<'a> {
    fn new(o: &'a VmOptions, dir: PathBuf, initrd: PathBuf) -> Guest<'a> {
        Guest {
            o,
            dir,
            initrd,
            boot_no: 0,
            cur: None,
            linux: crate::model::mm::LINUX_DEFAULT,
            console_off: 0,
            next_k: 0,
            boots: 0,
        }
    }

    fn boot(&mut self) -> Result<()> {
        if let Some((mut s, _)) = self.cur.take() {
            s.kill();
            if self.o.keep.is_none() {
                let _ = std::fs::remove_file(&s.data);
                let _ = std::fs::remove_file(&s.console);
            }
        }
        self.boot_no += 1;
        self.boots += 1;
        let (mut s, c) = boot_stream(self.o, &self.dir, &self.initrd, self.boot_no)?;
        let t0 = Instant::now();
        loop {
            for l in s.lines() {
                match Msg::parse(&l) {
                    Ok(Some(Msg::Ready(rest))) => {
                        self.linux = host::probe::linux_version(&rest);
                        self.console_off = 0;
                        self.cur = Some((s, c));
                        return Ok(());
                    }
                    Ok(Some(Msg::Fatal(e))) => {
                        s.kill();
                        bail!("the guest executor failed: {e}");
                    }
                    _ => {}
                }
            }
            if s.exited() || t0.elapsed() > Duration::from_secs(600) {
                let con = s.console();
                s.kill();
                let tail: Vec<&str> = con.lines().collect();
                bail!(
                    "the guest did not start its executor; console tail:\n{}",
                    tail[tail.len().saturating_sub(25)..].join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(40));
        }
    }

    /// Run `p` in the guest (booting it first if needed), observing the
    /// processes as deep as the contract needs: through the plan's op, or
    /// not at all for a program with no plan when `shallow`.
    fn run_obs(&mut self, p: &Program, shallow: bool) -> Result<GuestRun> {
        let observe = match contract::planned_op(p) {
            Some(i) => Some(i + 1),
            None if shallow => Some(0),
            None => None,
        };
        self.run_with(p, observe)
    }

    /// Run `p` observed after every op.
    fn run(&mut self, p: &Program) -> Result<GuestRun> {
        self.run_obs(p, false)
    }

    fn run_with(&mut self, p: &Program, observe: Option<usize>) -> Result<GuestRun> {
        if self.cur.is_none() {
            self.boot()?;
        }
        let k = self.next_k;
        self.next_k += 1;
        let n = p.ops.len();
        let mut g = GuestRun::new(n);
        g.linux = self.linux;
        let (s, input) = self.cur.as_mut().unwrap();
        if input
            .write_all(write_streamed(k, p, observe).as_bytes())
            .is_err()
        {
            g.end = End::Crashed;
            self.cur = None;
            return Ok(g);
        }
        let stall = Duration::from_secs(self.o.timeout * 4 + 120);
        s.last_data = Instant::now();
        let mut op_cur = usize::MAX;
        let mut alive = true;
        let mut ended = false;
        while !ended {
            for l in s.lines() {
                let Some(m) = Msg::parse(&l)? else { continue };
                match m {
                    Msg::End { k: ek, end } if ek == k => {
                        g.end = end;
                        ended = true;
                    }
                    Msg::Fatal(e) => bail!("the guest executor failed: {e}"),
                    m => g.feed(&m, &mut op_cur),
                }
            }
            if ended {
                break;
            }
            if s.exited() {
                for l in s.lines() {
                    if let Ok(Some(m)) = Msg::parse(&l) {
                        g.feed(&m, &mut op_cur);
                    }
                }
                g.end = End::Crashed;
                alive = false;
                break;
            }
            if s.last_data.elapsed() > stall {
                g.end = End::Stalled;
                alive = false;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        // The console from this program's begin marker on.
        let marker = format!("splitfuzz: end {k}");
        let t0 = Instant::now();
        let mut con;
        loop {
            con = read_from(&s.console, self.console_off);
            if !alive || con.contains(&marker) || t0.elapsed() > Duration::from_secs(3) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let (log, last) = console_segment(&con, k, n);
        g.log = log;
        g.last_op = last;
        if let End::Hung(i) = g.end {
            g.last_op = Some(i);
        }
        if let Some(pos) = con.rfind('\n') {
            self.console_off += pos + 1;
        }
        // A kernel that died, a stuck task or a broken executor: boot again.
        let reboot =
            !alive || g.stuck || matches!(g.end, End::Broken(..) | End::Crashed | End::Stalled);
        if reboot {
            if let Some((mut s, _)) = self.cur.take() {
                s.kill();
            }
        }
        Ok(g)
    }
}

impl Drop for Guest<'_> {
    fn drop(&mut self) {
        if let Some((mut s, _)) = self.cur.take() {
            s.kill();
        }
    }
}

fn read_from(p: &Path, off: usize) -> String {
    use std::io::{Read, Seek};
    let mut b = Vec::new();
    if let Ok(mut f) = std::fs::File::open(p) {
        if f.seek(std::io::SeekFrom::Start(off as u64)).is_ok() {
            let _ = f.read_to_end(&mut b);
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

/// Ops of `p` the guest cannot run, removed; no plan, no policy lines.
fn runnable(mut p: Program) -> Program {
    let caps = super::guest::capabilities();
    p.ops.retain(|l| caps.unsupported(&l.op).is_none());
    check::plain(&p)
}

/// `p` with one op-scoped plan failing an allocation op `i` made: the k-th
/// of its kind or every one.
pub fn with_plan(p: &Program, op: usize, pte: bool, nth: Option<u32>) -> Program {
    let mut q = p.clone();
    q.faults = Default::default();
    let plan = Plan::InOp { op, nth };
    if pte {
        q.faults.pte_alloc = plan;
    } else {
        q.faults.thp = plan;
    }
    q
}

/// A plan on an allocation `calls` says some op of `p` made (None: no op made any).
pub fn targeted_plan(
    rng: &mut impl Rng,
    p: &Program,
    calls: &[Option<(u32, u32)>],
) -> Option<Program> {
    let sites: Vec<(usize, bool, u32)> = calls
        .iter()
        .enumerate()
        .filter(|(i, _)| *i < p.ops.len())
        .flat_map(|(i, c)| {
            let (pte, thp) = c.unwrap_or((0, 0));
            [(i, true, pte), (i, false, thp)]
        })
        .filter(|s| s.2 > 0)
        .collect();
    if sites.is_empty() {
        return None;
    }
    let (op, pte, n) = sites[rng.gen_range(0..sites.len())];
    // Every call (a sustained failure: what a retry loop needs) a fifth of
    // the time: a fault under it retries until the op bound, seconds.
    let nth = if rng.gen_ratio(1, 5) {
        None
    } else {
        Some(rng.gen_range(1..=n.min(8)))
    };
    Some(with_plan(p, op, pte, nth))
}

/// A mutation of `p`'s ops (byte form), or `p` itself when it has no byte form.
pub fn mutate_ops(rng: &mut Xoshiro256PlusPlus, p: &Program, other: &Program) -> Program {
    let (Ok(a), Ok(b)) = (
        crate::prog::encode(&check::plain(p)),
        crate::prog::encode(&check::plain(other)),
    ) else {
        return p.clone();
    };
    runnable(Program::decode(&crate::prog::mutate::mutate(rng, &a, &b)))
}

/// A fresh program: random bytes decoded, as the generator makes them; of
/// FRESH_TRIES such programs, the one whose run in the deposit model (kernel
/// geometry, no plan; a fraction of a millisecond) reaches the most named
/// model branches of a split (`split` in the name: `zap_pmd_range:
/// partial_split`, `split:withdraw`, `change_pmd_range:split`, ...), then the
/// most branches: the model's coverage is a cheap guess at what reaches the
/// split's callers in the kernel.
pub fn fresh(rng: &mut Xoshiro256PlusPlus) -> Program {
    const FRESH_TRIES: usize = 32;
    let cfg = crate::run::RunConfig::new(
        crate::model::policy::Policy::preset(crate::model::policy::Preset::Deposit),
        crate::base::Geometry::KERNEL,
    );
    let mut best: Option<(usize, Program)> = None;
    for _ in 0..FRESH_TRIES {
        let len = rng.gen_range(8..200);
        let mut b = vec![0u8; len];
        rng.fill_bytes(&mut b);
        let p = runnable(Program::decode(&b));
        let cov = crate::run::run(&p, &cfg).cov;
        let reached = split_points_of(&cov).len() * 1000 + cov.iter().filter(|c| **c != 0).count();
        if best.as_ref().is_none_or(|b| reached > b.0) {
            best = Some((reached, p));
        }
    }
    let Some((_, p)) = best else {
        return Program::default();
    };
    // Long programs reach more, so the pick is long (about 20 ops), and every
    // op costs guest time: keep only the ops it needs to reach the same split
    // branches in the model (a model run is microseconds; a guest op, tens of
    // milliseconds under TCG).
    let want = split_points(&p, &cfg);
    if want.is_empty() {
        return p;
    }
    let keeps = |q: &Program| {
        let got = split_points(q, &cfg);
        want.iter().all(|w| got.contains(w))
    };
    runnable(crate::prog::minimize::shrink(&p, &keeps))
}

/// The model's coverage points with `split` in the name that `p` reaches
/// (deposit, kernel geometry).
fn split_points(p: &Program, cfg: &crate::run::RunConfig) -> Vec<&'static str> {
    split_points_of(&crate::run::run(p, cfg).cov)
}

/// The coverage points with `split` in the name that a run's bitmap reached.
fn split_points_of(cov: &[u8]) -> Vec<&'static str> {
    crate::model::coverage::NAMES
        .iter()
        .copied()
        .filter(|n| n.contains("split") && cov[crate::model::coverage::slot(n)] != 0)
        .collect()
}

/// Run `progs` one after another in one guest's persistent executor (booted
/// again only if the kernel dies), observed after every op, with coverage;
/// for tests and benchmarks. Returns the runs and the boots.
pub fn run_programs(o: &VmOptions, progs: &[Program]) -> Result<(Vec<GuestRun>, u64)> {
    let dir = super::build::cache_dir()
        .join("run")
        .join(format!("stream-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let initrd = dir.join("initramfs.cpio");
    std::fs::write(&initrd, super::initramfs::build(&o.exe, "")?)?;
    let mut g = Guest::new(o, dir.clone(), initrd);
    let runs = progs.iter().map(|p| g.run(p)).collect::<Result<Vec<_>>>();
    let boots = g.boots;
    drop(g);
    let _ = std::fs::remove_dir_all(&dir);
    Ok((runs?, boots))
}

struct Campaign<'a> {
    cfg: &'a FuzzConfig,
    start: Instant,
    shared: Mutex<Shared>,
    halt: AtomicBool,
}

/// Run a campaign.
pub fn fuzz(cfg: &FuzzConfig) -> Result<Outcome> {
    if !cfg.vm.kernel.is_file() {
        bail!("no kernel at {}", cfg.vm.kernel.display());
    }
    super::qemu::remove_stale_run_dirs();
    // --keep's folder (serial logs kept), else cache/run/<pid>.
    let dir = cfg.vm.keep.clone().unwrap_or_else(|| {
        super::build::cache_dir()
            .join("run")
            .join(format!("{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let initrd = dir.join("initramfs.cpio");
    std::fs::write(&initrd, super::initramfs::build(&cfg.vm.exe, "")?)?;
    let mut seen = HashSet::new();
    let seeds: VecDeque<Program> = cfg
        .seeds
        .iter()
        .map(|(_, p)| runnable(p.clone()))
        .filter(|p| !p.ops.is_empty() && seen.insert(p.to_text()))
        .collect();
    let c = Campaign {
        cfg,
        start: Instant::now(),
        shared: Mutex::new(Shared {
            corpus: Vec::new(),
            seeds,
            plans: VecDeque::new(),
            cov: Coverage::default(),
            tally: Tally::default(),
            unconfirmed: BTreeMap::new(),
            execs: 0,
            ops: 0,
            boots: 0,
            pending: HashSet::new(),
            errors: Vec::new(),
        }),
        halt: AtomicBool::new(false),
    };
    let mut rows = Vec::new();
    let mut interrupted = false;
    let mut stats = match &cfg.stats_csv {
        Some(p) => Some(crate::fuzz::engine::append_stats_csv(p)?),
        None => None,
    };
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..cfg.jobs.max(1))
            .map(|j| {
                let c = &c;
                let dir = dir.join(format!("job{j}"));
                let initrd = initrd.clone();
                s.spawn(move || {
                    let _ = std::fs::create_dir_all(&dir);
                    if let Err(e) = c.worker(j, dir, initrd) {
                        c.shared
                            .lock()
                            .unwrap()
                            .errors
                            .push(format!("job {j}: {e:#}"));
                    }
                })
            })
            .collect();
        let mut last_row = (Duration::ZERO, 0u64);
        let mut last_log = Duration::ZERO;
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let now = c.start.elapsed();
            if cfg.stop.load(Ordering::Relaxed) && !interrupted {
                interrupted = true;
                eprintln!("vm fuzz: interrupted, stopping (the findings and coverage follow)");
                c.halt.store(true, Ordering::Relaxed);
            }
            if cfg.budget.is_some_and(|b| now >= b) {
                c.halt.store(true, Ordering::Relaxed);
            }
            let done = hs.iter().all(|h| h.is_finished());
            if now - last_row.0 >= cfg.stats_every || done {
                let row = c.row(now, last_row);
                last_row = (now, row.execs);
                if let Some(f) = stats.as_mut() {
                    let _ = writeln!(f, "{}", row.csv());
                }
                rows.push(row);
            }
            if now - last_log >= cfg.progress_every && !done {
                last_log = now;
                eprintln!("{}", c.progress(now));
            }
            if done {
                break;
            }
        }
    });
    if cfg.vm.keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let sh = c.shared.into_inner().unwrap();
    Ok(Outcome {
        tally: sh.tally,
        cov: sh.cov,
        corpus: sh.corpus,
        unconfirmed: sh.unconfirmed,
        execs: sh.execs,
        ops: sh.ops,
        boots: sh.boots,
        elapsed: c.start.elapsed(),
        interrupted,
        rows,
        errors: sh.errors,
    })
}

impl Campaign<'_> {
    fn halted(&self) -> bool {
        self.halt.load(Ordering::Relaxed) || self.cfg.stop.load(Ordering::Relaxed)
    }

    fn row(&self, now: Duration, last: (Duration, u64)) -> crate::fuzz::engine::StatsRow {
        let sh = self.shared.lock().unwrap();
        let dt = (now - last.0).as_secs_f64().max(1e-9);
        crate::fuzz::engine::StatsRow {
            policy: "vm".into(),
            time: now.as_secs_f64(),
            execs: sh.execs,
            exec_per_sec: sh.execs.saturating_sub(last.1) as f64 / dt,
            corpus: sh.corpus.len(),
            coverage: sh.cov.edges.len(),
            branches: sh.cov.pcs.len(),
            findings: sh.tally.findings.len(),
        }
    }

    fn progress(&self, now: Duration) -> String {
        let sh = self.shared.lock().unwrap();
        let secs = now.as_secs_f64().max(1e-9);
        format!(
            "[{:>7.1}s] vm fuzz: {} programs ({:.1}/s), {} ops ({:.1}/s), {} boots, corpus {}, kernel edges {} ({} with an allocation failing), PCs {}, findings {}",
            secs,
            sh.execs,
            sh.execs as f64 / secs,
            sh.ops,
            sh.ops as f64 / secs,
            sh.boots,
            sh.corpus.len(),
            sh.cov.edges.len(),
            sh.cov.fail_edges.len(),
            sh.cov.pcs.len(),
            sh.tally.findings.len()
        )
    }

    /// The next program a job runs, and the calls its ops made if known.
    fn next(&self, rng: &mut Xoshiro256PlusPlus) -> (Program, bool) {
        let mut sh = self.shared.lock().unwrap();
        // Seeds and the plans of what they reached, in turn.
        if !sh.seeds.is_empty() && (sh.plans.is_empty() || rng.gen_ratio(1, 2)) {
            let p = sh.seeds.pop_front().unwrap();
            return (p, true);
        }
        if !sh.plans.is_empty() && rng.gen_ratio(2, 3) {
            let p = sh.plans.pop_front().unwrap();
            return (p, false);
        }
        if sh.corpus.is_empty() || rng.gen_ratio(1, 4) {
            drop(sh);
            return (fresh(rng), true);
        }
        // Programs that reached an edge with an allocation failing, twice as often.
        let pick = |rng: &mut Xoshiro256PlusPlus, sh: &Shared| {
            let a = rng.gen_range(0..sh.corpus.len());
            if !sh.corpus[a].failing && rng.gen_ratio(1, 2) {
                let b = rng.gen_range(0..sh.corpus.len());
                if sh.corpus[b].failing {
                    return b;
                }
            }
            a
        };
        let a = pick(rng, &sh);
        let e = sh.corpus[a].clone();
        if rng.gen_ratio(1, 2) {
            if let Some(q) = targeted_plan(rng, &e.prog, &e.calls) {
                return (q, false);
            }
        }
        let b = rng.gen_range(0..sh.corpus.len());
        let other = sh.corpus[b].prog.clone();
        drop(sh);
        let q = mutate_ops(rng, &e.prog, &other);
        // Half the mutants keep a plan at the same op (its calls unknown
        // after the mutation: the first call or every one).
        match (contract::planned_op(&e.prog), rng.gen_ratio(1, 2)) {
            (Some(op), true) if op < q.ops.len() => {
                let pte = !e.prog.faults.pte_alloc.is_never();
                let nth = if rng.gen() { None } else { Some(1) };
                (with_plan(&q, op, pte, nth), false)
            }
            _ => (q, true),
        }
    }

    fn worker(&self, job: usize, dir: PathBuf, initrd: PathBuf) -> Result<()> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(
            self.cfg
                .seed
                .wrapping_mul(0x9e37_79b9)
                .wrapping_add(job as u64),
        );
        let mut guest = Guest::new(&self.cfg.vm, dir, initrd);
        while !self.halted() {
            let (p, _) = self.next(&mut rng);
            if p.ops.is_empty() {
                continue;
            }
            let boots0 = guest.boots;
            let g = guest.run_obs(&p, true)?;
            self.account(&g, guest.boots - boots0);
            self.take(&p, &g);
            if contract::planned_op(&p).is_some() {
                self.judge(&p, &g, &mut guest)?;
            }
        }
        Ok(())
    }

    fn account(&self, g: &GuestRun, boots: u64) {
        let mut sh = self.shared.lock().unwrap();
        sh.execs += 1;
        sh.ops += g.hr.t.results.iter().flatten().count() as u64;
        sh.boots += boots;
    }

    /// Keep `p` if it reached new kernel edges; queue its plans.
    fn take(&self, p: &Program, g: &GuestRun) {
        let mut sh = self.shared.lock().unwrap();
        let (n, nf) = sh.cov.merge(g);
        if n + nf == 0 {
            return;
        }
        let calls = check::calls_per_op(&g.hr.t);
        if contract::planned_op(p).is_none() {
            // Every allocation its ops made, failed once (a few, at random
            // order, so one long program does not fill the queue).
            let mut v = check::variants(p, &calls, 1);
            let mut r = Xoshiro256PlusPlus::seed_from_u64(sh.execs);
            while v.len() > 6 {
                let i = r.gen_range(0..v.len());
                v.swap_remove(i);
            }
            for q in v {
                sh.plans.push_back(q);
            }
        }
        sh.corpus.push(Entry {
            prog: p.clone(),
            calls,
            failing: nf > 0,
        });
    }

    /// Judge a run with a plan by the contract; a new breach is confirmed,
    /// minimized and counted.
    fn judge(&self, p: &Program, g: &GuestRun, guest: &mut Guest) -> Result<()> {
        let secs = self.start.elapsed().as_secs_f64();
        let calls = check::calls_per_op(&g.hr.t);
        let before = |q: &Program, calls: &[Option<(u32, u32)>]| {
            let op = contract::planned_op(q).unwrap_or(0);
            calls[..op.min(calls.len())]
                .iter()
                .flatten()
                .fold((0, 0), |a, c| (a.0 + c.0, a.1 + c.1))
        };
        if let End::Unsupported(_, why) = &g.end {
            let key = why.split(':').next().unwrap_or(why).to_string();
            let mut sh = self.shared.lock().unwrap();
            sh.tally.variants += 1;
            *sh.tally.unsupported.entry(key).or_default() += 1;
            return Ok(());
        }
        let verdict = check::judge(p, g);
        let Contract::Broken { breach, op, .. } = &verdict else {
            let mut sh = self.shared.lock().unwrap();
            sh.tally
                .add_contract(p, g, verdict, before(p, &calls), secs);
            return Ok(());
        };
        let sig = format!("{} {}", breach.name(), p.op_kind(*op));
        {
            let mut sh = self.shared.lock().unwrap();
            if sh.tally.findings.contains_key(&sig) || sh.pending.contains(&sig) {
                if let Some(f) = sh.tally.findings.get_mut(&sig) {
                    f.count += 1;
                }
                sh.tally.variants += 1;
                return Ok(());
            }
            sh.pending.insert(sig.clone());
        }
        // Confirm: without its plan the program agrees with deposit.
        let plain = check::plain(p);
        let gp = guest.run(&plain)?;
        if let Some((op, d)) = check::plain_difference(&plain, &gp) {
            let mut sh = self.shared.lock().unwrap();
            sh.pending.remove(&sig);
            *sh.unconfirmed.entry(sig.clone()).or_default() += 1;
            eprintln!("vm fuzz: {sig}: not judged, the program differs from deposit without its plan at op {op}: {d}");
            return Ok(());
        }
        // And it breaks the contract again (not a guest too slow once).
        let again = guest.run(p)?;
        let same = |q: &Program, c: Contract| match c {
            Contract::Broken { breach: b, op, .. } => {
                format!("{} {}", b.name(), q.op_kind(op)) == sig
            }
            _ => false,
        };
        if !same(p, check::judge(p, &again)) {
            let mut sh = self.shared.lock().unwrap();
            sh.pending.remove(&sig);
            *sh.unconfirmed.entry(sig.clone()).or_default() += 1;
            eprintln!("vm fuzz: {sig}: not judged, a second run of the program did not break the contract so");
            return Ok(());
        }
        // Minimize in the guest: the same breach at the same kind of op.
        let budget = std::cell::Cell::new(self.cfg.minimize_runs);
        let guest_cell = std::cell::RefCell::new(&mut *guest);
        let keeps = |q: &Program| -> bool {
            if budget.get() == 0 || self.halted() {
                return false;
            }
            budget.set(budget.get() - 1);
            let Ok(gq) = guest_cell.borrow_mut().run(q) else {
                return false;
            };
            same(q, check::judge(q, &gq))
        };
        let m = crate::prog::minimize::shrink(p, &keeps);
        let used = self.cfg.minimize_runs - budget.get();
        // The minimized program must hold as the original did: its own
        // plain run agrees with deposit, and it breaks the contract again.
        let mut best = (p.clone(), g.clone());
        if m.to_text() != p.to_text() {
            let mut gd = guest_cell.borrow_mut();
            let gm_plain = gd.run(&check::plain(&m))?;
            if check::plain_difference(&check::plain(&m), &gm_plain).is_none() {
                let gm = gd.run(&m)?;
                if same(&m, check::judge(&m, &gm)) {
                    best = (m, gm);
                }
            }
        }
        let (bp, bg) = best;
        let bcalls = check::calls_per_op(&bg.hr.t);
        let mut sh = self.shared.lock().unwrap();
        sh.pending.remove(&sig);
        let c = check::judge(&bp, &bg);
        sh.tally
            .add_contract(&bp, &bg, c, before(&bp, &bcalls), secs);
        eprintln!(
            "vm fuzz: new finding at {secs:.1}s: {sig} ({} ops after minimization, {used} guest runs)",
            bp.ops.len()
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::kcov::OpCov;

    #[test]
    fn plans_aim_at_allocations_the_ops_made() {
        let p =
            Program::parse("mmap 0 4M thp\ntouch 0 2M write\nmadvise 0 256K dontneed\n").unwrap();
        let calls = vec![Some((0, 0)), Some((1, 1)), Some((2, 0))];
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        for _ in 0..200 {
            let q = targeted_plan(&mut rng, &p, &calls).unwrap();
            let op = contract::planned_op(&q).unwrap();
            assert_eq!(q.ops.len(), 3);
            match (&q.faults.pte_alloc, &q.faults.thp) {
                (Plan::InOp { op: o, nth }, Plan::Never) => {
                    assert_eq!(*o, op);
                    assert!(op == 1 || op == 2);
                    let n = calls[op].unwrap().0;
                    assert!(nth.is_none_or(|k| k >= 1 && k <= n), "{nth:?}");
                }
                (Plan::Never, Plan::InOp { op: o, nth }) => {
                    assert_eq!((*o, op), (1, 1));
                    assert!(nth.is_none_or(|k| k == 1));
                }
                x => panic!("{x:?}"),
            }
        }
        // No op made an allocation: no plan to aim.
        assert!(targeted_plan(&mut rng, &p, &[Some((0, 0)); 3]).is_none());
    }

    #[test]
    fn fresh_programs_split_more_often_than_random_ones() {
        let cfg = crate::run::RunConfig::new(
            crate::model::policy::Policy::preset(crate::model::policy::Preset::Deposit),
            crate::base::Geometry::KERNEL,
        );
        let splits = |p: &Program| {
            let hits: Vec<u64> = crate::run::run(p, &cfg)
                .cov
                .iter()
                .map(|c| (*c != 0) as u64)
                .collect();
            crate::model::coverage::table(&hits)
                .iter()
                .any(|b| b.hits > 0 && b.name.contains("split"))
        };
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let n = 40;
        let picked = (0..n).filter(|_| splits(&fresh(&mut rng))).count();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let random = (0..n)
            .filter(|_| {
                let mut b = vec![0u8; rng.gen_range(8..200)];
                rng.fill_bytes(&mut b);
                splits(&runnable(Program::decode(&b)))
            })
            .count();
        eprintln!("programs that split in the model: fresh {picked}/{n}, random {random}/{n}");
        assert!(
            picked > random && picked >= n / 2,
            "fresh {picked}, random {random}"
        );
        // And they are short: only the ops their split branches need.
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let ops: usize = (0..n).map(|_| fresh(&mut rng).ops.len()).sum();
        eprintln!(
            "fresh programs: {:.1} ops on average",
            ops as f64 / n as f64
        );
        assert!(
            ops <= 8 * n,
            "fresh programs average {} ops",
            ops as f64 / n as f64
        );
    }

    #[test]
    fn coverage_counts_new_edges_and_those_under_a_failure() {
        let mut cov = Coverage::default();
        let mut g = GuestRun::new(2);
        g.hr.cov[0] = Some(OpCov {
            pcs: vec![1, 2],
            edges: vec![10, 11],
            failed: false,
        });
        assert_eq!(cov.merge(&g), (2, 0));
        assert_eq!(cov.merge(&g), (0, 0));
        // The same edge reached while an allocation fails is new as such.
        g.hr.cov[1] = Some(OpCov {
            pcs: vec![2],
            edges: vec![11, 12],
            failed: true,
        });
        assert_eq!(cov.merge(&g), (1, 2));
        assert_eq!(cov.fail_pcs.len(), 1);
        assert_eq!(cov.pcs.len(), 2);
    }
}
