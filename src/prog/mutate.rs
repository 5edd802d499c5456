//! The one mutator of programs, shared by every engine: the built-in engine
//! and `diff --maximize` call [`mutate`]; libFuzzer (a custom mutator and a
//! custom crossover) and AFL++ (a custom mutator library) call the stable
//! entry points on bytes, [`mutate_bytes`] and [`crossover_bytes`], which are
//! deterministic given their seed.
//!
//! Two layers:
//! * structure-aware ([`structured`]): the input is decoded into its program,
//!   edited as a program (insert, delete, duplicate, swap and re-target ops,
//!   another process, another fault plan, PMD alignment, splice with another
//!   program's ops, and the op sequences the model's rarer branches need), and
//!   encoded back (`bytes.rs`);
//! * on bytes: bit flips, byte changes, inserts, deletes, splices with another
//!   input, chunk repeats, small arithmetic, and the re-plan (same ops, another
//!   pte_alloc_one() plan).

use crate::base::{ARENA_SIZE, GRID, MAX_MMS, PMD_SIZE};
use crate::prog::{encode, Advice, Op, OpLine, Plan, Program, MAX_DECODED_OPS};
use rand::{Rng, RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// Longest input a mutation returns.
pub const MAX_LEN: usize = 400;

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

/// One mutation of `input` (`other`: another corpus input, for splices): the
/// structure-aware layer half of the time (when its result encodes), else the
/// byte layer. At most [`MAX_LEN`] bytes.
pub fn mutate(rng: &mut Xoshiro256PlusPlus, input: &[u8], other: &[u8]) -> Vec<u8> {
    if rng.gen_ratio(1, 2) {
        if let Some(v) = structured(rng, input, other) {
            if v != input {
                return v;
            }
        }
    }
    bytewise(rng, input, other)
}

/// The stable entry point on bytes for the other engines: one [`mutate`] of
/// `input` with `other` for splices, from a generator seeded with `seed`, cut
/// to `max_len`. The same arguments give the same bytes.
pub fn mutate_bytes(input: &[u8], other: &[u8], seed: u64, max_len: usize) -> Vec<u8> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut v = mutate(&mut rng, input, other);
    v.truncate(max_len);
    v
}

/// Crossover for the other engines: the ops of `a` up to a point, then the ops
/// of `b` from a point (and `a`'s fault plan), encoded; when that is outside
/// the byte format, `a`'s head and `b`'s tail as bytes. Deterministic in
/// (`a`, `b`, `seed`), at most `max_len` bytes.
pub fn crossover_bytes(a: &[u8], b: &[u8], seed: u64, max_len: usize) -> Vec<u8> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut p = Program::decode(a);
    let o = Program::decode(b);
    splice_ops(&mut rng, &mut p, &o);
    let mut v = match encode(&p) {
        Ok(v) => v,
        Err(_) => {
            let i = rng.gen_range(0..=a.len());
            let j = if b.is_empty() {
                0
            } else {
                rng.gen_range(0..b.len())
            };
            let mut v = a[..i].to_vec();
            v.extend_from_slice(&b[j..]);
            v
        }
    };
    v.truncate(max_len);
    v
}

// ------------------------------------------------------------------ programs

/// A mutation of the program `input` decodes to, encoded; None when the
/// result is outside the byte format.
pub fn structured(rng: &mut Xoshiro256PlusPlus, input: &[u8], other: &[u8]) -> Option<Vec<u8>> {
    let mut p = Program::decode(input);
    for _ in 0..rng.gen_range(1..=3) {
        edit(rng, &mut p, other);
    }
    p.ops.truncate(MAX_DECODED_OPS);
    encode(&p).ok().filter(|v| v.len() <= MAX_LEN)
}

