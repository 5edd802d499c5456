//! Benchmark (not a test): programs per second in the guest, as `vm check`
//! runs them: the deposit programs of tests/programs once as they are, then
//! their failure runs (op-scoped plans, nth 1 and every call) for at most
//! BENCH_SECS seconds (default 60). Run: cargo bench --bench vm (needs a
//! kernel from `splitfuzz vm build`; says SKIPPED without one). Prints the
//! load average: the guest runs under TCG on the host's CPUs.

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
    let Some(kernel) = splitfuzz::vm::build::default_kernel() else {
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
        smp: 2,
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
}
