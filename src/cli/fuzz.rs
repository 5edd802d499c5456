//! `splitfuzz fuzz`: the built-in engine's campaigns, one policy after the
//! other, sharing the time budget; then the run directory (stats.csv,
//! run.json, report.html).

use super::args::{jobs, make_policy, note_harm_site_overrides, parse_duration, writable_dir};
use super::{args, say_text, status, stop};
use anyhow::{bail, Context, Result};
use splitfuzz::fuzz::engine::{self, FuzzOptions, Progress};
use splitfuzz::fuzz::report::{self, CampaignFile, RunFile};
use splitfuzz::say;
use splitfuzz::{Geometry, Policy};
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct FuzzArgs {
    /// One or more policies (comma separated or repeated): deposit, lazy-v1, lazy-v2,
    /// lazy-v3, lazy-fixed, lazy-v4-proposed.
    #[arg(long, value_delimiter = ',', required = true, value_name = "POLICY")]
    policy: Vec<String>,
    /// Change one split caller's strategy in every policy: CALLER=STRATEGY (repeatable;
    /// see `run --help`).
    #[arg(long = "override", value_name = "CALLER=STRATEGY")]
    overrides: Vec<String>,
    /// Wall-clock budget of the whole run, all policies together (each gets an equal share
    /// of what is left when it starts), e.g. 30s, 10m, 1h30m, 1d, 500ms. Default 60s, or
    /// no time limit with --runs.
    #[arg(long, value_name = "DURATION")]
    time: Option<String>,
    /// Stop each policy's campaign after N executions. With one job, a campaign is then
    /// deterministic: same findings, counts and corpus for the same seed.
    #[arg(long, value_name = "N")]
    runs: Option<u64>,
    /// Worker threads per campaign; they share one corpus and one coverage map (at most
    /// 4x the CPUs, and 256).
    #[arg(long, default_value_t = 1, value_name = "N")]
    jobs: usize,
    /// Seed of the random generator (job N uses a seed derived from SEED and N).
    #[arg(long, default_value_t = 0, value_name = "SEED")]
    seed: u64,
    /// PTEs per table: small (8, fast) or kernel (512, as on x86-64).
    #[arg(long, default_value = "small", value_name = "GEOMETRY")]
    geometry: String,
    /// Where this run's minimized reproducers go:
    /// DIR/<policy>/<invariant>-<function>.txt (+ .bin) (default: the run
    /// directory's crashes/).
    #[arg(long, value_name = "DIR")]
    crashes: Option<PathBuf>,
    /// The curated findings, read only: a finding saved there no longer than
    /// this run's reproducer is reported as that file; a shorter reproducer is
    /// written to --crashes and offered, the saved file left as it is.
    #[arg(long, default_value = "crashes", value_name = "DIR")]
    known: PathBuf,
    /// Seed the campaign from the inputs in DIR and add its new inputs to DIR.
    #[arg(long, value_name = "DIR")]
    corpus: Option<PathBuf>,
    /// Run directory for stats.csv, run.json and report.html
    /// (default: target/splitfuzz-runs/<UTC date-time>).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Interval of the progress lines printed when stderr is not a terminal.
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    log_every: String,
    /// Interval of the rows written to stats.csv.
    #[arg(long, default_value = "1s", value_name = "DURATION")]
    stats_every: String,
    /// Print nothing on stderr but errors: no progress bar or lines, no finding lines.
    #[arg(short, long)]
    quiet: bool,
}

/// The options, checked, and the run directory, ready.
struct Plan {
    policies: Vec<Policy>,
    geometry: Geometry,
    /// The whole run's wall-clock budget (None: --runs alone ends it).
    budget: Option<Duration>,
    progress: Progress,
    stats_every: Duration,
    run_dir: PathBuf,
    stats_csv: PathBuf,
    /// Where this run's reproducers go.
    crashes: PathBuf,
}

/// Exit 1 when a violation was found, 0 when none; 2 (Err, or a campaign's
/// write error) on bad options or a write error.
pub fn main(a: FuzzArgs) -> Result<ExitCode> {
    let plan = prepare(&a)?;
    stop::install()?;
    let mut run = run_file(&a, &plan);
    if !a.quiet {
        banner(&a, &plan);
    }
    let (any, errors) = campaigns(&a, &plan, &mut run)?;
    finish(&plan, &mut run)?;
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("splitfuzz: {e}");
        }
        return Ok(ExitCode::from(2));
    }
    Ok(status(any))
}

