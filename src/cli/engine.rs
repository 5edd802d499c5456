//! `splitfuzz engine ENGINE TARGET --time D`: one bounded run of one engine
//! on one target (its fuzz targets built first), then the crash files it
//! wrote, each triaged (`splitfuzz::engines::triage`). Also what `continuous`
//! shares with it: the work dir, builds, triage lines, the reproducer column.

use super::args::{parse_duration, writable_dir};
use super::{say_text, stop};
use anyhow::{anyhow, bail, Result};
use splitfuzz::engines::triage::{Signature, Triage, Verdict};
use splitfuzz::engines::{self, Engine, Job, Paths, RunReport, Target};
use splitfuzz::fuzz::Curated;
use splitfuzz::say;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct EngineArgs {
    /// The engine: builtin (runs in this process), libfuzzer, afl, honggfuzz (installed by
    /// scripts/install-engines.sh).
    #[arg(value_name = "ENGINE")]
    engine: String,
    /// The fuzz target: lazy_v1, lazy_v2, lazy_v3, lazy_fixed, deposit (or the policy's name,
    /// lazy-v3), decode (not with builtin).
    #[arg(value_name = "TARGET")]
    target: String,
    /// Budget of the fuzzing itself (building the fuzz targets comes on top), e.g. 30s, 10m, 1h.
    #[arg(long, value_name = "DURATION")]
    time: String,
    /// Work dir: the shared corpus, the engine's output, the triaged findings, logs
    /// (default: target/splitfuzz-engine in the repository; see `splitfuzz continuous`).
    #[arg(long, value_name = "DIR")]
    work: Option<PathBuf>,
    /// Seed of the engine's random generator (builtin, libFuzzer -seed, AFL++ -s; honggfuzz
    /// has none). Default: the engine's own choice.
    #[arg(long, value_name = "SEED")]
    seed: Option<u64>,
    /// More arguments for the engine, after `--` (libFuzzer flags, afl-fuzz or honggfuzz
    /// options; not for builtin).
    #[arg(last = true, value_name = "ENGINE_ARGS")]
    extra: Vec<String>,
}

/// Crash files triaged per run; the rest are counted, not replayed.
pub const TRIAGE_MAX: usize = 300;

/// Exit 1 when the run wrote a crash file, 0 when none; 2 on a usage or build
/// error, or when the engine failed without a crash file.
pub fn main(a: EngineArgs) -> Result<ExitCode> {
    let engine = engines::by_name(&a.engine).map_err(|e| anyhow!(e))?;
    let target = Target::parse(&a.target).map_err(|e| anyhow!(e))?;
    if !engine.supports(target) {
        bail!(
            "the {} engine has no {} target (it needs a policy target)",
            engine.name(),
            target.name
        );
    }
    if !a.extra.is_empty() && !engine.takes_arguments() {
        bail!(
            "the {} engine takes no extra arguments ({})",
            engine.name(),
            a.extra.join(" ")
        );
    }
    let time = parse_duration(&a.time, "--time")?;
    engine.installed().map_err(|e| anyhow!(e))?;
    let paths = work_paths(a.work.as_deref(), "target/splitfuzz-engine")?;
    stop::install()?;
    if let Some(why) = build(engine, &paths, Some(target)) {
        bail!(why);
    }
    let job = Job {
        paths: &paths,
        target,
        time,
        seed: a.seed,
        extra: &a.extra,
        stop: &stop::STOP,
    };
    eprintln!(
        "splitfuzz engine: {} on {} for {}; work dir {}",
        engine.name(),
        target.name,
        humantime::format_duration(time),
        shown(&paths.work)
    );
    let r = engines::run(engine, &job)?;
    say!("{}", run_line(engine, target, &r));
    let mut triage = Triage::new(paths.findings(), Some(paths.known()));
    let found_by = format!("{} on {}", engine.name(), target.name);
    if !r.crashes.is_empty() {
        say!(
            "CRASHES: {} crash file(s) from {}/{}:",
            r.crashes.len(),
            engine.name(),
            target.name
        );
    }
    triage_crashes(&mut triage, &r.crashes, target, &found_by, &mut |l| {
        say!("  {l}")
    })?;
    for s in triage.signatures() {
        say!("{}", signature_line(s));
    }
    if !r.crashes.is_empty() {
        say_text(&replay_hint(target));
        return Ok(ExitCode::from(1));
    }
    if r.interrupted {
        say!("interrupted by {}: no crash file", stop::signal_name());
        return Ok(ExitCode::SUCCESS);
    }
    if r.failed {
        eprint!("{}", log_tail(&r.log));
        bail!(
            "{} failed ({}) and left no crash file; see {}",
            engine.name(),
            r.status,
            r.log.display()
        );
    }
    say!(
        "no crashes: {}/{} ran {}",
        engine.name(),
        target.name,
        humantime::format_duration(time)
    );
    Ok(ExitCode::SUCCESS)
}

