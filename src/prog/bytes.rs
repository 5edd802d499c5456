//! The byte form of a program: `decode` reads any byte string (the engines'
//! input, through `arbitrary`'s Unstructured) and never fails; `encode` writes
//! the bytes that decode to a given program, for programs inside the format.

use super::*;
use arbitrary::Unstructured;

fn grid(u: &mut Unstructured, max_units: u64) -> u64 {
    let v: u8 = u.arbitrary().unwrap_or(0);
    (v as u64 % max_units) * GRID
}

fn range(u: &mut Unstructured) -> (u64, u64) {
    let units = ARENA_SIZE / GRID;
    let start = grid(u, units);
    let l: u8 = u.arbitrary().unwrap_or(0);
    // Lengths: mostly small (sub-PMD and one PMD), sometimes up to 4 PMDs.
    let max_len = units - start / GRID;
    let len_units = 1 + (l as u64 % 32).min(max_len - 1);
    (start, len_units * GRID)
}

fn plan(u: &mut Unstructured, never_weight: u8) -> Plan {
    let tag: u8 = u.arbitrary().unwrap_or(0);
    let arg: u8 = u.arbitrary().unwrap_or(0);
    let kinds = 3 + never_weight;
    match tag % kinds {
        0 => Plan::Nth(1 + arg as u32 % 16),
        1 => Plan::From(1 + arg as u32 % 16),
        2 => {
            let mut v: Vec<u32> = (0..1 + arg % 4)
                .map(|_| 1 + u.arbitrary::<u8>().unwrap_or(0) as u32 % 32)
                .collect();
            v.sort_unstable();
            v.dedup();
            Plan::At(v)
        }
        _ => Plan::Never,
    }
}

/// A destination address on the grid where `len` bytes fit in the arena.
fn dest(u: &mut Unstructured, len: u64) -> u64 {
    let units = ARENA_SIZE / GRID;
    grid(u, units - len / GRID + 1)
}

fn op(u: &mut Unstructured) -> OpLine {
    let kind: u8 = u.arbitrary().unwrap_or(0);
    let mm: u8 = u.arbitrary().unwrap_or(0);
    // Most ops target mm 0; forks make the others live.
    let mm = match mm % 8 {
        0..=3 => 0,
        4 | 5 => 1,
        6 => 2,
        _ => 3,
    };
    let op = match kind % 28 {
        0 | 1 => {
            let (start, len) = range(u);
            let thp = u.arbitrary::<u8>().unwrap_or(0) % 4 != 0;
            Op::Mmap { start, len, thp }
        }
        2 => {
            let (start, len) = range(u);
            Op::Munmap { start, len }
        }
        3 => {
            let (start, len) = range(u);
            let write = u.arbitrary::<bool>().unwrap_or(false);
            Op::Mprotect { start, len, write }
        }
        4..=6 => {
            let (start, len) = range(u);
            let write = u.arbitrary::<u8>().unwrap_or(0) % 3 != 0;
            Op::Touch { start, len, write }
        }
        7 | 8 => {
            let (start, len) = range(u);
            let a: u8 = u.arbitrary().unwrap_or(0);
            Op::Madvise {
                start,
                len,
                advice: Advice::ALL[a as usize % Advice::ALL.len()],
            }
        }
        9 | 10 => Op::Fork,
        11 => {
            let (start, len) = range(u);
            Op::Pin { start, len }
        }
        12 => {
            let (start, len) = range(u);
            Op::Unpin { start, len }
        }
        13 => {
            let (old, len) = range(u);
            let new = dest(u, len);
            Op::Mremap { old, len, new }
        }
        14 | 27 => Op::Reclaim {
            addr: grid(u, ARENA_SIZE / GRID),
        },
        15 => Op::Migrate {
            addr: grid(u, ARENA_SIZE / GRID),
        },
        16 | 17 => {
            let (start, len) = range(u);
            Op::UffdRegister { start, len }
        }
        18 => {
            let (start, len) = range(u);
            Op::UffdUnregister { start, len }
        }
        19 => Op::Exit,
        20 => {
            let (start, len) = range(u);
            let on = u.arbitrary::<u8>().unwrap_or(0) % 4 != 0;
            Op::UffdWp { start, len, on }
        }
        21 => {
            let (src, len) = range(u);
            let dst = dest(u, len);
            Op::UffdMove { dst, src, len }
        }
        22 => {
            let (start, len) = range(u);
            Op::PagemapScan { start, len }
        }
        23 => {
            let (start, len) = range(u);
            Op::Mlock { start, len }
        }
        24 => {
            let (start, len) = range(u);
            Op::Munlock { start, len }
        }
        25 => {
            let (start, len) = range(u);
            let node = u.arbitrary::<u8>().unwrap_or(0) % 2;
            Op::Mbind { start, len, node }
        }
        _ => Op::DropCaches,
    };
    OpLine { op, mm }
}

