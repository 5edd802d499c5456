//! `splitfuzz diff`: programs under deposit and under a lazy policy, every
//! user-visible difference (the library's `splitfuzz::diff`); or
//! `--maximize reclaim-tables`.

use super::args::{geometry, load, make_policy, Format};
use super::say_text;
use anyhow::{anyhow, bail, Result};
use splitfuzz::diff::{
    demand_bound, diff_program, kept_bound, maximize_with, program_report, DiffConfig, MaxTarget,
    Summary, SwapClusters,
};
use splitfuzz::prog::{Program, MAX_MMS};
use splitfuzz::say;
use splitfuzz::{Geometry, Policy};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Clone, Debug)]
pub struct DiffArgs {
    /// Programs (text or raw fuzzer bytes).
    files: Vec<PathBuf>,
    /// The policy compared with deposit.
    #[arg(long)]
    policy: String,
    /// Change one split caller of --policy: CALLER=STRATEGY (repeatable).
    #[arg(long = "override", value_name = "CALLER=STRATEGY")]
    overrides: Vec<String>,
    /// Generate N programs from the decoder (fault plans included).
    #[arg(long)]
    generate: Option<usize>,
    /// Seed of --generate and of the --maximize search.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// PTEs per table: small (8, fast) or kernel (512).
    #[arg(long, default_value = "small")]
    geometry: String,
    /// Every pte_alloc_one() fails from op K on, in both runs (a sustained
    /// failure at the same point of both, unlike the per-policy call counts of
    /// `fail pte_alloc`).
    #[arg(long, value_name = "K")]
    oom_from_op: Option<usize>,
    /// Search for the worst case of a number instead: `reclaim-tables`, or
    /// `reclaim-kept-tables` (tables a reclaim holds when it gives up with
    /// nothing freed: Hugh Dickins' number).
    #[arg(long, value_name = "WHAT")]
    maximize: Option<String>,
    /// With --maximize: contiguous swap clusters `available` or `exhausted`
    /// for every program tried (default: as each program's plan says).
    #[arg(long, value_name = "STATE")]
    swap_cluster: Option<String>,
    /// Executions of the --maximize search.
    #[arg(long)]
    runs: Option<u64>,
    /// Print each program's text beside its report.
    #[arg(short, long)]
    verbose: bool,
}

/// Always exit 0 (a difference is the report, not a failure); Err on bad input.
pub fn main(a: DiffArgs) -> Result<ExitCode> {
    let files = a
        .files
        .iter()
        .map(|f| load(f, Format::Auto).map(|p| (f.display().to_string(), p)))
        .collect::<Result<Vec<_>>>()?;
    let geometry = geometry(&a.geometry)?;
    let policy = make_policy(&a.policy, &a.overrides)?;
    if let Some(what) = &a.maximize {
        let target = MaxTarget::parse(what).map_err(|e| anyhow!(e))?;
        let swap = match &a.swap_cluster {
            Some(s) => SwapClusters::parse(s).map_err(|e| anyhow!(e))?,
            None => SwapClusters::AsPlanned,
        };
        if !files.is_empty() || a.generate.is_some() || a.oom_from_op.is_some() {
            bail!("--maximize takes no FILE, --generate or --oom-from-op");
        }
        maximize_reclaim_tables(&a, &policy, geometry, target, swap);
        return Ok(ExitCode::SUCCESS);
    }
    if a.swap_cluster.is_some() {
        bail!("--swap-cluster goes with --maximize");
    }
    if a.runs.is_some() {
        bail!("--runs goes with --maximize");
    }
    let mut progs = files;
    if let Some(n) = a.generate {
        if !progs.is_empty() {
            bail!("give FILEs or --generate N, not both");
        }
        progs = splitfuzz::prog::generate::generate(n, a.seed)
            .into_iter()
            .enumerate()
            .map(|(i, p)| (format!("gen#{i} (seed {})", a.seed), p))
            .collect();
    }
    if progs.is_empty() {
        bail!("diff needs FILE..., --generate N or --maximize reclaim-tables");
    }
    compare_all(&a, policy, geometry, &progs)?;
    Ok(ExitCode::SUCCESS)
}

/// `--maximize reclaim-tables`: the worst table demand found and its program.
fn maximize_reclaim_tables(
    a: &DiffArgs,
    policy: &Policy,
    geometry: Geometry,
    target: MaxTarget,
    swap: SwapClusters,
) {
    let runs = a.runs.unwrap_or(20_000);
    let r = maximize_with(policy, geometry, runs, a.seed, target, swap);
    let what = match target {
        MaxTarget::ReclaimTables => "reclaim tables per reclaimed folio",
        MaxTarget::KeptTables => {
            "tables a reclaim holds when it gives up with nothing freed (Hugh's number)"
        }
    };
    let swap = match swap {
        SwapClusters::AsPlanned => "",
        SwapClusters::Available => ", contiguous swap available",
        SwapClusters::Exhausted => ", contiguous swap exhausted",
    };
    let (bound, why) = match target {
        MaxTarget::ReclaimTables => (
            demand_bound(geometry),
            format!("one rmap-walk allocation per VMA visited: at most one VMA per page of the folio in each of at most {MAX_MMS} mms"),
        ),
        MaxTarget::KeptTables => (
            kept_bound(),
            format!("a table is kept per PMD mapping split before the failing one: at most one PMD mapping per mm, at most {MAX_MMS} mms"),
        ),
    };
    say!(
        "== maximize {what} under {policy} ({} geometry{swap}, seed {}, {} runs): worst {} (first reached at run {}, {} input(s) kept); bound in this model {bound} ({why}): {}",
        geometry.name(),
        a.seed,
        r.runs,
        r.best,
        r.found_at,
        r.kept,
        if r.best >= bound {
            "reached"
        } else {
            "not reached"
        }
    );
    if r.best > 0 {
        say_text(&r.program.to_text());
    }
}

/// Each program's report (those without a difference only for FILEs), then
/// the summary table.
fn compare_all(
    a: &DiffArgs,
    policy: Policy,
    geometry: Geometry,
    progs: &[(String, Program)],
) -> Result<()> {
    let mut summary = Summary::default();
    let show_same = a.generate.is_none();
    for (name, prog) in progs {
        let pol = make_policy(&a.policy, prog.overrides.iter().chain(&a.overrides))
            .map_err(|e| anyhow!("{name}: {e}"))?;
        let cfg = DiffConfig {
            policy: pol,
            geometry,
            oom_from_op: a.oom_from_op,
        };
        let pd = diff_program(prog, &cfg);
        summary.add(name, prog, &pd);
        if !pd.diffs.is_empty() || show_same || pd.policy_reclaim.consumed_nothing_freed.is_some() {
            let mut s = program_report(name, prog, &pd, &cfg);
            if a.verbose {
                for l in prog.to_text().lines() {
                    let _ = writeln!(s, "  | {l}");
                }
            }
            say_text(&s);
        }
    }
    let cfg = DiffConfig {
        policy,
        geometry,
        oom_from_op: a.oom_from_op,
    };
    say_text(&format!("\n{}", summary.table(&cfg)));
    Ok(())
}
