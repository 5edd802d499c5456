//! Benchmark (not a test): exec/s of whole campaigns of the built-in engine
//! with --jobs 1 and --jobs 2 (shared corpus and coverage map), so the cost of
//! sharing and the speed-up show. Run: cargo bench --bench campaign
//! (`BENCH_RUNS=N` executions per campaign). The load average is printed
//! before and after: other processes on the machine lower the speed-up, so
//! executions per CPU-second (all threads) are printed too: equal values for
//! one and two jobs mean sharing the corpus costs no extra work.

use splitfuzz::fuzz::engine::{fuzz, FuzzOptions};
use splitfuzz::{Geometry, Policy, Preset};

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// CPU time of this process (all threads), from CLOCK_PROCESS_CPUTIME_ID.
fn cpu_seconds() -> f64 {
    let mut ts = nix::libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { nix::libc::clock_gettime(nix::libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn main() {
    let runs: u64 = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000);
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!("splitfuzz campaign benchmark: {runs} executions per campaign, {cpus} CPUs");
    println!("load average before: {}", loadavg());
    println!(
        "{:<12} {:>5} {:>10} {:>10} {:>8} {:>12} {:>9} {:>8}",
        "policy", "jobs", "seconds", "exec/s", "speedup", "exec/CPU-s", "features", "corpus"
    );
    let tmp = std::env::temp_dir().join(format!("splitfuzz-bench-{}", std::process::id()));
    for preset in [Preset::LazyFixed, Preset::LazyV3] {
        let mut base = 0.0;
        for jobs in [1, 2] {
            let cpu0 = cpu_seconds();
            let r = fuzz(&FuzzOptions {
                max_runs: Some(runs),
                jobs,
                seed: 1,
                crashes_dir: tmp.clone(),
                ..FuzzOptions::new(Policy::preset(preset), Geometry::SMALL)
            })
            .unwrap();
            let cpu = cpu_seconds() - cpu0;
            let eps = r.exec_per_sec();
            if jobs == 1 {
                base = eps;
            }
            println!(
                "{:<12} {:>5} {:>10.2} {:>10.0} {:>7.2}x {:>12.0} {:>9} {:>8}",
                preset.name(),
                jobs,
                r.elapsed.as_secs_f64(),
                eps,
                eps / base,
                r.execs as f64 / cpu,
                r.features,
                r.corpus
            );
        }
    }
    // Baseline for the machine itself: two independent one-job campaigns at
    // once (no sharing), half the executions each. If `--jobs 2` matches this
    // row, sharing costs nothing and any shortfall from 2x is the machine's.
    for preset in [Preset::LazyFixed, Preset::LazyV3] {
        let cpu0 = cpu_seconds();
        let start = std::time::Instant::now();
        let reports: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..2u64)
                .map(|i| {
                    let tmp = tmp.clone();
                    s.spawn(move || {
                        fuzz(&FuzzOptions {
                            max_runs: Some(runs / 2),
                            seed: 1 + i,
                            crashes_dir: tmp,
                            ..FuzzOptions::new(Policy::preset(preset), Geometry::SMALL)
                        })
                        .unwrap()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let secs = start.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu0;
        let execs: u64 = reports.iter().map(|r| r.execs).sum();
        println!(
            "{:<12} {:>5} {:>10.2} {:>10.0} {:>8} {:>12.0}  (two separate one-job campaigns at once)",
            preset.name(),
            "2x1",
            secs,
            execs as f64 / secs,
            "",
            execs as f64 / cpu
        );
    }
    println!("load average after: {}", loadavg());
    let _ = std::fs::remove_dir_all(&tmp);
}
