//! `splitfuzz emit-syz`: a program in syzkaller's text format (the format of
//! syzkaller's corpus, seeds and reproducers; prog/encoding.go).
//!
//! Addresses: syzkaller writes every pointer into its data area as an offset
//! from 0x7f0000000000 (prog/encoding.go `encodingAddrBase`); the executor
//! maps the area at the target's DataOffset (sys/targets/targets.go: on amd64
//! 0x200000000000, 2 MiB-aligned) and it is 16 MiB long (`NumPages = (16 <<
//! 20) / PageSize`); a pointer outside it does not validate
//! (prog/validation.go) and a vma range is clamped into it
//! (prog/encoding.go `parseAddr`). The program's arena offsets are therefore
//! moved by a multiple of 2 MiB (THP alignment is kept) so that its lowest
//! range starts at 2 MiB; the first 2 MiB hold the calls' argument
//! structures. A program that spans more than 14 MiB does not fit.
//!
//! Calls: mmap (MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED) then madvise
//! (MADV_HUGEPAGE); munmap; mprotect; a touch is madvise(MADV_POPULATE_WRITE
//! or _READ) (the same fault, without the executor's per-page tags);
//! madvise; mremap (MREMAP_MAYMOVE|MREMAP_FIXED); mlock2; munlock; mbind;
//! move_pages (to node 1, after set_mempolicy to node 0 as the executor
//! does); userfaultfd + ioctl$UFFDIO_API / _REGISTER (mode WP) /
//! _UNREGISTER / _WRITEPROTECT / _MOVE; syz_open_procfs$pagemap +
//! ioctl$PAGEMAP_SCAN. fork, exit, pins, reclaim and drop_caches have no
//! syzkaller equivalent here: such a program is an error. Each call's
//! trailing comment names our op.
//!
//! Fault plans: a reproducer marks the call holding the planned failure with
//! syzkaller's `fail_nth` call property (prog/prog.go `CallProps`), which the
//! executor realises with /proc/thread-self/fail-nth after arming failslab
//! and fail_page_alloc for every allocation (executor/common_linux.h
//! `setup_fault`): it fails the Nth fault-injectable allocation of that
//! call, slab or page. The N written is the planned failure's index among
//! the call's pte_alloc_one() and THP allocations as the model counts them;
//! the kernel may allocate other things first, so the N that reproduces can
//! be larger (the header says so). One failure per call: a plan that fails
//! every call from some point on (`from=`, `op=I:all`) is marked at its
//! first. A seed carries no `fail_nth`: syzkaller's seed loader rejects
//! such programs (pkg/manager/seeds.go `parseProg`: "input has fail_nth >
//! 0"); its fuzzer then tries fail_nth on every call of a new input by
//! itself (pkg/fuzzer/job.go, `faultInjectionJob`).

use crate::base::NPAGES;
use crate::csource::emit_policy;
use crate::model::policy::Policy;
use crate::prog::{Advice, Op, Plan, Program};
use std::fmt::Write as _;

/// prog/encoding.go `encodingAddrBase`: where the text format puts the data area.
pub const ADDR_BASE: u64 = 0x7f00_0000_0000;
/// The data area's size: sys/targets/targets.go `NumPages` * `PageSize`.
pub const DATA_SIZE: u64 = 16 << 20;
/// The program's lowest range starts here; the calls' arguments live below.
const PROG_START: u64 = 2 << 20;
const HUGE: u64 = 2 << 20;

/// What to write: a reproducer (with `fail_nth`) or a seed (without).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SyzKind {
    Repro,
    Seed,
}

/// The arena ranges an op names: its page range (check::reference::op_pages,
/// for mremap and UFFDIO_MOVE the source) and a destination.
fn op_ranges(op: &Op) -> Vec<(u64, u64)> {
    let g = crate::base::Geometry::KERNEL;
    let (s, e) = crate::check::reference::op_pages(op, g);
    let mut v = Vec::new();
    if e > s && !matches!(op, Op::Fork | Op::Exit | Op::DropCaches) {
        v.push((g.addr_of(s), g.addr_of(e)));
    }
    match *op {
        Op::Mremap { new, len, .. } => v.push((new, new + len)),
        Op::UffdMove { dst, len, .. } => v.push((dst, dst + len)),
        _ => {}
    }
    v
}