fn edit(rng: &mut Xoshiro256PlusPlus, p: &mut Program, other: &[u8]) {
    let n = p.ops.len();
    match rng.gen_range(0..13) {
        0 | 1 => {
            let at = rng.gen_range(0..=n);
            let op = random_op(rng);
            p.ops.insert(at, op);
        }
        2 if n > 0 => {
            p.ops.remove(rng.gen_range(0..n));
        }
        3 if n > 0 => {
            let op = p.ops[rng.gen_range(0..n)].clone();
            p.ops.insert(rng.gen_range(0..=n), op);
        }
        4 if n > 1 => {
            let i = rng.gen_range(0..n - 1);
            p.ops.swap(i, i + 1);
        }
        5 if n > 0 => {
            let i = rng.gen_range(0..n);
            p.ops[i].mm = rng.gen_range(0..MAX_MMS);
        }
        6 => {
            let plan = random_plan(rng);
            if rng.gen_ratio(3, 4) {
                p.faults.pte_alloc = plan;
            } else {
                p.faults.thp = plan;
            }
        }
        7 if !other.is_empty() => {
            let o = Program::decode(other);
            splice_ops(rng, p, &o);
        }
        8 if n > 0 => {
            let i = rng.gen_range(0..n);
            align(&mut p.ops[i].op, rng.gen_ratio(1, 2));
        }
        9 if n > 1 => {
            // Aim one op at another's range: ops that meet the same PMD.
            let (i, j) = (rng.gen_range(0..n), rng.gen_range(0..n));
            if let Some((s, l)) = range(&p.ops[j].op) {
                set_range(&mut p.ops[i].op, s, l);
            }
        }
        10 => {
            let at = rng.gen_range(0..=n);
            let seq = recipe(rng);
            p.ops.splice(at..at, seq);
        }
        11 => p.uffd_async = !p.uffd_async,
        _ if n > 0 => {
            // Another op of the same place: keep the range, change the kind.
            let i = rng.gen_range(0..n);
            if let Some((s, l)) = range(&p.ops[i].op) {
                let mut op = random_op(rng);
                set_range(&mut op.op, s, l);
                op.mm = p.ops[i].mm;
                p.ops[i] = op;
            }
        }
        _ => p.ops.push(random_op(rng)),
    }
}

/// `p`'s ops up to a point, then `o`'s from a point.
fn splice_ops(rng: &mut Xoshiro256PlusPlus, p: &mut Program, o: &Program) {
    let a = rng.gen_range(0..=p.ops.len());
    let b = rng.gen_range(0..=o.ops.len());
    p.ops.truncate(a);
    p.ops.extend_from_slice(&o.ops[b..]);
    p.ops.truncate(MAX_DECODED_OPS);
}

/// An op as the decoder makes it from random bytes.
fn random_op(rng: &mut Xoshiro256PlusPlus) -> OpLine {
    // A never/never plan and no flags, then the op's bytes.
    let mut b = [3u8, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0];
    rng.fill_bytes(&mut b[5..]);
    Program::decode(&b)
        .ops
        .into_iter()
        .next()
        .unwrap_or(OpLine {
            op: Op::Fork,
            mm: 0,
        })
}

/// A fault plan in the byte format: mostly the first calls, once or from then on.
fn random_plan(rng: &mut Xoshiro256PlusPlus) -> Plan {
    let n = if rng.gen_ratio(3, 4) {
        rng.gen_range(1..=4)
    } else {
        rng.gen_range(1..=16)
    };
    match rng.gen_range(0..5) {
        0 | 1 => Plan::From(n),
        2 | 3 => Plan::Nth(n),
        _ => Plan::Never,
    }
}

/// The (start, len) an op works on, if it has a range (an address: one grid step).
fn range(op: &Op) -> Option<(u64, u64)> {
    match *op {
        Op::Mmap { start, len, .. }
        | Op::Munmap { start, len }
        | Op::Mprotect { start, len, .. }
        | Op::Touch { start, len, .. }
        | Op::Madvise { start, len, .. }
        | Op::Pin { start, len }
        | Op::Unpin { start, len }
        | Op::UffdRegister { start, len }
        | Op::UffdUnregister { start, len }
        | Op::PagemapScan { start, len }
        | Op::Mlock { start, len }
        | Op::Munlock { start, len }
        | Op::Mbind { start, len, .. }
        | Op::UffdWp { start, len, .. } => Some((start, len)),
        Op::Mremap { old, len, .. } => Some((old, len)),
        Op::UffdMove { src, len, .. } => Some((src, len)),
        Op::Reclaim { addr } | Op::Migrate { addr } => Some((addr, GRID)),
        Op::Fork | Op::Exit | Op::DropCaches => None,
    }
}

