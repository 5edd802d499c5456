//! The fuzzing engines the binary drives (`splitfuzz engine`, `splitfuzz
//! continuous`): one trait, [`Engine`], and one file per engine (the built-in
//! one runs in this process, libFuzzer, AFL++ and honggfuzz run the fuzz
//! targets of `fuzz/`). What they share is here: the targets, the work dir,
//! one bounded run of one engine on one target ([`run`]: its crash files and
//! new corpus inputs), the shared corpus of a target, and, in [`triage`], what
//! a crash file is.
//!
//! The work dir (`--work`):
//!
//! | path | what |
//! | --- | --- |
//! | `corpus/<target>/` | the corpus every engine shares: seeded from the repository's `corpus/<target>/`; libFuzzer and honggfuzz add to it directly, the others' new inputs are copied in after each run (named by content hash), never an input that violates |
//! | `builtin/<target>/` | the built-in engine's corpus and its reproducers of one run |
//! | `libfuzzer/<target>/` | libFuzzer's crash artifacts |
//! | `afl/<target>/` | AFL++'s output (`main/queue`, `main/crashes`), resumed run after run |
//! | `honggfuzz/<target>/` | honggfuzz's workspace (`*.fuzz` crashes) |
//! | `findings/<policy>/` | triage: a minimized reproducer (+ the original bytes) per signature |
//! | `log/` | build and run logs |

pub mod afl;
pub mod builtin;
pub mod dict;
pub mod honggfuzz;
pub mod libfuzzer;
pub mod triage;

use crate::fuzz::engine::{self as builtin_engine, FuzzOptions};
use crate::model::policy::{Policy, Preset};
use crate::run::{run_program, RunConfig};
use crate::Geometry;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

// ------------------------------------------------------------------ targets

/// A fuzz target of `fuzz/`: raw bytes run under a policy preset (small
/// geometry), or `decode` (the byte format's round trip, no policy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pub name: &'static str,
    pub preset: Option<Preset>,
}

/// Every target, in the order a rotation visits them.
pub const TARGETS: [Target; 6] = [
    Target::policy("lazy_v1", Preset::LazyV1),
    Target::policy("lazy_v2", Preset::LazyV2),
    Target::policy("lazy_v3", Preset::LazyV3),
    Target::policy("lazy_fixed", Preset::LazyFixed),
    Target::policy("deposit", Preset::Deposit),
    Target {
        name: "decode",
        preset: None,
    },
];

impl Target {
    const fn policy(name: &'static str, preset: Preset) -> Target {
        Target {
            name,
            preset: Some(preset),
        }
    }

    /// A target by its name (`lazy_v3`) or its policy's (`lazy-v3`).
    pub fn parse(s: &str) -> Result<Target, String> {
        let want = s.replace('-', "_");
        TARGETS.into_iter().find(|t| t.name == want).ok_or_else(|| {
            format!(
                "unknown target '{s}' ({})",
                TARGETS.map(|t| t.name).join(", ")
            )
        })
    }

    /// What the target runs inputs under, as the fuzz targets do; None for decode.
    pub fn config(&self) -> Option<RunConfig> {
        self.preset
            .map(|p| RunConfig::new(Policy::preset(p), Geometry::SMALL))
    }
}

// ------------------------------------------------------------------ places

/// Where things are: the repository (the fuzz crate, the seed corpora, the
/// curated findings) and the work dir.
#[derive(Clone, Debug)]
pub struct Paths {
    pub root: PathBuf,
    pub work: PathBuf,
}

impl Paths {
    /// The repository: the nearest folder at or above the current one with
    /// `fuzz/Cargo.toml`, else the one this binary was built from, else the
    /// current folder.
    pub fn find_root() -> PathBuf {
        let is_root =
            |d: &Path| d.join("fuzz/Cargo.toml").is_file() && d.join("Cargo.toml").is_file();
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        if let Some(d) = cwd.ancestors().find(|d| is_root(d)) {
            return d.to_path_buf();
        }
        let built = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        if is_root(&built) {
            return built;
        }
        cwd
    }

