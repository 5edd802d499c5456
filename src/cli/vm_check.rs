//! `splitfuzz vm check`: a kernel judged by the contract (src/vm/check.rs),
//! over the standard set or the given programs, within a time budget.

use super::args::{load, Format};
use anyhow::{Context, Result};
use splitfuzz::prog::Program;
use splitfuzz::say;
use splitfuzz::vm::batch::{run_batch, Job};
use splitfuzz::vm::check::{self, Finding, Tally};
use splitfuzz::vm::qemu::VmOptions;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// What `vm check` runs and where it writes.
pub struct CheckRequest {
    /// Programs (text or bytes); empty: the standard set.
    pub files: Vec<PathBuf>,
    pub format: Format,
    /// Calls failed one at a time per op and kind (then every call).
    pub nth: u32,
    /// The budget of the failure runs (the plain runs come first, whole).
    pub budget: Duration,
    /// Where each finding's reproducers go.
    pub out: PathBuf,
}

/// The standard set: every corpus input (bytes), every saved finding and
/// every hand-written program, in path order.
pub fn standard_set() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for pattern in [
        ("corpus", None),
        ("crashes", Some("txt")),
        ("tests/programs", Some("txt")),
    ] {
        collect(Path::new(pattern.0), pattern.1, &mut files);
    }
    files.sort();
    files
}

/// The files under `dir` (with extension `ext`, when given), recursively.
pub(super) fn collect(dir: &Path, ext: Option<&str>, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, ext, out);
        } else if ext.is_none_or(|x| p.extension().is_some_and(|e| e == x)) {
            out.push(p);
        }
    }
}