fn set_range(op: &mut Op, s: u64, l: u64) {
    match op {
        Op::Mmap { start, len, .. }
        | Op::Munmap { start, len }
        | Op::Mprotect { start, len, .. }
        | Op::Touch { start, len, .. }
        | Op::Madvise { start, len, .. }
        | Op::Pin { start, len }
        | Op::Unpin { start, len }
        | Op::UffdRegister { start, len }
        | Op::UffdUnregister { start, len }
        | Op::PagemapScan { start, len }
        | Op::Mlock { start, len }
        | Op::Munlock { start, len }
        | Op::Mbind { start, len, .. }
        | Op::UffdWp { start, len, .. }
        | Op::Mremap {
            old: start, len, ..
        }
        | Op::UffdMove {
            src: start, len, ..
        } => {
            *start = s;
            *len = l;
        }
        Op::Reclaim { addr } | Op::Migrate { addr } => *addr = s,
        Op::Fork | Op::Exit | Op::DropCaches => {}
    }
}

/// Put an op on PMD boundaries: its start (and a move's or remap's
/// destination) down to a PMD, its length to whole PMDs (`whole`) or to one
/// grid step inside the PMD (a partial one, which splits).
fn align(op: &mut Op, whole: bool) {
    let Some((s, l)) = range(op) else { return };
    let s = s / PMD_SIZE * PMD_SIZE;
    let l = if whole {
        l.div_ceil(PMD_SIZE).max(1) * PMD_SIZE
    } else {
        GRID
    };
    let l = l.min(ARENA_SIZE - s);
    set_range(op, s, l);
    match op {
        Op::Mremap { new, len, .. } | Op::UffdMove { dst: new, len, .. } => {
            *new = (*new / PMD_SIZE * PMD_SIZE).min(ARENA_SIZE - *len);
        }
        _ => {}
    }
}

/// A PMD-aligned address with room for `pmds` PMDs.
fn pmd_at(rng: &mut Xoshiro256PlusPlus, pmds: u64) -> u64 {
    rng.gen_range(0..=ARENA_SIZE / PMD_SIZE - pmds) * PMD_SIZE
}