/// Which arena pages are mapped (0 no, 1 read-only, 2 read-write) as the
/// program's ops leave them when they succeed: a touch becomes one
/// MADV_POPULATE call per mapped run (the executor skips unmapped pages and
/// writes to read-only ones; MADV_POPULATE stops at the first hole).
struct Maps(Vec<u8>);

impl Maps {
    fn set(&mut self, s: u64, e: u64, v: u8) {
        for p in &mut self.0[(s / 4096) as usize..(e / 4096).min(NPAGES as u64) as usize] {
            *p = v;
        }
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Mmap { start, len, .. } => self.set(start, start + len, 2),
            Op::Munmap { start, len } => self.set(start, start + len, 0),
            Op::Mprotect { start, len, write } => {
                for p in &mut self.0[(start / 4096) as usize..((start + len) / 4096) as usize] {
                    if *p != 0 {
                        *p = if write { 2 } else { 1 };
                    }
                }
            }
            Op::Mremap { old, len, new } => {
                let moved: Vec<u8> =
                    self.0[(old / 4096) as usize..((old + len) / 4096) as usize].to_vec();
                if moved.iter().all(|&p| p != 0) {
                    self.set(old, old + len, 0);
                    self.0[(new / 4096) as usize..((new + len) / 4096) as usize]
                        .copy_from_slice(&moved);
                }
            }
            _ => {}
        }
    }

    /// The runs of [s, e) a touch reaches: mapped, and writable for a write.
    fn touched(&self, s: u64, e: u64, write: bool) -> Vec<(u64, u64)> {
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for pg in s / 4096..e / 4096 {
            let v = self.0[pg as usize];
            if v == 0 || (write && v == 1) {
                continue;
            }
            match runs.last_mut() {
                Some(r) if r.1 == pg * 4096 => r.1 += 4096,
                _ => runs.push((pg * 4096, pg * 4096 + 4096)),
            }
        }
        runs
    }
}

/// The program being written: its data-area shift, the next free argument
/// slot, its resources.
struct Writer {
    out: String,
    /// Data-area offset = arena offset - shift.
    shift: u64,
    next_arg: u64,
    nres: usize,
}

impl Writer {
    /// A data-area pointer to arena offset `a` (`size`: a vma of that size).
    fn vma(&self, a: u64, size: u64) -> String {
        format!("&({:#x}/{size:#x})=nil", ADDR_BASE + a - self.shift)
    }

    /// A fresh argument slot of `size` bytes: its address.
    fn arg(&mut self, size: u64) -> String {
        let at = self.next_arg;
        self.next_arg += size.div_ceil(0x40) * 0x40;
        format!("&({:#x})", ADDR_BASE + at)
    }

    fn res(&mut self) -> String {
        self.nres += 1;
        format!("r{}", self.nres - 1)
    }

    fn call(&mut self, call: &str, fail_nth: Option<u32>, comment: &str) {
        let _ = write!(self.out, "{call}");
        if let Some(n) = fail_nth {
            let _ = write!(self.out, " (fail_nth: {n})");
        }
        let _ = writeln!(self.out, " # {comment}");
    }
}