    /// The fuzz crate.
    pub fn fuzz_crate(&self) -> PathBuf {
        self.root.join("fuzz")
    }
    /// The byte format's dictionary (`fuzz/dict/bytes.dict`, made by
    /// [`dict`]), when it is there.
    pub fn dict(&self) -> Option<PathBuf> {
        Some(self.fuzz_crate().join("dict/bytes.dict")).filter(|p| p.is_file())
    }
    /// The curated findings (read only).
    pub fn known(&self) -> PathBuf {
        self.root.join("crashes")
    }
    /// The repository's seed corpus of a target.
    pub fn seeds(&self, t: Target) -> PathBuf {
        self.root.join("corpus").join(t.name)
    }
    /// The shared corpus of a target.
    pub fn corpus(&self, t: Target) -> PathBuf {
        self.work.join("corpus").join(t.name)
    }
    /// An engine's own folder for a target.
    pub fn engine_dir(&self, engine: &str, t: Target) -> PathBuf {
        self.work.join(engine).join(t.name)
    }
    pub fn findings(&self) -> PathBuf {
        self.work.join("findings")
    }
    pub fn logs(&self) -> PathBuf {
        self.work.join("log")
    }
}

/// One bounded run of an engine on a target.
pub struct Job<'a> {
    pub paths: &'a Paths,
    pub target: Target,
    pub time: Duration,
    /// The engine's seed where it takes one (None: its own choice).
    pub seed: Option<u64>,
    /// More arguments for the engine (libFuzzer flags, afl-fuzz or honggfuzz options).
    pub extra: &'a [String],
    /// Set from outside (a signal handler) to end the run early.
    pub stop: &'static AtomicBool,
}

impl Job<'_> {
    /// The engine's own folder for this target.
    pub fn dir(&self, engine: &str) -> PathBuf {
        self.paths.engine_dir(engine, self.target)
    }
    /// The shared corpus of this target.
    pub fn corpus(&self) -> PathBuf {
        self.paths.corpus(self.target)
    }
    /// The budget in whole seconds (at least 1), for engines that take seconds.
    pub fn secs(&self) -> u64 {
        self.time.as_secs_f64().ceil().max(1.0) as u64
    }
}

// ------------------------------------------------------------------ the trait

/// How an engine runs.
pub enum Launch {
    /// A process (in its own process group), its output into the run's log.
    Process(Command),
    /// The built-in engine's campaign, in this process.
    InProcess(Box<FuzzOptions>),
}

/// A fuzzing engine: what it needs, how it is built and run, and where it
/// leaves its crashes and the inputs it keeps.
pub trait Engine {
    /// Its name on the command line and in the work dir.
    fn name(&self) -> &'static str;
    /// Ok when its tools are installed, else one line: what is missing and
    /// how to install it.
    fn installed(&self) -> Result<(), String>;
    /// Whether it can fuzz `t` (the built-in engine needs a policy).
    fn supports(&self, t: Target) -> bool {
        let _ = t;
        true
    }
    /// Whether it takes more arguments ([`Job::extra`]).
    fn takes_arguments(&self) -> bool {
        true
    }
    /// The command that builds the fuzz targets for it (`Some(t)`: only `t`),
    /// to run in the fuzz crate; None: nothing to build.
    fn build(&self, paths: &Paths, target: Option<Target>) -> Option<Command>;
    /// Put the job's folders and inputs in place (before [`Engine::launch`]).
    fn prepare(&self, job: &Job) -> Result<()> {
        mkdir(&job.dir(self.name()))
    }
    /// How to run it on the job's target for the job's time, from the shared corpus.
    fn launch(&self, job: &Job) -> Result<Launch>;
    /// The folder its crash files go to (default: its own folder for the target).
    fn crash_dir(&self, job: &Job) -> PathBuf {
        job.dir(self.name())
    }
    /// Whether a file name in [`Engine::crash_dir`] is a crash file.
    fn is_crash(&self, name: &str) -> bool;
    /// The folder of the inputs it keeps when that is not the shared corpus:
    /// their new files are copied into the shared corpus after a run
    /// (default: None, it adds to the shared corpus itself).
    fn queue(&self, job: &Job) -> Option<PathBuf> {
        let _ = job;
        None
    }
    /// Its execution count, from the log of a run or its own files
    /// (cumulative where it keeps one across runs, as AFL++ does).
    fn execs(&self, job: &Job, log: &str) -> Option<u64>;
    /// A command that minimizes a target's corpus folder in place; None: the
    /// model's own (`splitfuzz::fuzz::engine::cmin`).
    fn cmin(&self, paths: &Paths, target: Target, dir: &Path) -> Option<Command> {
        let _ = (paths, target, dir);
        None
    }
}

/// Every engine, in the order the rotation uses.
pub fn all() -> [&'static dyn Engine; 4] {
    [
        &builtin::Builtin,
        &libfuzzer::LibFuzzer,
        &afl::Afl,
        &honggfuzz::Honggfuzz,
    ]
}