impl Program {
    /// Decode any byte string into a program. Never fails, never panics.
    pub fn decode(bytes: &[u8]) -> Program {
        let mut u = Unstructured::new(bytes);
        let pte_alloc = plan(&mut u, 1);
        let thp = plan(&mut u, 5);
        let flags: u8 = u.arbitrary().unwrap_or(0);
        let swap_cluster = swap_cluster_plan(flags);
        let mut ops = Vec::new();
        while !u.is_empty() && ops.len() < MAX_DECODED_OPS {
            ops.push(op(&mut u));
        }
        Program {
            policy: None,
            uffd_async: flags & 1 != 0,
            overrides: Vec::new(),
            faults: FaultPlan {
                pte_alloc,
                thp,
                swap_cluster,
            },
            ops,
            expect: None,
            expect_results: Vec::new(),
        }
    }
}

/// The swap-cluster plan lives in bits 1-6 of the flags byte (bit 0 is
/// `uffd async`), so bytes written before it existed decode to the same ops
/// and pte_alloc/thp plans: bits 1-2 the kind (1 nth, 2 from, else never),
/// bits 3-6 N-1. `encode` writes flags 0 or 1 when there is no swap-cluster
/// plan, so every encoded file keeps meaning "clusters available".
fn swap_cluster_plan(flags: u8) -> Plan {
    let n = 1 + ((flags >> 3) & 15) as u32;
    match (flags >> 1) & 3 {
        1 => Plan::Nth(n),
        2 => Plan::From(n),
        _ => Plan::Never,
    }
}

fn enc_swap_cluster(plan: &Plan) -> Result<u8, String> {
    Ok(match plan {
        Plan::Never => 0,
        Plan::Nth(n) | Plan::From(n) if (1..=16).contains(n) => {
            let kind = if matches!(plan, Plan::Nth(_)) { 1 } else { 2 };
            (kind << 1) | (((*n - 1) as u8) << 3)
        }
        _ => {
            return Err(format!(
                "swap-cluster plan '{plan}' is outside the byte format (nth/from <= 16)"
            ))
        }
    })
}

fn enc_plan(out: &mut Vec<u8>, plan: &Plan, never_tag: u8) -> Result<(), String> {
    match plan {
        Plan::Never => out.extend([never_tag, 0]),
        Plan::Nth(n) | Plan::From(n) if (1..=16).contains(n) => {
            out.extend([if matches!(plan, Plan::Nth(_)) { 0 } else { 1 }, (*n - 1) as u8])
        }
        Plan::At(v) if (1..=4).contains(&v.len()) && v.iter().all(|x| (1..=32).contains(x)) => {
            out.extend([2, (v.len() - 1) as u8]);
            out.extend(v.iter().map(|x| (*x - 1) as u8));
        }
        _ => return Err(format!("fault plan '{plan}' is outside the byte format (nth/from <= 16, at: up to 4 calls <= 32)")),
    }
    Ok(())
}

fn enc_grid(out: &mut Vec<u8>, a: u64) -> Result<(), String> {
    if a % GRID != 0 {
        return Err(format!(
            "address {} is not on the {}K grid of the byte format",
            fmt_size(a),
            GRID >> 10
        ));
    }
    out.push((a / GRID) as u8);
    Ok(())
}