/// Per op: the planned failure inside it, as (index among the op's
/// pte_alloc_one() and THP allocations, note), from the model's counts
/// under the program's plan.
fn planned_failures(prog: &Program, policy: &Policy) -> Vec<Option<(u32, String)>> {
    let n = prog.ops.len();
    let mut out: Vec<Option<(u32, String)>> = vec![None; n];
    let mr = crate::observe::model_run_with(prog, policy, crate::model::mm::LINUX_DEFAULT, &[]);
    // Calls made before op i, per kind (pte, thp), from the cumulative counts.
    let before = |i: usize, kind: usize| -> Option<u32> {
        if i == 0 {
            return Some(0);
        }
        mr.t.allocs[i - 1].map(|(p, t)| if kind == 0 { p } else { t })
    };
    let after = |i: usize, kind: usize| -> Option<u32> {
        mr.t.allocs[i].map(|(p, t)| if kind == 0 { p } else { t })
    };
    for (kind, plan, what) in [
        (0, &prog.faults.pte_alloc, "pte_alloc_one()"),
        (1, &prog.faults.thp, "THP allocation"),
    ] {
        // (op, index in the op) of the first planned failure, and a note.
        let hit: Option<(usize, u32, String)> = match plan {
            Plan::Never => None,
            Plan::InOp { op, nth } => Some((
                *op,
                nth.unwrap_or(1),
                match nth {
                    Some(k) => format!("plan op={op}:nth={k}: the {what} #{k} of this call"),
                    None => format!(
                        "plan op={op}:all: every {what} of this call fails; fail_nth fails one"
                    ),
                },
            )),
            Plan::FromOp(op) => Some((
                *op,
                1,
                format!(
                    "plan from-op={op}: every {what} from this call on fails; fail_nth fails one"
                ),
            )),
            Plan::Nth(_) | Plan::At(_) | Plan::From(_) => {
                let (k, rest) = match plan {
                    Plan::Nth(k) => (*k, String::new()),
                    Plan::From(k) => (*k, "; every later one fails too, fail_nth fails one".into()),
                    Plan::At(v) => (
                        v.first().copied().unwrap_or(0),
                        if v.len() > 1 {
                            format!("; the plan fails calls {plan} in all, fail_nth only this one")
                        } else {
                            String::new()
                        },
                    ),
                    _ => unreachable!("matched above"),
                };
                (0..n)
                    .find(|&i| {
                        matches!((before(i, kind), after(i, kind)), (Some(b), Some(a)) if b < k && k <= a)
                    })
                    .map(|i| {
                        let idx = k - before(i, kind).unwrap_or(0);
                        (
                            i,
                            idx,
                            format!("plan {plan}: the program's {what} #{k} is this call's #{idx}{rest}"),
                        )
                    })
            }
        };
        if let Some((op, idx, note)) = hit {
            if op < n {
                out[op] = Some(match out[op].take() {
                    Some((j, other)) => (j.min(idx), format!("{other}; {note}")),
                    None => (idx, note),
                });
            }
        }
    }
    out
}