/// `vm check`: exit 1 on a finding.
pub fn run(o: &VmOptions, r: &CheckRequest) -> Result<ExitCode> {
    let files = if r.files.is_empty() {
        standard_set()
    } else {
        r.files.clone()
    };
    let mut progs: Vec<(String, Program)> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for f in &files {
        let p = check::plain(&load(f, r.format)?);
        // The same ops once (corpora and crashes repeat programs).
        if !p.ops.is_empty() && seen.insert(p.to_text()) {
            progs.push((f.display().to_string(), p));
        }
    }
    if !o.kernel.is_file() {
        anyhow::bail!("no kernel at {}", o.kernel.display());
    }
    say!("kernel: {}", o.kernel.display());
    let t0 = Instant::now();
    // 1. Each program as it is: how many allocations each op makes here.
    let jobs: Vec<Job> = progs
        .iter()
        .map(|(n, p)| check::job(n.clone(), p.clone()))
        .collect();
    let mut calls = vec![Vec::new(); jobs.len()];
    // Programs whose plain run differs from the deposit model: the contract
    // has no starting point there (a model gap, or a kernel bug without any
    // failure); reported, not judged.
    let mut plain_diffs: Vec<(String, usize, String)> = Vec::new();
    let mut boots = run_batch(o, &jobs, &mut |i, j| {
        let name = jobs[i].name.clone();
        if let splitfuzz::verdict::Verdict::Unsupported { op, why } = &j.verdict {
            plain_diffs.push((name, op.unwrap_or(0), format!("cannot run here: {why}")));
            return;
        }
        match check::plain_difference(&jobs[i].prog, &j.run) {
            None => calls[i] = check::calls_per_op(&j.run.hr.t),
            Some((op, d)) => plain_diffs.push((name, op, d)),
        }
    })?;
    say!(
        "vm check: {} programs ({} files) run without failures in {:.1}s; {} not judged (they cannot run here, or differ from deposit with no failure)",
        progs.len(),
        files.len(),
        t0.elapsed().as_secs_f64(),
        plain_diffs.len()
    );
    for (name, op, d) in &plain_diffs {
        say!("  not judged: {name}: op {op}: {d}");
    }
    // 2. Each op's allocations failed, one plan per run, within the budget.
    let mut all: Vec<(Program, (u32, u32))> = Vec::new();
    for (k, (_, p)) in progs.iter().enumerate() {
        for v in check::variants(p, &calls[k], r.nth) {
            let op = splitfuzz::verdict::contract::planned_op(&v).unwrap_or(0);
            let before = calls[k][..op]
                .iter()
                .flatten()
                .fold((0, 0), |a, c| (a.0 + c.0, a.1 + c.1));
            all.push((v, before));
        }
    }
    let mut tally = Tally {
        programs: progs.len(),
        ..Default::default()
    };
    let t1 = Instant::now();
    let mut skipped = 0usize;
    for (n, chunk) in all.chunks(64).enumerate() {
        // With --keep, each batch its own folder (its serial logs start empty).
        let mut o = o.clone();
        o.keep = o.keep.map(|k| k.join(format!("failures-{n}")));
        let o = &o;
        if t1.elapsed() >= r.budget {
            skipped += chunk.len();
            continue;
        }
        let jobs: Vec<Job> = chunk
            .iter()
            .map(|(p, _)| check::job(format!("{}", p.faults.pte_alloc), p.clone()))
            .collect();
        boots += run_batch(o, &jobs, &mut |i, j| {
            tally.add(&chunk[i].0, j, chunk[i].1, t1.elapsed().as_secs_f64());
        })?;
    }
    let secs = t1.elapsed().as_secs_f64();
    print_tally(&tally, all.len(), skipped, boots, secs);
    save_findings(&tally, &r.out)?;
    Ok(if tally.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_tally(t: &Tally, planned: usize, skipped: usize, boots: usize, secs: f64) {
    say!(
        "vm check: {} failure runs of {planned} planned ({skipped} left for lack of time): {} held, {} not judged (the kernel differs before the failure), {} unsupported; {} finding(s); {boots} boots; {secs:.1}s ({:.1} programs/s)",
        t.variants,
        t.held,
        t.diverged.values().sum::<usize>(),
        t.unsupported.values().sum::<usize>(),
        t.findings.len(),
        t.variants as f64 / secs.max(1e-9)
    );
    for (k, n) in &t.diverged {
        say!("  not judged at {k}: {n}");
    }
    for (k, n) in &t.unsupported {
        say!("  unsupported ({k}): {n}");
    }
    if t.findings.is_empty() {
        say!("  no finding: every op kept the contract");
        return;
    }
    say!(
        "   {:<15} {:<45} {:>6} {:>9}  first program",
        "severity",
        "breach and op",
        "runs",
        "first at"
    );
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
    for f in t.sorted() {
        say!("   - {}: {}", f.signature(), f.detail);
        for l in f.evidence.iter().take(8) {
            say!("       kernel: {l}");
        }
        if !f.backtrace.is_empty() {
            say!("       failing allocation: {}", f.backtrace.join(" < "));
        }
    }
}

/// Each finding's program (op-scoped plan), the same as a whole-program plan
/// for this kernel, and its C reproducers, under `out`.
pub(super) fn save_findings(t: &Tally, out: &Path) -> Result<()> {
    if t.findings.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    for f in t.sorted() {
        let base = format!(
            "{}-{}",
            f.severity().name(),
            f.signature().replace(' ', "-")
        );
        let text = finding_text(f);
        std::fs::write(out.join(format!("{base}.txt")), text)?;
        let abs = f.absolute();
        if let Ok(c) = splitfuzz::csource::emit_c(&abs) {
            std::fs::write(out.join(format!("{base}.c")), c)?;
        }
        if let Ok(c) = splitfuzz::csource::emit_c_with(&f.prog, true) {
            std::fs::write(out.join(format!("{base}.memcg.c")), c)?;
        }
    }
    say!(
        "findings: {} (text program, .c with injection, .memcg.c without where expressible)",
        out.display()
    );
    Ok(())
}

fn finding_text(f: &Finding) -> String {
    let mut s = format!(
        "# vm check finding: {} [{}]\n# {}\n# the same on this kernel as a whole-program plan: fail pte_alloc {} / fail thp {}\n",
        f.signature(),
        f.severity().name(),
        f.detail,
        f.absolute().faults.pte_alloc,
        f.absolute().faults.thp
    );
    for l in &f.evidence {
        s.push_str(&format!("# kernel: {l}\n"));
    }
    if !f.backtrace.is_empty() {
        s.push_str(&format!(
            "# the first failing allocation, innermost first: {}\n",
            f.backtrace.join(" < ")
        ));
    }
    s.push_str(&f.prog.to_text());
    s
}