/// Op sequences that the model's rarer branches need (a random one, on
/// random PMD-aligned places), which the decoder alone makes rarely: each
/// builds a whole THP (mmap with MADV_HUGEPAGE, written) and then acts on it as
/// a whole or in part.
pub fn recipe(rng: &mut Xoshiro256PlusPlus) -> Vec<OpLine> {
    let line = |op| OpLine { op, mm: 0 };
    let a = pmd_at(rng, 2);
    let thp = |start, len| {
        [
            line(Op::Mmap {
                start,
                len,
                thp: true,
            }),
            line(Op::Touch {
                start,
                len,
                write: true,
            }),
        ]
    };
    let mut v: Vec<OpLine> = thp(a, PMD_SIZE).to_vec();
    match rng.gen_range(0..10) {
        0 => {
            // UFFDIO_MOVE of a whole THP to a PMD-aligned, registered, empty
            // destination: move_pages_huge_pmd() (mm/huge_memory.c).
            let mut d = pmd_at(rng, 1);
            if d == a {
                d = (a + 4 * PMD_SIZE) % ARENA_SIZE;
            }
            v.extend([
                line(Op::Mmap {
                    start: d,
                    len: PMD_SIZE,
                    thp: rng.gen(),
                }),
                line(Op::UffdRegister {
                    start: d,
                    len: PMD_SIZE,
                }),
                line(Op::UffdRegister {
                    start: a,
                    len: PMD_SIZE,
                }),
                line(Op::UffdMove {
                    dst: d,
                    src: a,
                    len: PMD_SIZE,
                }),
            ]);
        }
        1 => {
            // fork of a mapped THP, then a fault in the child on it
            // (copy_huge_pmd(), do_huge_pmd_wp_page() / wp_huge_pmd()).
            v.push(line(Op::Fork));
            v.push(OpLine {
                op: Op::Touch {
                    start: a + rng.gen_range(0..8) * GRID,
                    len: GRID,
                    write: true,
                },
                mm: 1,
            });
        }
        2 => {
            // Part of the THP changes protection, is advised or unmapped:
            // __split_huge_pmd() from the range's callers.
            let s = a + rng.gen_range(1..8) * GRID;
            let op = match rng.gen_range(0..4) {
                0 => Op::Mprotect {
                    start: s,
                    len: GRID,
                    write: false,
                },
                1 => Op::Munmap {
                    start: s,
                    len: GRID,
                },
                2 => Op::Madvise {
                    start: s,
                    len: GRID,
                    advice: Advice::ALL[rng.gen_range(0..Advice::ALL.len())],
                },
                _ => Op::Mremap {
                    old: s,
                    len: GRID,
                    new: pmd_at(rng, 1) + GRID,
                },
            };
            v.push(line(op));
        }
        3 => {
            // uffd-wp of the whole THP, then PAGEMAP_SCAN of part of it.
            v.extend([
                line(Op::UffdRegister {
                    start: a,
                    len: PMD_SIZE,
                }),
                line(Op::UffdWp {
                    start: a,
                    len: PMD_SIZE,
                    on: true,
                }),
                line(Op::PagemapScan {
                    start: a + rng.gen_range(0..4) * GRID,
                    len: if rng.gen() { PMD_SIZE / 2 } else { PMD_SIZE },
                }),
            ]);
        }
        4 => {
            // mremap of a whole THP to another PMD-aligned place (move_huge_pmd()).
            let d = pmd_at(rng, 1);
            v.push(line(Op::Mremap {
                old: a,
                len: PMD_SIZE,
                new: d,
            }));
        }
        5 => {
            // Two THPs; pin one, reclaim or migrate it (try_to_unmap / try_to_migrate).
            v.extend(thp(a + PMD_SIZE, PMD_SIZE));
            if rng.gen() {
                v.push(line(Op::Pin {
                    start: a,
                    len: GRID,
                }));
            }
            v.push(line(if rng.gen() {
                Op::Reclaim { addr: a }
            } else {
                Op::Migrate { addr: a }
            }));
        }
        7 => {
            // PTE-level UFFDIO_MOVE: of part of a THP mapped by PTEs (a partial
            // mprotect split its PMD: move_pages_pte() splits the folio), or of
            // swapped-out (MADV_PAGEOUT) or zero-page PTEs of a small-page VMA
            // (move_swap_pte(), move_zeropage_pte(), move_present_ptes()).
            let d = (a + PMD_SIZE) % ARENA_SIZE;
            v.clear();
            let small = rng.gen_range(0..3);
            v.push(line(Op::Mmap {
                start: a,
                len: PMD_SIZE,
                thp: small == 0,
            }));
            v.push(line(Op::Touch {
                start: a,
                len: PMD_SIZE / 2,
                write: small != 2,
            }));
            v.push(line(match small {
                0 => Op::Mprotect {
                    start: a + 7 * GRID,
                    len: GRID,
                    write: false,
                },
                _ => Op::Madvise {
                    start: a,
                    len: GRID,
                    advice: Advice::Pageout,
                },
            }));
            v.extend([
                line(Op::Mmap {
                    start: d,
                    len: PMD_SIZE,
                    thp: false,
                }),
                line(Op::UffdRegister {
                    start: a.min(d),
                    len: 2 * PMD_SIZE,
                }),
                line(Op::UffdMove {
                    dst: d,
                    src: a,
                    len: GRID * rng.gen_range(1..=4),
                }),
            ]);
        }
        8 => {
            // uffd-wp on and off the whole THP, then a write: the PMD is
            // read-only and exclusive (do_huge_pmd_wp_page() reuses it).
            v.extend([
                line(Op::UffdRegister {
                    start: a,
                    len: PMD_SIZE,
                }),
                line(Op::UffdWp {
                    start: a,
                    len: PMD_SIZE,
                    on: true,
                }),
                line(Op::UffdWp {
                    start: a,
                    len: PMD_SIZE,
                    on: false,
                }),
                line(Op::Touch {
                    start: a + GRID * rng.gen_range(0..8),
                    len: GRID,
                    write: true,
                }),
            ]);
        }
        _ => {
            // mlock, then split by a partial munlock or mprotect.
            v.push(line(Op::Mlock {
                start: a,
                len: PMD_SIZE,
            }));
            v.push(line(Op::Munlock {
                start: a + GRID * rng.gen_range(1..8),
                len: GRID,
            }));
        }
    }
    v
}