/// The syzkaller program of `prog` (see the module doc); an error for an op
/// syzkaller cannot express or a program that does not fit its data area.
pub fn emit_syz(prog: &Program, kind: SyzKind, source: &str) -> Result<String, String> {
    let policy = emit_policy(prog)?;
    for (i, l) in prog.ops.iter().enumerate() {
        if l.mm != 0 {
            return Err(format!(
                "op {i} `{l}` runs in another process: a syzkaller program runs in one"
            ));
        }
        let why = match l.op {
            Op::Fork => "fork: a syzkaller program runs in one process",
            Op::Exit => "exit: a syzkaller program runs in one process",
            Op::Pin { .. } | Op::Unpin { .. } => {
                "pins (io_uring fixed buffers) are not written by emit-syz"
            }
            Op::Reclaim { .. } => "reclaim of one folio needs /proc/kpageflags",
            Op::DropCaches => "drop_caches is not a syzkaller call",
            _ => "",
        };
        if !why.is_empty() {
            return Err(format!("op {i} `{l}`: {why}"));
        }
    }
    let ranges: Vec<(u64, u64)> = prog.ops.iter().flat_map(|l| op_ranges(&l.op)).collect();
    let lo = ranges.iter().map(|r| r.0).min().unwrap_or(0);
    let hi = ranges.iter().map(|r| r.1).max().unwrap_or(0);
    let base = lo / HUGE * HUGE;
    if hi - base + PROG_START >= DATA_SIZE {
        return Err(format!(
            "the program spans {:#x}..{:#x} of the arena: more than syzkaller's data area holds after its first 2 MiB (14 MiB)",
            lo, hi
        ));
    }
    let fails = match kind {
        SyzKind::Repro => planned_failures(prog, &policy),
        SyzKind::Seed => vec![None; prog.ops.len()],
    };
    let mut w = Writer {
        out: String::new(),
        shift: base.wrapping_sub(PROG_START),
        next_arg: 0,
        nres: 0,
    };
    header(&mut w.out, prog, kind, source, base, &fails);
    let uses = |f: &dyn Fn(&Op) -> bool| prog.ops.iter().any(|l| f(&l.op));
    let uffd = if uses(&|o| {
        matches!(
            o,
            Op::UffdRegister { .. }
                | Op::UffdUnregister { .. }
                | Op::UffdWp { .. }
                | Op::UffdMove { .. }
        )
    }) {
        let r = w.res();
        w.call(
            &format!("{r} = userfaultfd(0x80000)"),
            None,
            "setup: the executor's userfaultfd (O_CLOEXEC)",
        );
        let mut feat = 0u64;
        if uses(&|o| matches!(o, Op::UffdMove { .. })) {
            feat |= 1 << 16; // UFFD_FEATURE_MOVE
        }
        if prog.uffd_async {
            feat |= (1 << 15) | (1 << 13); // UFFD_FEATURE_WP_ASYNC | _WP_UNPOPULATED
        }
        let a = w.arg(24);
        w.call(
            &format!("ioctl$UFFDIO_API({r}, 0xc018aa3f, {a}={{0xaa, {feat:#x}, 0x0}})"),
            None,
            "setup: UFFDIO_API",
        );
        r
    } else {
        String::new()
    };
    let pagemap = if uses(&|o| matches!(o, Op::PagemapScan { .. })) {
        let r = w.res();
        let a = w.arg(8);
        w.call(
            &format!("{r} = syz_open_procfs$pagemap(0x0, {a}='pagemap\\x00')"),
            None,
            "setup: /proc/self/pagemap",
        );
        r
    } else {
        String::new()
    };
    if uses(&|o| matches!(o, Op::Migrate { .. } | Op::Mbind { .. })) {
        let a = w.arg(8);
        w.call(
            &format!("set_mempolicy(0x2, {a}=0x1, 0x41)"),
            None,
            "setup: MPOL_BIND to node 0, as the executor",
        );
    }
    let mut maps = Maps(vec![0; NPAGES]);
    for (i, l) in prog.ops.iter().enumerate() {
        let tag = format!("op {i}: {l}");
        let f = fails[i].as_ref().map(|x| x.0);
        op_call(&mut w, &l.op, f, &tag, &uffd, &pagemap, &maps);
        maps.apply(&l.op);
    }
    Ok(w.out)
}

fn header(
    s: &mut String,
    prog: &Program,
    kind: SyzKind,
    source: &str,
    base: u64,
    fails: &[Option<(u32, String)>],
) {
    let _ = writeln!(
        s,
        "# splitfuzz program in syzkaller's text format (`splitfuzz emit-syz{}`) from {source}",
        if kind == SyzKind::Seed { " --seed" } else { "" }
    );
    let _ = writeln!(
        s,
        "# arena offset {base:#x} is data-area offset {PROG_START:#x}: address {:#x} here",
        ADDR_BASE + PROG_START
    );
    if let Some(p) = &prog.policy {
        let _ = writeln!(s, "# policy {p}");
    }
    match kind {
        SyzKind::Seed => {
            let _ = writeln!(
                s,
                "# seed: no fail_nth (syzkaller's seed loader rejects it); the fault plan was: fail pte_alloc {} / fail thp {}",
                prog.faults.pte_alloc, prog.faults.thp
            );
        }
        SyzKind::Repro => {
            for (i, f) in fails.iter().enumerate() {
                if let Some((n, note)) = f {
                    let _ = writeln!(s, "# fail_nth {n} on op {i}: {note}");
                }
            }
            if fails.iter().any(|f| f.is_some()) {
                let _ = writeln!(
                    s,
                    "# fail_nth counts every slab and page allocation of the call (executor/common_linux.h setup_fault), the model only pte_alloc_one() and THP allocations: the N that reproduces may be larger"
                );
            }
        }
    }
}