/// Everything is checked before the first campaign starts; then the folders
/// are made and stats.csv gets its header.
fn prepare(a: &FuzzArgs) -> Result<Plan> {
    let budget = match (&a.time, a.runs) {
        (Some(t), _) => Some(parse_duration(t, "--time")?),
        (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs(60)),
    };
    let log_every = parse_duration(&a.log_every, "--log-every")?;
    let stats_every = parse_duration(&a.stats_every, "--stats-every")?;
    if a.runs == Some(0) {
        bail!("--runs 0: a campaign needs at least one execution");
    }
    jobs(a.jobs)?;
    let geometry = args::geometry(&a.geometry)?;
    if !a.quiet {
        note_harm_site_overrides(&a.overrides);
    }
    let mut policies = Vec::new();
    for name in &a.policy {
        let p = make_policy(name, &a.overrides)?;
        if policies.iter().any(|q: &Policy| q.label() == p.label()) {
            bail!("--policy {name} is given twice");
        }
        policies.push(p);
    }
    if let Some(c) = &a.corpus {
        writable_dir(c, "corpus folder")?;
    }
    let run_dir = a.out.clone().unwrap_or_else(default_run_dir);
    writable_dir(&run_dir, "run directory")?;
    let crashes = a.crashes.clone().unwrap_or_else(|| run_dir.join("crashes"));
    writable_dir(&crashes, "crashes folder")?;
    let stats_csv = run_dir.join("stats.csv");
    std::fs::write(&stats_csv, format!("{}\n", engine::StatsRow::CSV_HEADER))
        .with_context(|| format!("cannot write {}", stats_csv.display()))?;
    let progress = if a.quiet {
        Progress::Off
    } else if std::io::stderr().is_terminal() {
        Progress::Bar
    } else {
        Progress::Lines(log_every)
    };
    Ok(Plan {
        policies,
        geometry,
        budget,
        progress,
        stats_every,
        run_dir,
        stats_csv,
        crashes,
    })
}

/// run.json before the first campaign.
fn run_file(a: &FuzzArgs, plan: &Plan) -> RunFile {
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    RunFile {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        started: report::utc(started),
        time_budget_s: plan.budget.map(|d| d.as_secs_f64()),
        runs: a.runs,
        jobs: a.jobs,
        seed: a.seed,
        geometry: plan.geometry.name().to_string(),
        ..Default::default()
    }
}

/// The first line on stderr: policies, budget, jobs, run directory.
fn banner(a: &FuzzArgs, plan: &Plan) {
    let n = plan.policies.len();
    eprintln!(
        "splitfuzz fuzz: {} polic{} in turn{}{}, {} job(s); run directory {}",
        n,
        if n == 1 { "y" } else { "ies" },
        match plan.budget {
            Some(d) if n > 1 => format!(
                ", {} in total ({} each)",
                humantime::format_duration(d),
                humantime::format_duration(Duration::from_millis(
                    (d.as_millis() / n as u128) as u64
                ))
            ),
            Some(d) => format!(", {}", humantime::format_duration(d)),
            None => String::new(),
        },
        a.runs
            .map(|r| format!(", at most {r} executions each"))
            .unwrap_or_default(),
        a.jobs,
        plan.run_dir.display()
    );
}

/// One campaign per policy until the end, a stop signal or a write error:
/// whether any found a violation, and the write errors.
fn campaigns(a: &FuzzArgs, plan: &Plan, run: &mut RunFile) -> Result<(bool, Vec<String>)> {
    let policies = &plan.policies;
    let begin = Instant::now();
    let mut any = false;
    let mut errors = Vec::new();
    for (i, pol) in policies.iter().enumerate() {
        if stop::stopped() {
            run.skipped.push(pol.label());
            continue;
        }
        // Each policy gets an equal share of what is left of the whole run.
        let duration = plan
            .budget
            .map(|b| b.saturating_sub(begin.elapsed()) / (policies.len() - i) as u32);
        let opts = FuzzOptions {
            duration,
            max_runs: a.runs,
            jobs: a.jobs,
            seed: a.seed,
            crashes_dir: plan.crashes.clone(),
            known_dir: Some(a.known.clone()),
            corpus_dir: a.corpus.clone(),
            progress: plan.progress,
            stop: Some(&stop::STOP),
            stats_csv: Some(plan.stats_csv.clone()),
            stats_every: plan.stats_every,
            ..FuzzOptions::new(pol.clone(), plan.geometry)
        };
        let r = engine::fuzz(&opts)?;
        say_text(&r.table());
        any |= !r.findings.is_empty();
        run.interrupted |= r.interrupted;
        run.campaigns.push(CampaignFile::from_report(&r));
        report::write_run_file(&plan.run_dir, run)?;
        if !r.errors.is_empty() {
            errors.extend(r.errors.iter().cloned());
            for p in &policies[i + 1..] {
                run.skipped.push(p.label());
            }
            break;
        }
    }
    Ok((any, errors))
}

/// Say how a stopped run ended; write run.json and report.html.
fn finish(plan: &Plan, run: &mut RunFile) -> Result<()> {
    if run.interrupted || stop::stopped() {
        run.interrupted = true;
        say!(
            "\ninterrupted by {}{}",
            stop::signal_name(),
            if run.skipped.is_empty() {
                String::new()
            } else {
                format!("; not run: {}", run.skipped.join(", "))
            }
        );
    }
    report::write_run_file(&plan.run_dir, run)?;
    report::write_report(&plan.run_dir, &plan.run_dir.join("report.html"))?;
    say!(
        "run directory: {} (stats.csv, run.json, report.html)",
        plan.run_dir.display()
    );
    Ok(())
}

/// target/splitfuzz-runs/<UTC date-time>, with -2, -3, ... when it exists.
fn default_run_dir() -> PathBuf {
    let stamp = utc_stamp();
    let base = PathBuf::from("target/splitfuzz-runs");
    let mut dir = base.join(&stamp);
    let mut i = 2;
    while dir.exists() {
        dir = base.join(format!("{stamp}-{i}"));
        i += 1;
    }
    dir
}

/// The UTC date and time as a folder name: 2026-12-04-18-50-55.
pub fn utc_stamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    report::utc(now).replace([' ', ':'], "-").replace("--", "-")
}