/// An engine by name.
pub fn by_name(name: &str) -> Result<&'static dyn Engine, String> {
    all().into_iter().find(|e| e.name() == name).ok_or_else(|| {
        format!(
            "unknown engine '{name}' ({})",
            all().map(|e| e.name()).join(", ")
        )
    })
}

// ------------------------------------------------------------------ commands

/// `$CARGO_HOME/bin` (else ~/.cargo/bin), where cargo installs the engines' tools.
fn cargo_bin_dir() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|d| d.join("bin"))
}

/// PATH with cargo's bin folder first.
fn search_path() -> std::ffi::OsString {
    let mut dirs: Vec<PathBuf> = cargo_bin_dir().into_iter().collect();
    if let Some(p) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&p));
    }
    std::env::join_paths(dirs).unwrap_or_default()
}

/// A program of that name on [`search_path`].
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&search_path())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// `installed` of an engine that needs the cargo subcommand `tool`.
fn needs(tool: &str, engine: &str) -> Result<(), String> {
    match which(tool) {
        Some(_) => Ok(()),
        None => Err(format!(
            "{engine}: {tool} is not installed (scripts/install-engines.sh {engine})"
        )),
    }
}

/// A command with PATH set to [`search_path`], without the variables that
/// would move a nested cargo's build (this process may run under `cargo run`).
pub fn tool(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(program);
    c.env("PATH", search_path())
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTUP_TOOLCHAIN");
    c
}

/// The host's target triple (`rustc -vV`), where cargo-fuzz and cargo-hfuzz
/// put their binaries.
pub fn host_triple() -> Result<String> {
    static TRIPLE: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    TRIPLE
        .get_or_init(|| {
            let out = tool("rustc").arg("-vV").output().ok()?;
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        })
        .clone()
        .context("cannot tell the host triple from `rustc -vV`")
}

/// How a command ended.
#[derive(Debug)]
pub struct Ended {
    pub status: ExitStatus,
    /// Ended by us after a stop signal.
    pub stopped: bool,
    /// Ended by us: it ran past its limit.
    pub overran: bool,
}

impl Ended {
    pub fn success(&self) -> bool {
        self.status.success()
    }
    /// "exit 0", "signal 15 (stopped)", ...
    pub fn describe(&self) -> String {
        use std::os::unix::process::ExitStatusExt as _;
        let s = match (self.status.code(), self.status.signal()) {
            (Some(c), _) => format!("exit {c}"),
            (None, Some(s)) => format!("signal {s}"),
            _ => "ended".into(),
        };
        if self.stopped {
            format!("{s} (stopped)")
        } else if self.overran {
            format!("{s} (ran past its time, killed)")
        } else {
            s
        }
    }
}

/// The environment variable that tags every process of one `run_command`.
const RUN_TOKEN: &str = "SPLITFUZZ_RUN_TOKEN";

/// Signal every process whose environment has `RUN_TOKEN=token` (read from
/// /proc; processes of other users or already gone are skipped).
fn kill_tagged(token: &str, sig: nix::sys::signal::Signal) {
    let want = format!("{RUN_TOKEN}={token}");
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(env) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        if env.split(|b| *b == 0).any(|v| v == want.as_bytes()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
        }
    }
}