/// The syzkaller calls of one op.
fn op_call(
    w: &mut Writer,
    op: &Op,
    f: Option<u32>,
    tag: &str,
    uffd: &str,
    pagemap: &str,
    maps: &Maps,
) {
    let madvise = |w: &mut Writer, s: u64, l: u64, adv: u64, f: Option<u32>, tag: &str| {
        let c = format!("madvise({}, {l:#x}, {adv:#x})", w.vma(s, l));
        w.call(&c, f, tag);
    };
    match *op {
        Op::Mmap { start, len, thp } => {
            let c = format!(
                "mmap({}, {len:#x}, 0x3, 0x32, 0xffffffffffffffff, 0x0)",
                w.vma(start, len)
            );
            w.call(&c, f, tag);
            if thp {
                madvise(w, start, len, 0xe, None, &format!("{tag} (MADV_HUGEPAGE)"));
            }
        }
        Op::Munmap { start, len } => {
            let c = format!("munmap({}, {len:#x})", w.vma(start, len));
            w.call(&c, f, tag);
        }
        Op::Mprotect { start, len, write } => {
            let c = format!(
                "mprotect({}, {len:#x}, {})",
                w.vma(start, len),
                if write { "0x3" } else { "0x1" }
            );
            w.call(&c, f, tag);
        }
        Op::Touch { start, len, write } => {
            let runs = maps.touched(start, start + len, write);
            let note = format!(
                "{tag} (MADV_POPULATE_{}: the same faults, no tags written{})",
                if write { "WRITE" } else { "READ" },
                if runs.len() == 1 && runs[0] == (start, start + len) {
                    ""
                } else {
                    "; of the pages the executor reaches"
                }
            );
            if runs.is_empty() {
                let _ = writeln!(w.out, "# {note}: no page mapped, no call");
            }
            for (k, (s, e)) in runs.into_iter().enumerate() {
                madvise(
                    w,
                    s,
                    e - s,
                    if write { 0x17 } else { 0x16 },
                    if k == 0 { f } else { None },
                    &note,
                );
            }
        }
        Op::Madvise { start, len, advice } => {
            let adv = match advice {
                Advice::Dontneed => 0x4,
                Advice::Free => 0x8,
                Advice::Cold => 0x14,
                Advice::Pageout => 0x15,
                Advice::Collapse => 0x19,
                Advice::GuardInstall => 0x66,
                Advice::GuardRemove => 0x67,
            };
            madvise(w, start, len, adv, f, tag);
        }
        Op::Mremap { old, len, new } => {
            let c = format!(
                "mremap({}, {len:#x}, {len:#x}, 0x3, {})",
                w.vma(old, len),
                w.vma(new, len)
            );
            w.call(&c, f, tag);
        }
        Op::Migrate { addr } => {
            let page = addr / 4096 * 4096;
            let pages = w.arg(8);
            let nodes = w.arg(4);
            let status = w.arg(4);
            let c = format!(
                "move_pages(0x0, 0x1, {pages}=[{}], {nodes}=[0x1], {status}=[0x0], 0x4)",
                w.vma(page, 4096)
            );
            w.call(&c, f, &format!("{tag} (to node 1, MPOL_MF_MOVE_ALL)"));
        }
        Op::Mlock { start, len } => {
            let c = format!("mlock2({}, {len:#x}, 0x0)", w.vma(start, len));
            w.call(&c, f, tag);
        }
        Op::Munlock { start, len } => {
            let c = format!("munlock({}, {len:#x})", w.vma(start, len));
            w.call(&c, f, tag);
        }
        Op::Mbind { start, len, node } => {
            let mask = w.arg(8);
            let c = format!(
                "mbind({}, {len:#x}, 0x2, {mask}={:#x}, 0x41, 0x2)",
                w.vma(start, len),
                1u64 << node
            );
            w.call(&c, f, tag);
        }
        Op::UffdRegister { start, len } => {
            let a = w.arg(32);
            let c = format!(
                "ioctl$UFFDIO_REGISTER({uffd}, 0xc020aa00, {a}={{{{{}, {len:#x}}}, 0x2, 0x0}})",
                w.vma(start, len)
            );
            w.call(&c, f, tag);
        }
        Op::UffdUnregister { start, len } => {
            let a = w.arg(16);
            let c = format!(
                "ioctl$UFFDIO_UNREGISTER({uffd}, 0x8010aa01, {a}={{{}, {len:#x}}})",
                w.vma(start, len)
            );
            w.call(&c, f, tag);
        }
        Op::UffdWp { start, len, on } => {
            let a = w.arg(24);
            let c = format!(
                "ioctl$UFFDIO_WRITEPROTECT({uffd}, 0xc018aa06, {a}={{{{{}, {len:#x}}}, {}}})",
                w.vma(start, len),
                if on { "0x1" } else { "0x0" }
            );
            w.call(&c, f, tag);
        }
        Op::UffdMove { dst, src, len } => {
            let a = w.arg(40);
            let c = format!(
                "ioctl$UFFDIO_MOVE({uffd}, 0xc028aa05, {a}={{{}, {}, {len:#x}, 0x0, 0x0}})",
                w.vma(dst, len),
                w.vma(src, len)
            );
            w.call(&c, f, tag);
        }
        Op::PagemapScan { start, len } => {
            let a = w.arg(96);
            let end = format!("&({:#x})=nil", ADDR_BASE + start + len - w.shift);
            let c = format!(
                "ioctl$PAGEMAP_SCAN({pagemap}, 0xc0606610, {a}={{0x60, 0x3, {}, {end}, 0x0, 0x0, 0x0, 0x0, 0x0, 0x2, 0x0, 0x2}})",
                w.vma(start, len)
            );
            w.call(
                &c,
                f,
                &format!("{tag} (PM_SCAN_WP_MATCHING|PM_SCAN_CHECK_WPASYNC on PAGE_IS_WRITTEN; no output vector)"),
            );
        }
        Op::Fork
        | Op::Exit
        | Op::Pin { .. }
        | Op::Unpin { .. }
        | Op::Reclaim { .. }
        | Op::DropCaches => {
            unreachable!("rejected by emit_syz")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repro_marks_the_planned_call_and_a_seed_does_not() {
        let p = Program::parse(
            "policy lazy-v3\nfail pte_alloc nth=1\nmmap 28M 4M thp\ntouch 30464K 256K write\nmadvise 29440K 2M dontneed\n",
        )
        .unwrap();
        let r = emit_syz(&p, SyzKind::Repro, "x.txt").unwrap();
        // 28M moves to data offset 2M; 29440K (28M + 768K) is 0x2c0000 there.
        assert!(
            r.contains("madvise(&(0x7f00002c0000/0x200000)=nil, 0x200000, 0x4) (fail_nth: 1) # op 2: madvise 29440K 2M dontneed"),
            "{r}"
        );
        assert!(r.contains("mmap(&(0x7f0000200000/0x400000)=nil, 0x400000, 0x3, 0x32, 0xffffffffffffffff, 0x0) # op 0"), "{r}");
        assert_eq!(r.matches("fail_nth:").count(), 1, "{r}");
        let s = emit_syz(&p, SyzKind::Seed, "x.txt").unwrap();
        assert!(!s.contains("fail_nth:"), "{s}");
    }

    #[test]
    fn the_nth_call_of_the_program_is_counted_within_its_op() {
        // Lazy: no table at the THP fault; the split in op 2 makes call 1,
        // op 3's split makes call 2.
        let p = Program::parse(
            "policy lazy-v3\nfail pte_alloc nth=2\nmmap 0 4M thp\ntouch 0 4M write\nmadvise 0 1M dontneed\nmadvise 2M 1M dontneed\n",
        )
        .unwrap();
        let r = emit_syz(&p, SyzKind::Repro, "x.txt").unwrap();
        assert!(r.contains("(fail_nth: 1) # op 3:"), "{r}");
        assert_eq!(r.matches("fail_nth:").count(), 1, "{r}");
    }

    #[test]
    fn what_syzkaller_cannot_run_is_an_error() {
        let p = Program::parse("mmap 0 2M thp\nfork\n").unwrap();
        assert!(emit_syz(&p, SyzKind::Seed, "x")
            .unwrap_err()
            .contains("one process"));
        let p = Program::parse("mmap 0 2M thp\nmmap 30M 2M thp\n").unwrap();
        assert!(emit_syz(&p, SyzKind::Seed, "x")
            .unwrap_err()
            .contains("data area"));
    }
}
