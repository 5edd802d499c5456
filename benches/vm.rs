//! Benchmark (not a test): programs per second in the guest, as `vm check`
//! runs them: the deposit programs of tests/programs once as they are, then
//! their failure runs (op-scoped plans, nth 1 and every call) for at most
//! BENCH_SECS seconds (default 60); then `vm fuzz`'s persistent executor
//! (one boot, programs streamed, KCOV coverage per op, the contract judging
//! every run with a plan) for BENCH_FUZZ_SECS seconds (default 60, 0: skip)
//! from an empty corpus, seed 1, with BENCH_FUZZ_JOBS guests (default 1) of
//! BENCH_SMP vCPUs (default 2). BENCH_KERNEL=BZIMAGE: another kernel (e.g.
//! one without KCOV, to see what coverage costs). Run: cargo bench --bench vm
//! (needs a kernel from `splitfuzz vm build`; says SKIPPED without one).
//! Prints the load average: the guest runs under TCG on the host's CPUs.

use splitfuzz::prog::Program;
use splitfuzz::vm::batch::run_batch;
use splitfuzz::vm::check;
use splitfuzz::vm::qemu::VmOptions;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn main() {
    let env = |k: &str| std::env::var(k).ok();
    let Some(kernel) = env("BENCH_KERNEL")
        .map(PathBuf::from)
        .or_else(splitfuzz::vm::build::default_kernel)
    else {
        println!("SKIPPED: no kernel in the cache (run splitfuzz vm build)");
        return;
    };
    if splitfuzz::vm::qemu::qemu_binary().is_err() {
        println!("SKIPPED: no qemu-system-x86_64 (scripts/vm-deps.sh)");
        return;
    }
    let secs: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let o = VmOptions {
        kernel,
        exe: PathBuf::from(env!("CARGO_BIN_EXE_splitfuzz")),
        timeout: 3,
        smp: env("BENCH_SMP").and_then(|s| s.parse().ok()).unwrap_or(2),
        memory: "2G".into(),
        kvm: false,
        verbose: false,
        keep: None,
    };
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/programs/deposit");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    let progs: Vec<Program> = files
        .iter()
        .map(|f| check::plain(&Program::parse(&std::fs::read_to_string(f).unwrap()).unwrap()))
        .collect();
    println!(
        "splitfuzz vm benchmark: {} programs, {} s of failure runs",
        progs.len(),
        secs
    );
    println!("load average before: {}", loadavg());
    let jobs: Vec<_> = progs
        .iter()
        .enumerate()
        .map(|(i, p)| check::job(format!("p{i}"), p.clone()))
        .collect();
    let ops: usize = progs.iter().map(|p| p.ops.len()).sum();
    let t0 = Instant::now();
    let mut calls = vec![Vec::new(); jobs.len()];
    run_batch(&o, &jobs, &mut |i, j| {
        calls[i] = check::calls_per_op(&j.run.hr.t)
    })
    .unwrap();
    let plain = t0.elapsed().as_secs_f64();
    println!(
        "plain runs:   {:>5} programs {:>6} ops in {:>6.1}s: {:>6.2} programs/s {:>7.1} ops/s (one boot included)",
        jobs.len(),
        ops,
        plain,
        jobs.len() as f64 / plain,
        ops as f64 / plain
    );
    let variants: Vec<Program> = progs
        .iter()
        .zip(&calls)
        .flat_map(|(p, c)| check::variants(p, c, 1))
        .collect();
    let (mut n, mut vops, mut hung) = (0usize, 0usize, 0usize);
    let t1 = Instant::now();
    for chunk in variants.chunks(32) {
        if t1.elapsed() >= Duration::from_secs(secs) {
            break;
        }
        let jobs: Vec<_> = chunk
            .iter()
            .map(|p| check::job("v".into(), p.clone()))
            .collect();
        run_batch(&o, &jobs, &mut |i, j| {
            n += 1;
            vops += chunk[i].ops.len();
            hung += matches!(j.run.end, splitfuzz::vm::protocol::End::Hung(_)) as usize;
        })
        .unwrap();
    }
    let fail = t1.elapsed().as_secs_f64();
    println!(
        "failure runs: {n:>5} programs {vops:>6} ops in {fail:>6.1}s: {:>6.2} programs/s {:>7.1} ops/s ({hung} hit the {} s op bound; {} planned)",
        n as f64 / fail,
        vops as f64 / fail,
        o.timeout,
        variants.len()
    );
    println!("load average after: {}", loadavg());
    fuzz_bench(&o);
}

/// `vm fuzz` for BENCH_FUZZ_SECS: programs/s and ops/s, per vCPU too.
fn fuzz_bench(o: &VmOptions) {
    static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let secs: u64 = std::env::var("BENCH_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    if secs == 0 {
        return;
    }
    let jobs: usize = std::env::var("BENCH_FUZZ_JOBS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    println!("load average before vm fuzz: {}", loadavg());
    let cfg = splitfuzz::vm::fuzz::FuzzConfig {
        vm: o.clone(),
        seeds: Vec::new(),
        budget: Some(Duration::from_secs(secs)),
        jobs,
        seed: 1,
        stop: &STOP,
        progress_every: Duration::from_secs(3600),
        stats_every: Duration::from_secs(3600),
        minimize_runs: 0,
        stats_csv: None,
    };
    let out = splitfuzz::vm::fuzz::fuzz(&cfg).unwrap();
    let t = out.elapsed.as_secs_f64();
    let vcpus = (jobs as u32 * o.smp) as f64;
    println!(
        "vm fuzz:      {:>5} programs {:>6} ops in {t:>6.1}s: {:>6.2} programs/s {:>7.1} ops/s; per vCPU ({jobs} guest(s) x {} vCPUs) {:.2} programs/s {:.1} ops/s; {} boots, {} runs with a plan, {} kernel edges, kernel {}",
        out.execs,
        out.ops,
        out.execs as f64 / t,
        out.ops as f64 / t,
        o.smp,
        out.execs as f64 / t / vcpus,
        out.ops as f64 / t / vcpus,
        out.boots,
        out.tally.variants,
        out.cov.edges.len(),
        o.kernel.display()
    );
    println!("load average after vm fuzz: {}", loadavg());
}
