//! `splitfuzz vm fuzz`: the kernel fuzzed with KCOV feedback, op-scoped
//! fault plans and the contract oracle (src/vm/fuzz.rs); the run directory
//! as `fuzz` writes it (stats.csv, run.json, report.html) plus the kernel
//! coverage by function and the findings as `vm check` saves them.

use super::args::{load, Format};
use super::vm_check::collect;
use anyhow::{Context, Result};
use splitfuzz::fuzz::report::{self, CampaignFile, FindingFile, RunFile};
use splitfuzz::prog::Program;
use splitfuzz::say;
use splitfuzz::vm::fuzz::{fuzz, FuzzConfig, Outcome};
use splitfuzz::vm::kcov_map::{self, SymbolMap};
use splitfuzz::vm::qemu::VmOptions;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// What `vm fuzz` runs and where it writes.
pub struct FuzzRequest {
    /// Seed files (programs, text or bytes); empty: no seeds.
    pub seeds: Vec<PathBuf>,
    pub budget: Option<Duration>,
    pub jobs: usize,
    pub seed: u64,
    pub out: PathBuf,
    pub minimize_runs: usize,
}

/// The default seeds: the model's corpus (bytes) and crashes/ (text).
pub fn default_seeds() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for (dir, ext) in [("corpus", None), ("crashes", Some("txt"))] {
        collect(Path::new(dir), ext, &mut files);
    }
    files.sort();
    files
}

/// Every file under `dir`, in path order.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    collect(dir, None, &mut files);
    files.sort();
    files
}