/// Run a command in its own process group, stdout and stderr into `log`.
/// `stop` (or running past `limit`) ends the group: SIGTERM, SIGKILL 5 s later.
pub fn run_command(
    mut cmd: Command,
    log: &Path,
    limit: Option<Duration>,
    stop: &AtomicBool,
) -> Result<Ended> {
    use nix::sys::signal::{killpg, Signal};
    if let Some(d) = log.parent() {
        mkdir(d)?;
    }
    let out =
        std::fs::File::create(log).with_context(|| format!("cannot write {}", log.display()))?;
    // Every process of this run carries the token in its environment, so the
    // ones that leave the group (AFL++ starts its target in a new session)
    // are found and stopped too (as scripts/bench_engines.py does).
    let token = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .env(RUN_TOKEN, &token)
        .process_group(0);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    let group = nix::unistd::Pid::from_raw(child.id() as i32);
    let start = Instant::now();
    let (mut stopped, mut overran, mut term_at) = (false, false, None::<Instant>);
    loop {
        if let Some(status) = child.try_wait()? {
            // What escaped the group must not outlive the run.
            kill_tagged(&token, Signal::SIGKILL);
            return Ok(Ended {
                status,
                stopped,
                overran,
            });
        }
        match term_at {
            None => {
                stopped = stop.load(Ordering::SeqCst);
                overran = !stopped && limit.is_some_and(|l| start.elapsed() >= l);
                if stopped || overran {
                    let _ = killpg(group, Signal::SIGTERM);
                    kill_tagged(&token, Signal::SIGTERM);
                    term_at = Some(Instant::now());
                }
            }
            Some(t) if t.elapsed() >= Duration::from_secs(5) => {
                let _ = killpg(group, Signal::SIGKILL);
                kill_tagged(&token, Signal::SIGKILL);
            }
            Some(_) => {}
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Build the fuzz targets for `engine` (`target`: only that one), the output
/// into `log`. Ok(None) when there is nothing to build.
pub fn build(
    engine: &dyn Engine,
    paths: &Paths,
    target: Option<Target>,
    log: &Path,
    stop: &AtomicBool,
) -> Result<Option<Ended>> {
    let Some(mut cmd) = engine.build(paths, target) else {
        return Ok(None);
    };
    cmd.current_dir(paths.fuzz_crate());
    run_command(cmd, log, None, stop).map(Some)
}

// ------------------------------------------------------------------ one run

/// What one run of an engine did.
#[derive(Debug)]
pub struct RunReport {
    /// "exit 0", "signal 15 (stopped)", "3 write errors", ...
    pub status: String,
    /// It failed: a non-zero exit (not after a stop), or write errors.
    pub failed: bool,
    /// A stop signal ended it.
    pub interrupted: bool,
    pub execs: Option<u64>,
    pub elapsed: Duration,
    /// The crash files it wrote (new or rewritten during the run), sorted.
    pub crashes: Vec<PathBuf>,
    /// Inputs added to the shared corpus.
    pub new_inputs: usize,
    pub log: PathBuf,
}

/// Run `engine` once on the job's target: seed the shared corpus, prepare,
/// launch, then collect what it wrote (crash files; new inputs into the
/// shared corpus). An engine ran past its time by a minute is killed.
pub fn run(engine: &dyn Engine, job: &Job) -> Result<RunReport> {
    let name = engine.name();
    seed_corpus(job.paths, job.target)?;
    engine.prepare(job)?;
    let log = job
        .paths
        .logs()
        .join(format!("{name}-{}.log", job.target.name));
    let crash_dir = engine.crash_dir(job);
    let crashes_before = snapshot(&crash_dir);
    let queue = engine.queue(job);
    let queue_before = queue.as_deref().map(snapshot).unwrap_or_default();
    let corpus_before = count_files(&job.corpus());
    let execs_before = engine.execs(job, "");
    let start = Instant::now();
    let (status, failed, interrupted, execs) = match engine.launch(job)? {
        Launch::Process(mut cmd) => {
            cmd.current_dir(job.dir(name));
            let limit = job.time + Duration::from_secs(60);
            let ended = run_command(cmd, &log, Some(limit), job.stop)?;
            let text = std::fs::read(&log).unwrap_or_default();
            let after = engine.execs(job, &String::from_utf8_lossy(&text));
            let execs = match (execs_before, after) {
                (Some(b), Some(a)) if a >= b => Some(a - b),
                (_, a) => a,
            };
            let failed = !ended.success() && !ended.stopped;
            (ended.describe(), failed, ended.stopped, execs)
        }
        Launch::InProcess(opts) => {
            let r = builtin_engine::fuzz(&opts)?;
            mkdir(&job.paths.logs())?;
            std::fs::write(&log, r.table() + &r.errors.join("\n"))
                .with_context(|| format!("cannot write {}", log.display()))?;
            let status = match r.errors.len() {
                0 => "done".to_string(),
                n => format!("{n} write error(s): {}", r.errors[0]),
            };
            (status, !r.errors.is_empty(), r.interrupted, Some(r.execs))
        }
    };
    let elapsed = start.elapsed();
    let crashes = changed(&crashes_before, &snapshot(&crash_dir))
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| engine.is_crash(n))
        })
        .collect();
    if let Some(q) = &queue {
        let new = changed(&queue_before, &snapshot(q));
        share(job.paths, job.target, &new)?;
    }
    let new_inputs = count_files(&job.corpus()).saturating_sub(corpus_before);
    Ok(RunReport {
        status,
        failed,
        interrupted,
        execs,
        elapsed,
        crashes,
        new_inputs,
        log,
    })
}

// ------------------------------------------------------------------ files

pub(crate) fn mkdir(d: &Path) -> Result<()> {
    std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))
}