fn enc_range(out: &mut Vec<u8>, start: u64, len: u64) -> Result<(), String> {
    enc_grid(out, start)?;
    if len % GRID != 0 || len / GRID > 32 {
        return Err(format!(
            "length {} is not a multiple of {}K up to 8M",
            fmt_size(len),
            GRID >> 10
        ));
    }
    out.push((len / GRID - 1) as u8);
    Ok(())
}

/// Bytes that `Program::decode` turns back into `p` (policy, overrides and
/// expect lines are not part of the byte format).
pub fn encode(p: &Program) -> Result<Vec<u8>, String> {
    if p.ops.len() > MAX_DECODED_OPS {
        return Err(format!("more than {MAX_DECODED_OPS} ops"));
    }
    let mut out = Vec::new();
    enc_plan(&mut out, &p.faults.pte_alloc, 3)?;
    enc_plan(&mut out, &p.faults.thp, 3)?;
    out.push(p.uffd_async as u8 | enc_swap_cluster(&p.faults.swap_cluster)?);
    for line in &p.ops {
        let kind = match line.op {
            Op::Mmap { .. } => 0,
            Op::Munmap { .. } => 2,
            Op::Mprotect { .. } => 3,
            Op::Touch { .. } => 4,
            Op::Madvise { .. } => 7,
            Op::Fork => 9,
            Op::Pin { .. } => 11,
            Op::Unpin { .. } => 12,
            Op::Mremap { .. } => 13,
            Op::Reclaim { .. } => 14,
            Op::Migrate { .. } => 15,
            Op::UffdRegister { .. } => 16,
            Op::UffdUnregister { .. } => 18,
            Op::Exit => 19,
            Op::UffdWp { .. } => 20,
            Op::UffdMove { .. } => 21,
            Op::PagemapScan { .. } => 22,
            Op::Mlock { .. } => 23,
            Op::Munlock { .. } => 24,
            Op::Mbind { .. } => 25,
            Op::DropCaches => 26,
        };
        let mm = [0u8, 4, 6, 7][line.mm.min(3)];
        out.extend([kind, mm]);
        match line.op {
            Op::Mmap { start, len, thp } => {
                enc_range(&mut out, start, len)?;
                out.push(thp as u8);
            }
            Op::Munmap { start, len }
            | Op::Pin { start, len }
            | Op::Unpin { start, len }
            | Op::UffdRegister { start, len }
            | Op::UffdUnregister { start, len }
            | Op::PagemapScan { start, len }
            | Op::Mlock { start, len }
            | Op::Munlock { start, len } => enc_range(&mut out, start, len)?,
            Op::Mprotect { start, len, write } | Op::Touch { start, len, write } => {
                enc_range(&mut out, start, len)?;
                out.push(write as u8);
            }
            Op::Madvise { start, len, advice } => {
                enc_range(&mut out, start, len)?;
                out.push(Advice::ALL.iter().position(|a| *a == advice).unwrap_or(0) as u8);
            }
            Op::Mremap { old, len, new } => {
                enc_range(&mut out, old, len)?;
                enc_grid(&mut out, new)?;
            }
            Op::UffdMove { dst, src, len } => {
                enc_range(&mut out, src, len)?;
                enc_grid(&mut out, dst)?;
            }
            Op::Mbind { start, len, node } => {
                enc_range(&mut out, start, len)?;
                out.push(node);
            }
            Op::Reclaim { addr } | Op::Migrate { addr } => enc_grid(&mut out, addr)?,
            Op::UffdWp { start, len, on } => {
                enc_range(&mut out, start, len)?;
                out.push(on as u8);
            }
            Op::Fork | Op::Exit | Op::DropCaches => {}
        }
    }
    let back = Program::decode(&out);
    if back.ops != p.ops || back.faults != p.faults || back.uffd_async != p.uffd_async {
        return Err("program is outside the byte format (ranges must fit the arena as the decoder bounds them)".into());
    }
    Ok(out)
}
