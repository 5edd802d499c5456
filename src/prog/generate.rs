//! The seeded program generator: the program decoder over seeded random bytes
//! (8 to 199 of them), so a generated program is exactly what an engine could
//! have produced. Callers that run programs on a kernel filter what that kernel
//! cannot run (`host::probe::Host::generate`).

use crate::prog::Program;
use rand::{Rng, RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// `n` programs from seed `seed`, with their decoded fault plans.
pub fn generate(n: usize, seed: u64) -> Vec<Program> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let len = rng.gen_range(8..200);
            let mut bytes = vec![0u8; len];
            rng.fill_bytes(&mut bytes);
            Program::decode(&bytes)
        })
        .collect()
}