/// `vm fuzz`: exit 1 on a finding.
pub fn run(o: &VmOptions, r: &FuzzRequest) -> Result<ExitCode> {
    let mut seeds: Vec<(String, Program)> = Vec::new();
    for f in &r.seeds {
        seeds.push((f.display().to_string(), load(f, Format::Auto)?));
    }
    if !o.kernel.is_file() {
        anyhow::bail!("no kernel at {}", o.kernel.display());
    }
    std::fs::create_dir_all(&r.out)
        .with_context(|| format!("cannot create {}", r.out.display()))?;
    super::stop::install()?;
    eprintln!(
        "vm fuzz: kernel {}, {} seed program(s), {} job(s), budget {}; run directory {}",
        o.kernel.display(),
        seeds.len(),
        r.jobs,
        r.budget
            .map(|d| format!("{}s", d.as_secs()))
            .unwrap_or_else(|| "none (SIGINT ends it)".into()),
        r.out.display()
    );
    let cfg = FuzzConfig {
        vm: o.clone(),
        seeds,
        budget: r.budget,
        jobs: r.jobs,
        seed: r.seed,
        stop: &super::stop::STOP,
        progress_every: Duration::from_secs(10),
        stats_every: Duration::from_secs(5),
        minimize_runs: r.minimize_runs,
        stats_csv: Some(r.out.join("stats.csv")),
    };
    let out = fuzz(&cfg)?;
    let map = SymbolMap::beside(&o.kernel);
    print_outcome(&out, map.as_ref());
    super::vm_check::save_findings(&out.tally, &r.out.join("findings"))?;
    save_corpus(&out, &r.out.join("corpus"))?;
    let fs = map
        .as_ref()
        .map(|m| kcov_map::by_function(m, &out.cov.pcs, &out.cov.fail_pcs))
        .unwrap_or_default();
    std::fs::write(r.out.join("kernel-coverage.txt"), kcov_map::table(&fs))?;
    report::write_run_file(&r.out, &run_file(r, &out, &fs))?;
    report::write_report(&r.out, &r.out.join("report.html"))?;
    say!(
        "run directory: {} (stats.csv, run.json, report.html, kernel-coverage.txt, findings/, corpus/)",
        r.out.display()
    );
    for e in &out.errors {
        eprintln!("vm fuzz: error: {e}");
    }
    Ok(if !out.tally.findings.is_empty() {
        ExitCode::from(1)
    } else if !out.errors.is_empty() && out.execs == 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_outcome(out: &Outcome, map: Option<&SymbolMap>) {
    let secs = out.elapsed.as_secs_f64().max(1e-9);
    let t = &out.tally;
    say!(
        "vm fuzz: {} programs ({:.2}/s), {} ops ({:.2}/s), {} boots, {:.1}s{}; corpus {}; kernel edges {} ({} with an allocation failing), PCs {} ({} with an allocation failing)",
        out.execs,
        out.execs as f64 / secs,
        out.ops,
        out.ops as f64 / secs,
        out.boots,
        secs,
        if out.interrupted { " (interrupted)" } else { "" },
        out.corpus.len(),
        out.cov.edges.len(),
        out.cov.fail_edges.len(),
        out.cov.pcs.len(),
        out.cov.fail_pcs.len()
    );
    say!(
        "  runs with a plan: {}: {} held, {} not judged (the kernel differs before the failure), {} no failing call, {} unsupported; {} breach(es) not judged (the program differs from deposit without its plan)",
        t.variants,
        t.held,
        t.diverged.values().sum::<usize>(),
        t.no_call,
        t.unsupported.values().sum::<usize>(),
        out.unconfirmed.values().sum::<usize>()
    );
    if let Some(m) = map {
        let fs = kcov_map::by_function(m, &out.cov.pcs, &out.cov.fail_pcs);
        let modelled: Vec<_> = fs.iter().filter(|f| f.modelled).collect();
        say!(
            "  functions the model has: {} of {} reached, {} with an allocation failing; {} other functions reached",
            modelled.iter().filter(|f| f.pcs > 0).count(),
            modelled.len(),
            modelled.iter().filter(|f| f.fail_pcs > 0).count(),
            fs.iter().filter(|f| !f.modelled && f.pcs > 0).count()
        );
    } else {
        say!("  (no System.map beside the kernel: no coverage by function)");
    }
    if t.findings.is_empty() {
        say!("  no finding: every op kept the contract");
        return;
    }
    for f in t.sorted() {
        say!(
            "   {:<15} {:<45} {:>6} {:>8.1}s  op {} `{}`",
            f.severity().name(),
            f.signature(),
            f.count,
            f.first_secs,
            f.op,
            f.prog.op_text(f.op)
        );
    }
}

/// The kept programs, as text, named by a content hash.
fn save_corpus(out: &Outcome, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for e in &out.corpus {
        let t = e.prog.to_text();
        let h = splitfuzz::vm::build::fnv(&[t.as_bytes()]);
        std::fs::write(dir.join(format!("{h:016x}.txt")), t)?;
    }
    Ok(())
}

fn run_file(r: &FuzzRequest, out: &Outcome, fs: &[kcov_map::FunctionCov]) -> RunFile {
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs().saturating_sub(out.elapsed.as_secs()))
        .unwrap_or(0);
    let secs = out.elapsed.as_secs_f64();
    let findings: Vec<FindingFile> = out
        .tally
        .sorted()
        .iter()
        .map(|f| FindingFile {
            signature: f.signature(),
            severity: f.severity().name().to_string(),
            function: f.op_kind.clone(),
            first_exec: 0,
            first_time_s: f.first_secs,
            count: f.count as u64,
            reproducer: r
                .out
                .join("findings")
                .join(format!(
                    "{}-{}.txt",
                    f.severity().name(),
                    f.signature().replace(' ', "-")
                ))
                .display()
                .to_string(),
            ops: f.prog.ops.len(),
            message: f.detail.clone(),
            ..Default::default()
        })
        .collect();
    let campaign = |policy: &str, failing: bool, findings: Vec<FindingFile>| CampaignFile {
        policy: policy.into(),
        execs: out.execs,
        elapsed_s: secs,
        exec_per_s: out.execs as f64 / secs.max(1e-9),
        corpus: out.corpus.len(),
        features: if failing {
            out.cov.fail_edges.len()
        } else {
            out.cov.edges.len()
        },
        branches_reached: fs
            .iter()
            .filter(|f| if failing { f.fail_pcs > 0 } else { f.pcs > 0 })
            .count(),
        interrupted: out.interrupted,
        findings,
        coverage: kcov_map::branches(fs, failing),
    };
    RunFile {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        started: report::utc(started),
        time_budget_s: r.budget.map(|d| d.as_secs_f64()),
        runs: None,
        jobs: r.jobs,
        seed: r.seed,
        geometry: "kernel".into(),
        interrupted: out.interrupted,
        skipped: Vec::new(),
        campaigns: vec![
            campaign("vm", false, findings),
            campaign("vm-failing", true, Vec::new()),
        ],
    }
}
