//! Properties over generated programs (deterministic seeds).

use rand::{Rng, RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use splitfuzz::run::{run_program, RunConfig};
use splitfuzz::{Geometry, Policy, Preset, Program};

fn inputs(seed: u64, n: usize) -> Vec<Vec<u8>> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let mut b = vec![0u8; rng.gen_range(0..240)];
            rng.fill_bytes(&mut b);
            b
        })
        .collect()
}

fn no_violation(preset: Preset, geom: Geometry, n: usize) {
    let cfg = RunConfig::new(Policy::preset(preset), geom);
    for (i, b) in inputs(0x5eed + preset as u64, n).iter().enumerate() {
        let out = run_program(b, &cfg);
        if let Some(v) = out.violation {
            panic!(
                "{} input #{i} violates (a model bug, not a finding): {v}\n{}",
                preset.name(),
                Program::decode(b).to_text()
            );
        }
    }
}

#[test]
fn deposit_never_violates() {
    no_violation(Preset::Deposit, Geometry::SMALL, 4000);
}

#[test]
fn lazy_fixed_never_violates() {
    no_violation(Preset::LazyFixed, Geometry::SMALL, 4000);
}

#[test]
fn reference_policies_hold_in_kernel_geometry() {
    no_violation(Preset::Deposit, Geometry::KERNEL, 150);
    no_violation(Preset::LazyFixed, Geometry::KERNEL, 150);
}

/// The same program gives the same verdict with 512 and with 8 PTEs per table.
#[test]
fn geometries_agree() {
    for preset in Preset::ALL {
        let small = RunConfig::new(Policy::preset(preset), Geometry::SMALL);
        let big = RunConfig::new(Policy::preset(preset), Geometry::KERNEL);
        for (i, b) in inputs(0xa9 + preset as u64, 150).iter().enumerate() {
            let (a, k) = (run_program(b, &small), run_program(b, &big));
            assert_eq!(
                a.violation.as_ref().map(|v| (v.signature(), v.op_index)),
                k.violation.as_ref().map(|v| (v.signature(), v.op_index)),
                "{} input #{i}:\n{}",
                preset.name(),
                Program::decode(b).to_text()
            );
            assert_eq!(
                a.results,
                k.results,
                "{} input #{i} op results differ",
                preset.name()
            );
        }
    }
}

/// Same input, same verdict, same coverage: no hidden state between runs.
#[test]
fn deterministic() {
    let cfg = RunConfig::new(Policy::preset(Preset::LazyV3), Geometry::SMALL);
    for b in inputs(42, 300) {
        let (x, y) = (run_program(&b, &cfg), run_program(&b, &cfg));
        assert_eq!(x.violation, y.violation);
        assert_eq!(x.cov, y.cov);
        assert_eq!(x.results, y.results);
    }
}