/// The work dir (`default` is under the repository), made and checked, as
/// an absolute path (engines run in other folders).
pub fn work_paths(work: Option<&Path>, default: &str) -> Result<Paths> {
    let root = Paths::find_root();
    let work = work
        .map(Path::to_path_buf)
        .unwrap_or_else(|| root.join(default));
    writable_dir(&work, "work dir")?;
    let work = std::fs::canonicalize(&work)?;
    Ok(Paths { root, work })
}

/// Build the fuzz targets for `engine`; Some(one line) when that failed
/// (after the end of its log on stderr).
pub fn build(engine: &dyn Engine, paths: &Paths, target: Option<Target>) -> Option<String> {
    let log = paths.logs().join(format!("build-{}.log", engine.name()));
    let what = target.map_or("the fuzz targets", |t| t.name);
    match engines::build(engine, paths, target, &log, &stop::STOP) {
        Ok(None) => None,
        Ok(Some(e)) if e.success() => None,
        Ok(Some(e)) if e.stopped => Some(format!(
            "{}: building {what}: interrupted by {}",
            engine.name(),
            stop::signal_name()
        )),
        Ok(Some(e)) => {
            eprint!("{}", log_tail(&log));
            Some(format!(
                "{}: building {what} failed ({}); see {}",
                engine.name(),
                e.describe(),
                log.display()
            ))
        }
        Err(e) => Some(format!("{}: building {what}: {e:#}", engine.name())),
    }
}

/// The last lines of a log, each indented.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(15);
    lines[from..].iter().map(|l| format!("  | {l}\n")).collect()
}

/// One line for a run: status, time, execs, corpus, crash files, log.
pub fn run_line(engine: &dyn Engine, target: Target, r: &RunReport) -> String {
    let secs = r.elapsed.as_secs_f64();
    let execs = match r.execs {
        Some(n) => format!("{n} execs ({:.0}/s)", n as f64 / secs.max(1e-9)),
        None => "? execs".into(),
    };
    format!(
        "{}/{}: {} after {secs:.1}s, {execs}, {} new input(s) in the shared corpus, {} crash file(s) (log {})",
        engine.name(),
        target.name,
        r.status,
        r.new_inputs,
        r.crashes.len(),
        shown(&r.log)
    )
}

/// Triage crash files (at most [`TRIAGE_MAX`]); `say` gets a line each.
/// Returns the signatures seen ("decode-roundtrip" for the decode target).
pub fn triage_crashes(
    triage: &mut Triage,
    crashes: &[PathBuf],
    target: Target,
    found_by: &str,
    say: &mut dyn FnMut(String),
) -> Result<BTreeSet<String>> {
    let mut sigs = BTreeSet::new();
    for f in crashes.iter().take(TRIAGE_MAX) {
        let what = match triage.file(f, target, found_by)? {
            Verdict::NoRepro(why) => format!("NOREPRO: {why}"),
            Verdict::Seen(sig) => {
                sigs.insert(sig.clone());
                sig
            }
            Verdict::New(sig) => {
                sigs.insert(sig.clone());
                format!("{sig} (the first of its signature: minimized)")
            }
            Verdict::RoundTrip(kept) => {
                sigs.insert("decode-roundtrip".into());
                format!("decode round trip failed; kept as {}", kept.display())
            }
        };
        say(format!("{}: {what}", shown(f)));
    }
    if crashes.len() > TRIAGE_MAX {
        say(format!(
            "... and {} more crash file(s), not replayed",
            crashes.len() - TRIAGE_MAX
        ));
    }
    Ok(sigs)
}

/// The reproducer of a signature: the one reported, how it relates to the
/// curated findings, and this run's own when that is another file.
pub fn reproducer(s: &Signature) -> String {
    let sv = &s.saved;
    let mut line = format!(
        "{} ({} ops): {}",
        shown(&sv.path),
        sv.ops,
        sv.curated.describe(sv.ops)
    );
    if let Some(own) = sv.own.as_ref().filter(|o| **o != sv.path) {
        line.push_str(&format!("; this run's: {}", shown(own)));
    }
    line
}

/// A path relative to the current folder when it is below it.
pub fn shown(p: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|d| p.strip_prefix(d).ok())
        .unwrap_or(p)
        .display()
        .to_string()
}

/// A signature in the closing list.
fn signature_line(s: &Signature) -> String {
    format!(
        "{} {}: {} crash file(s){}; {}",
        s.policy,
        s.signature,
        s.count,
        if s.saved.curated == Curated::New {
            ", NEW"
        } else {
            ""
        },
        reproducer(s)
    )
}

/// How to replay a crash file of `target`.
pub fn replay_hint(target: Target) -> String {
    match target.config() {
        Some(c) => format!(
            "replay: splitfuzz repro --policy {} --format bytes FILE (or scripts/repro.sh FILE)\n",
            c.policy.label()
        ),
        None => "replay: splitfuzz decode FILE; the decode replay binary: scripts/repro.sh FILE\n"
            .into(),
    }
}
