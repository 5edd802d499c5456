//! Benchmark (not a test): exec/s of the built-in engine's entry point for
//! 32-op programs in both geometries, and the cost per op as programs grow.
//! Run: cargo bench --bench engine

use rand::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use splitfuzz::run::{run, run_program, RunConfig};
use splitfuzz::{Geometry, Policy, Preset, Program};
use std::time::{Duration, Instant};

/// Random byte strings that decode to exactly `ops` ops (ops over 64 are built
/// by concatenating decoded programs).
fn programs(seed: u64, ops: usize, n: usize) -> Vec<Program> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let mut p = Program::default();
            while p.ops.len() < ops {
                let mut b = vec![0u8; 600];
                rng.fill_bytes(&mut b);
                let d = Program::decode(&b);
                if p.ops.is_empty() {
                    p.faults = d.faults.clone();
                }
                // No `exit`: a dead mm turns the rest of the program into no-ops.
                p.ops.extend(
                    d.ops
                        .into_iter()
                        .filter(|o| o.op != splitfuzz::prog::Op::Exit),
                );
            }
            p.ops.truncate(ops);
            p
        })
        .collect()
}

fn measure(cfg: &RunConfig, progs: &[Program], min: Duration) -> (f64, u64) {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < min {
        for p in progs {
            std::hint::black_box(run(p, cfg));
            n += 1;
        }
    }
    (n as f64 / start.elapsed().as_secs_f64(), n)
}

fn main() {
    let secs: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let min = Duration::from_secs(secs);
    println!("splitfuzz engine benchmark ({secs}s per row)");
    println!(
        "{:<12} {:<8} {:>6} {:>12} {:>14}",
        "policy", "geometry", "ops", "exec/s", "us per op"
    );
    for geom in [Geometry::SMALL, Geometry::KERNEL] {
        for preset in Preset::ALL {
            let cfg = RunConfig::new(Policy::preset(preset), geom);
            let progs = programs(1, 32, 64);
            let (eps, _) = measure(&cfg, &progs, min);
            println!(
                "{:<12} {:<8} {:>6} {:>12.0} {:>14.2}",
                preset.name(),
                geom.name(),
                32,
                eps,
                1e6 / eps / 32.0
            );
        }
    }
    // Raw bytes path (what every engine calls), lazy-v3 small.
    let cfg = RunConfig::new(Policy::preset(Preset::LazyV3), Geometry::SMALL);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
    let inputs: Vec<Vec<u8>> = (0..256)
        .map(|_| {
            let mut b = vec![0u8; 160];
            rng.fill_bytes(&mut b);
            b
        })
        .collect();
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < min {
        for b in &inputs {
            std::hint::black_box(run_program(b, &cfg));
            n += 1;
        }
    }
    println!(
        "run_program(160 random bytes), lazy-v3 small: {:.0} exec/s",
        n as f64 / start.elapsed().as_secs_f64()
    );
    println!("\ncost per op as programs grow (deposit, small geometry; violations stop a program early, so the reference policy is used):");
    println!("{:>6} {:>12} {:>14}", "ops", "exec/s", "us per op");
    let cfg = RunConfig::new(Policy::preset(Preset::Deposit), Geometry::SMALL);
    for ops in [8, 32, 128, 512, 1024, 2048] {
        let progs = programs(3, ops, 16);
        let (eps, _) = measure(&cfg, &progs, min);
        println!("{:>6} {:>12.0} {:>14.2}", ops, eps, 1e6 / eps / ops as f64);
    }
}
