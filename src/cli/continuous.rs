//! `splitfuzz continuous`: rotate engines and targets in bounded slices, one
//! shared corpus per target, the corpora minimized now and then, every crash
//! triaged by signature; a summary table at the end (the time budget, SIGINT
//! or SIGTERM).

use super::args::parse_duration;
use super::engine::{build, reproducer, run_line, triage_crashes, work_paths};
use super::{say_text, status, stop};
use anyhow::{anyhow, bail, Result};
use splitfuzz::engines::triage::Triage;
use splitfuzz::engines::{self, Engine, Job, Paths, Target, TARGETS};
use splitfuzz::fuzz::Curated;
use splitfuzz::say;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct ContinuousArgs {
    /// Wall-clock budget of the whole run, e.g. 30m, 8h, 1d (builds included). Default: until
    /// SIGINT or SIGTERM.
    #[arg(long, value_name = "DURATION")]
    time: Option<String>,
    /// Length of one slice: one engine on one target.
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    slice: String,
    /// Engines to rotate, comma separated: builtin, libfuzzer, afl, honggfuzz. Default: every
    /// one; one not installed is skipped with a note.
    #[arg(long, value_delimiter = ',', value_name = "ENGINE")]
    engines: Vec<String>,
    /// Targets, comma separated: lazy_v1, lazy_v2, lazy_v3, lazy_fixed, deposit, decode.
    /// Default: all (builtin leaves decode to the others).
    #[arg(long, value_delimiter = ',', value_name = "TARGET")]
    targets: Vec<String>,
    /// Minimize the shared corpora when this long has passed since the last time (checked
    /// after each slice): with libFuzzer's merge when libfuzzer is among the engines, else
    /// with the model's coverage (`splitfuzz cmin`; not decode).
    #[arg(long, default_value = "10m", value_name = "DURATION")]
    cmin_every: String,
    /// Work dir: shared corpora, engine outputs, findings, logs (default: fuzz/continuous in
    /// the repository).
    #[arg(long, value_name = "DIR")]
    work: Option<PathBuf>,
}

/// A last slice shorter than this (or than half a slice) is not started:
/// engine start-up would dominate it.
const MIN_SLICE: Duration = Duration::from_secs(5);

/// Totals of one (engine, target) pair.
#[derive(Default)]
struct Pair {
    runs: u32,
    secs: f64,
    execs: u64,
    crashes: usize,
    signatures: BTreeSet<String>,
}

/// The checked options.
struct Plan {
    budget: Option<Duration>,
    slice: Duration,
    cmin_every: Duration,
    engines: Vec<&'static dyn Engine>,
    targets: Vec<Target>,
}