// ------------------------------------------------------------------ bytes

/// The byte layer: 1 to 4 byte-level changes.
pub fn bytewise(rng: &mut Xoshiro256PlusPlus, input: &[u8], other: &[u8]) -> Vec<u8> {
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
    v.truncate(MAX_LEN);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Vec<Vec<u8>> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        (0..200)
            .map(|i| {
                let mut b = vec![0u8; i % 90];
                rng.fill_bytes(&mut b);
                b
            })
            .collect()
    }

    #[test]
    fn the_entry_points_are_deterministic_and_bounded() {
        let ins = inputs();
        for (i, w) in ins.windows(2).enumerate() {
            let seed = i as u64 * 31;
            let a = mutate_bytes(&w[0], &w[1], seed, 64);
            assert_eq!(a, mutate_bytes(&w[0], &w[1], seed, 64));
            assert!(a.len() <= 64);
            let c = crossover_bytes(&w[0], &w[1], seed, 100);
            assert_eq!(c, crossover_bytes(&w[0], &w[1], seed, 100));
            assert!(c.len() <= 100);
        }
        // Different seeds give different mutations (not one fixed output).
        let outs: std::collections::BTreeSet<Vec<u8>> = (0..50)
            .map(|s| mutate_bytes(&ins[50], &ins[51], s, MAX_LEN))
            .collect();
        assert!(outs.len() > 40, "{}", outs.len());
    }

    #[test]
    fn the_structured_layer_edits_programs_and_stays_in_the_format() {
        let ins = inputs();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let (mut some, mut changed_ops) = (0, 0);
        for w in ins.windows(2) {
            if let Some(v) = structured(&mut rng, &w[0], &w[1]) {
                some += 1;
                let (p, q) = (Program::decode(&w[0]), Program::decode(&v));
                // What it returns is exactly the program it made: it re-encodes.
                assert_eq!(encode(&q).unwrap(), v);
                changed_ops += (p.ops != q.ops) as usize;
            }
        }
        assert!(some > 150, "{some} of 199 encodable");
        assert!(changed_ops > 100, "{changed_ops} with other ops");
    }

    #[test]
    fn recipes_are_in_the_byte_format_and_cover_a_whole_thp_move() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let mut whole_move = false;
        for _ in 0..200 {
            let ops = recipe(&mut rng);
            let p = Program {
                ops: ops.clone(),
                ..Program::decode(&[3, 0, 3, 0, 0])
            };
            let b = encode(&p).expect("a recipe encodes");
            assert_eq!(Program::decode(&b).ops, ops);
            whole_move |= ops.iter().any(|l| {
                matches!(l.op, Op::UffdMove { dst, src, len }
                    if len == PMD_SIZE && dst % PMD_SIZE == 0 && src % PMD_SIZE == 0)
            });
        }
        assert!(whole_move);
    }

    #[test]
    fn align_puts_ranges_on_pmds() {
        let mut op = Op::UffdMove {
            dst: 5 * GRID + PMD_SIZE,
            src: 3 * GRID,
            len: 3 * GRID,
        };
        align(&mut op, true);
        assert_eq!(
            op,
            Op::UffdMove {
                dst: PMD_SIZE,
                src: 0,
                len: PMD_SIZE
            }
        );
        let mut op = Op::Munmap {
            start: ARENA_SIZE - GRID,
            len: GRID,
        };
        align(&mut op, true);
        assert_eq!(
            op,
            Op::Munmap {
                start: ARENA_SIZE - PMD_SIZE,
                len: PMD_SIZE
            }
        );
    }
}
