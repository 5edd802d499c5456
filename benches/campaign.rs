//! Benchmark (not a test): exec/s of whole campaigns of the built-in engine
//! with --jobs 1 and --jobs 2 (shared corpus and coverage map), so the cost of
//! sharing and the speed-up show. Run: cargo bench --bench campaign
//! (`BENCH_RUNS=N` executions per campaign). The load average is printed
//! before and after: other processes on the machine lower the speed-up.

use splitfuzz::engine::{fuzz, FuzzOptions};
use splitfuzz::{Geometry, Policy, Preset};

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
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
        "{:<12} {:>5} {:>10} {:>10} {:>8} {:>9} {:>8}",
        "policy", "jobs", "seconds", "exec/s", "speedup", "features", "corpus"
    );
    let tmp = std::env::temp_dir().join(format!("splitfuzz-bench-{}", std::process::id()));
    for preset in [Preset::LazyFixed, Preset::LazyV3] {
        let mut base = 0.0;
        for jobs in [1, 2] {
            let r = fuzz(&FuzzOptions {
                max_runs: Some(runs),
                jobs,
                seed: 1,
                crashes_dir: tmp.clone(),
                ..FuzzOptions::new(Policy::preset(preset), Geometry::SMALL)
            })
            .unwrap();
            let eps = r.exec_per_sec();
            if jobs == 1 {
                base = eps;
            }
            println!(
                "{:<12} {:>5} {:>10.2} {:>10.0} {:>7.2}x {:>9} {:>8}",
                preset.name(),
                jobs,
                r.elapsed.as_secs_f64(),
                eps,
                eps / base,
                r.features,
                r.corpus
            );
        }
    }
    println!("load average after: {}", loadavg());
    let _ = std::fs::remove_dir_all(&tmp);
}