/// Exit 1 when a crash was found, 0 when none; 2 on bad options, no usable
/// engine, or a write error.
pub fn main(a: ContinuousArgs) -> Result<ExitCode> {
    let start = Instant::now();
    let plan = plan(&a)?;
    let paths = work_paths(a.work.as_deref(), "fuzz/continuous")?;
    stop::install()?;
    let log = |msg: String| eprintln!("[continuous +{:5}s] {msg}", start.elapsed().as_secs());
    let engines = usable(&plan.engines, &paths, &log);
    if engines.is_empty() {
        bail!("no engine can run (see the notes above)");
    }
    let rotation = rotation(&engines, &plan.targets);
    if rotation.is_empty() {
        bail!("no engine can fuzz the targets given (builtin has no decode target)");
    }
    log(format!(
        "engines {}; targets {}; slices of {}; {}; work dir {}",
        names(&engines),
        plan.targets
            .iter()
            .map(|t| t.name)
            .collect::<Vec<_>>()
            .join(" "),
        humantime::format_duration(plan.slice),
        plan.budget
            .map(|b| format!("{} in total", humantime::format_duration(b)))
            .unwrap_or_else(|| "until SIGINT or SIGTERM".into()),
        paths.work.display()
    ));
    log(format!(
        "rotation of {} slices: {}",
        rotation.len(),
        rotation
            .iter()
            .map(|(e, t)| format!("{}/{}", engines[*e].name(), t.name))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    for &t in &plan.targets {
        engines::seed_corpus(&paths, t)?;
    }
    let mut pairs: BTreeMap<(usize, usize), Pair> = BTreeMap::new();
    let mut triage = Triage::new(paths.findings(), Some(paths.known()));
    let mut last_cmin = Instant::now();
    let mut k = 0;
    while !stop::stopped() {
        let left = plan.budget.map(|b| b.saturating_sub(start.elapsed()));
        if left.is_some_and(|l| l < MIN_SLICE.min(plan.slice / 2)) {
            break;
        }
        let time = left.map_or(plan.slice, |l| l.min(plan.slice));
        let (e, target) = rotation[k % rotation.len()];
        let engine = engines[e];
        log(format!(
            "slice {} (round {}): {}/{} for {:.1}s",
            k % rotation.len() + 1,
            k / rotation.len() + 1,
            engine.name(),
            target.name,
            time.as_secs_f64()
        ));
        let job = Job {
            paths: &paths,
            target,
            time,
            seed: None,
            extra: &[],
            stop: &stop::STOP,
        };
        let r = engines::run(engine, &job)?;
        log(run_line(engine, target, &r));
        let pair = pairs.entry((e, tindex(target))).or_default();
        pair.runs += 1;
        pair.secs += r.elapsed.as_secs_f64();
        pair.execs += r.execs.unwrap_or(0);
        pair.crashes += r.crashes.len();
        let found_by = format!(
            "{}/{} +{}s",
            engine.name(),
            target.name,
            start.elapsed().as_secs()
        );
        let sigs = triage_crashes(&mut triage, &r.crashes, target, &found_by, &mut |l| {
            log(format!("triage {l}"))
        })?;
        pair.signatures.extend(sigs);
        for f in &r.crashes {
            // Triaged (or over the limit): the first of each signature is in findings/.
            let _ = std::fs::remove_file(f);
        }
        k += 1;
        let time_left = plan.budget.is_none_or(|b| start.elapsed() < b);
        if !stop::stopped() && time_left && last_cmin.elapsed() >= plan.cmin_every {
            log(format!(
                "minimizing the shared corpora (every {})",
                humantime::format_duration(plan.cmin_every)
            ));
            minimize_corpora(&engines, &plan.targets, &paths, &log);
            last_cmin = Instant::now();
        }
    }
    say_text(&summary(
        start,
        &engines,
        &plan.targets,
        &pairs,
        &triage,
        &paths,
    ));
    if stop::stopped() {
        say!("interrupted by {}", stop::signal_name());
    }
    Ok(status(
        triage.signatures().next().is_some() || triage.round_trips > 0,
    ))
}

/// Check every option before anything runs.
fn plan(a: &ContinuousArgs) -> Result<Plan> {
    let budget = a
        .time
        .as_deref()
        .map(|t| parse_duration(t, "--time"))
        .transpose()?;
    let slice = parse_duration(&a.slice, "--slice")?;
    let cmin_every = parse_duration(&a.cmin_every, "--cmin-every")?;
    let mut engines: Vec<&'static dyn Engine> = Vec::new();
    for name in &a.engines {
        let e = engines::by_name(name).map_err(|e| anyhow!("--engines: {e}"))?;
        if engines.iter().any(|x| x.name() == e.name()) {
            bail!("--engines: {name} is given twice");
        }
        engines.push(e);
    }
    if engines.is_empty() {
        engines = engines::all().to_vec();
    }
    let mut targets = Vec::new();
    for name in &a.targets {
        let t = Target::parse(name).map_err(|e| anyhow!("--targets: {e}"))?;
        if targets.contains(&t) {
            bail!("--targets: {name} is given twice");
        }
        targets.push(t);
    }
    if targets.is_empty() {
        targets = TARGETS.to_vec();
    }
    Ok(Plan {
        budget,
        slice,
        cmin_every,
        engines,
        targets,
    })
}

/// The engines that are installed and build; a note for each of the others.
fn usable(
    wanted: &[&'static dyn Engine],
    paths: &Paths,
    log: &dyn Fn(String),
) -> Vec<&'static dyn Engine> {
    let mut ok = Vec::new();
    for &e in wanted {
        if stop::stopped() {
            break;
        }
        if let Err(note) = e.installed() {
            log(format!("{note}: skipped"));
            continue;
        }
        if e.build(paths, None).is_some() {
            log(format!("building the fuzz targets for {}", e.name()));
        }
        match build(e, paths, None) {
            Some(why) => log(format!("{why}: skipped")),
            None => ok.push(e),
        }
    }
    ok
}

fn names(engines: &[&dyn Engine]) -> String {
    engines
        .iter()
        .map(|e| e.name())
        .collect::<Vec<_>>()
        .join(" ")
}

fn tindex(t: Target) -> usize {
    TARGETS.iter().position(|x| *x == t).unwrap_or(usize::MAX)
}

/// Every target in turn; the engine for a target moves on each round, so
/// after as many rounds as engines every pair has had a slice. An engine
/// that cannot fuzz a target gives its slot to the next one that can.
fn rotation(engines: &[&dyn Engine], targets: &[Target]) -> Vec<(usize, Target)> {
    let n = engines.len();
    let mut v = Vec::new();
    for round in 0..n {
        for (i, &t) in targets.iter().enumerate() {
            if let Some(e) = (0..n)
                .map(|k| (round + i + k) % n)
                .find(|&e| engines[e].supports(t))
            {
                v.push((e, t));
            }
        }
    }
    v
}

/// Minimize each target's shared corpus: libFuzzer's merge when libfuzzer
/// is among the engines, else the model's own (not decode).
fn minimize_corpora(
    engines: &[&dyn Engine],
    targets: &[Target],
    paths: &Paths,
    log: &dyn Fn(String),
) {
    for &t in targets {
        if stop::stopped() {
            return;
        }
        let dir = paths.corpus(t);
        let before = engines::count_files(&dir);
        let cmd = engines.iter().find_map(|e| e.cmin(paths, t, &dir));
        let done = match cmd {
            Some(c) => {
                let l = paths.logs().join(format!("cmin-{}.log", t.name));
                match engines::run_command(c, &l, None, &stop::STOP) {
                    Ok(e) if e.success() => Ok(true),
                    Ok(e) => Err(format!("{} (see {})", e.describe(), l.display())),
                    Err(e) => Err(format!("{e:#}")),
                }
            }
            None => engines::model_cmin(paths, t)
                .map(|r| r.is_some())
                .map_err(|e| format!("{e:#}")),
        };
        match done {
            Ok(true) => log(format!(
                "minimized {}: {before} -> {} files",
                dir.display(),
                engines::count_files(&dir)
            )),
            Ok(false) => {}
            Err(why) => log(format!("minimizing {} failed: {why}", dir.display())),
        }
    }
}

/// The closing table: per pair, per signature, the corpora.
fn summary(
    start: Instant,
    engines: &[&dyn Engine],
    targets: &[Target],
    pairs: &BTreeMap<(usize, usize), Pair>,
    triage: &Triage,
    paths: &Paths,
) -> String {
    let mut s = format!(
        "\n== continuous: {}s wall, engines {}\n{:<10} {:<11} {:>5} {:>7} {:>12} {:>9} {:>8}  signatures\n",
        start.elapsed().as_secs(),
        names(engines),
        "engine",
        "target",
        "runs",
        "secs",
        "execs",
        "exec/s",
        "crashes"
    );
    for ((e, t), p) in pairs {
        let sigs: Vec<&str> = p.signatures.iter().map(String::as_str).collect();
        s.push_str(&format!(
            "{:<10} {:<11} {:>5} {:>7.1} {:>12} {:>9.0} {:>8}  {}\n",
            engines[*e].name(),
            TARGETS[*t].name,
            p.runs,
            p.secs,
            p.execs,
            p.execs as f64 / p.secs.max(1e-9),
            p.crashes,
            if sigs.is_empty() {
                "none".to_string()
            } else {
                sigs.join(", ")
            }
        ));
    }
    s.push_str(
        "\nsignatures (policy, signature): first found by (+s: when triaged), crash files, reproducer\n",
    );
    let mut new = 0;
    for sig in triage.signatures() {
        new += usize::from(sig.saved.curated == Curated::New);
        s.push_str(&format!(
            "  {:<11} {:<45} {:<26} {:>6}  {}\n",
            sig.policy,
            sig.signature,
            sig.found_by,
            sig.count,
            reproducer(sig)
        ));
    }
    s.push_str(&format!(
        "new signatures (not among the curated findings): {new}; crash files that did not replay: {}; decode round-trip failures: {}\nfindings of this run: {}\n",
        triage.norepro,
        triage.round_trips,
        paths.findings().display()
    ));
    for &t in targets {
        s.push_str(&format!(
            "  corpus {:<11} {:>6} files\n",
            t.name,
            engines::count_files(&paths.corpus(t))
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_gives_every_pair_a_slice_and_builtin_no_decode() {
        let all = engines::all();
        let r = rotation(&all[..2], &TARGETS);
        let pairs: BTreeSet<(usize, &str)> = r.iter().map(|(e, t)| (*e, t.name)).collect();
        for t in TARGETS {
            assert!(pairs.contains(&(1, t.name)), "libfuzzer/{}", t.name);
            assert_eq!(
                pairs.contains(&(0, t.name)),
                t.preset.is_some(),
                "builtin/{}",
                t.name
            );
        }
        assert_eq!(r.len(), 2 * TARGETS.len());
        let only = rotation(&all[..1], &TARGETS);
        assert_eq!(only.len(), TARGETS.len() - 1);
        assert!(rotation(&all[..1], &[Target::parse("decode").unwrap()]).is_empty());
    }
}