/// The files of a folder (none when it does not exist), sorted.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    builtin_engine::input_files(dir).unwrap_or_default()
}

pub fn count_files(dir: &Path) -> usize {
    files(dir).len()
}

type Snapshot = BTreeMap<PathBuf, (Option<SystemTime>, u64)>;

/// Each file of a folder with its modification time and size.
fn snapshot(dir: &Path) -> Snapshot {
    files(dir)
        .into_iter()
        .map(|p| {
            let m = std::fs::metadata(&p).ok();
            let key = (
                m.as_ref().and_then(|m| m.modified().ok()),
                m.map(|m| m.len()).unwrap_or(0),
            );
            (p, key)
        })
        .collect()
}

/// The files new in `after` or changed since `before`, sorted.
fn changed(before: &Snapshot, after: &Snapshot) -> Vec<PathBuf> {
    after
        .iter()
        .filter(|(p, k)| before.get(*p) != Some(k))
        .map(|(p, _)| p.clone())
        .collect()
}

/// A few bytes that decode to a program: the seed of an empty corpus (AFL++
/// needs one).
const FALLBACK_SEED: &[u8] = b"\x03\x00\x03\x00\x00\x00\x00\x1f\x01\x04\x00\x00\x1f\x01";

/// The shared corpus of `t`: made, given the repository's seeds it lacks,
/// and a seed when it would be empty.
pub fn seed_corpus(paths: &Paths, t: Target) -> Result<()> {
    let dir = paths.corpus(t);
    mkdir(&dir)?;
    for f in files(&paths.seeds(t)) {
        let dest = dir.join(f.file_name().unwrap_or_default());
        if !dest.exists() {
            std::fs::copy(&f, &dest)
                .with_context(|| format!("cannot copy {} to {}", f.display(), dest.display()))?;
        }
    }
    if count_files(&dir) == 0 {
        builtin_engine::save_corpus(&dir, &[FALLBACK_SEED.to_vec()])?;
    }
    Ok(())
}

/// Copy inputs into the shared corpus of `t` under their content hash, but
/// none that violates under its policy (replaying the corpus never crashes).
pub fn share(paths: &Paths, t: Target, inputs: &[PathBuf]) -> Result<()> {
    let cfg = t.config();
    let clean: Vec<Vec<u8>> = inputs
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .filter(|b| {
            cfg.as_ref()
                .is_none_or(|c| run_program(b, c).violation.is_none())
        })
        .collect();
    builtin_engine::save_corpus(&paths.corpus(t), &clean)
}

/// Minimize the shared corpus of `t` in place with the model's own coverage
/// (`fuzz::engine::cmin`): (before, after). None for decode (no policy).
pub fn model_cmin(paths: &Paths, t: Target) -> Result<Option<(usize, usize)>> {
    let Some(cfg) = t.config() else {
        return Ok(None);
    };
    let all = files(&paths.corpus(t));
    let inputs = all
        .iter()
        .map(|f| std::fs::read(f).with_context(|| format!("cannot read {}", f.display())))
        .collect::<Result<Vec<_>>>()?;
    let keep = builtin_engine::cmin(&inputs, &cfg);
    for (i, f) in all.iter().enumerate() {
        if keep.binary_search(&i).is_err() {
            std::fs::remove_file(f).with_context(|| format!("cannot remove {}", f.display()))?;
        }
    }
    Ok(Some((all.len(), keep.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Is the process gone (or a zombie nobody reaped yet)?
    fn gone(pid: &str) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        }
    }

    #[test]
    fn a_stop_ends_the_group_and_what_left_it() {
        let dir =
            std::env::temp_dir().join(format!("splitfuzz-run-command-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pidfile = dir.join("escaped.pid");
        let mut cmd = Command::new("sh");
        // A child in a new session (as afl-fuzz starts its target), then the
        // group's own long sleep.
        cmd.arg("-c").arg(format!(
            "setsid sh -c 'echo $$ > {}; exec sleep 300' & sleep 300",
            pidfile.display()
        ));
        let stop = AtomicBool::new(false);
        let ended = std::thread::scope(|s| {
            let h = s.spawn(|| run_command(cmd, &dir.join("log"), None, &stop));
            let t = Instant::now();
            while !pidfile.exists() && t.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(100));
            stop.store(true, Ordering::SeqCst);
            h.join().unwrap().unwrap()
        });
        assert!(ended.stopped);
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        let pid = pid.trim();
        let t = Instant::now();
        while !gone(pid) && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            gone(pid),
            "the process that left the group ({pid}) still runs"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
