//! Mutation of programs in their byte form (`bytes.rs`): bit flips, byte
//! changes, inserts, deletes, splices with another input, chunk repeats,
//! small arithmetic, and the re-plan (same ops, another pte_alloc_one() plan).
//! The built-in engine and `diff --maximize` mutate through it.

use rand::Rng;
use rand_xoshiro::Xoshiro256PlusPlus;

/// Re-plan: the same ops under another `pte_alloc_one()` plan. The plan is
/// the input's first two bytes (program.rs `plan()`: tag % 4 = nth, from, at,
/// never; then the call index); nth, from and never take exactly these two
/// bytes, so the ops decode as before (an `at` plan, which reads more bytes,
/// is left alone). A program that reaches a split under a transient failure
/// is then tried under a sustained one (`from`), which the retry loops need.
pub fn replan(rng: &mut Xoshiro256PlusPlus, v: &mut [u8]) {
    if v.len() < 2 || v[0] % 4 == 2 {
        return;
    }
    v[0] = [0u8, 1, 3][rng.gen_range(0..3)] + 4 * rng.gen_range(0..64u8);
    if rng.gen_ratio(1, 2) {
        v[1] = rng.gen();
    }
}

pub fn mutate(rng: &mut Xoshiro256PlusPlus, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    let n = rng.gen_range(1..=4);
    for _ in 0..n {
        match rng.gen_range(0..8) {
            7 if v.len() >= 2 && v[0] % 4 != 2 => replan(rng, &mut v),
            0 if !v.is_empty() => {
                let i = rng.gen_range(0..v.len());
                v[i] ^= 1 << rng.gen_range(0..8);
            }
            1 if !v.is_empty() => {
                let i = rng.gen_range(0..v.len());
                v[i] = rng.gen();
            }
            2 => {
                let i = rng.gen_range(0..=v.len());
                let k = rng.gen_range(1..=8);
                for _ in 0..k {
                    v.insert(i, rng.gen());
                }
            }
            3 if v.len() > 2 => {
                let i = rng.gen_range(0..v.len());
                let k = rng.gen_range(1..=8.min(v.len() - i));
                v.drain(i..i + k);
            }
            4 if !other.is_empty() => {
                // splice: our head + other's tail
                let a = rng.gen_range(0..=v.len());
                let b = rng.gen_range(0..other.len());
                v.truncate(a);
                v.extend_from_slice(&other[b..]);
            }
            5 if v.len() > 4 => {
                // duplicate a chunk (repeats an op sequence)
                let i = rng.gen_range(0..v.len());
                let k = rng.gen_range(1..=16.min(v.len() - i));
                let chunk: Vec<u8> = v[i..i + k].to_vec();
                let at = rng.gen_range(0..=v.len());
                for (j, b) in chunk.into_iter().enumerate() {
                    v.insert(at + j, b);
                }
            }
            _ if !v.is_empty() => {
                // small arithmetic on one byte (sizes, call indices)
                let i = rng.gen_range(0..v.len());
                v[i] = v[i]
                    .wrapping_add(rng.gen_range(1..=4))
                    .wrapping_sub(if rng.gen() { 0 } else { 5 });
            }
            _ => v.push(rng.gen()),
        }
    }
    v.truncate(400);
    v
}
