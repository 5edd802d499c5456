//! The input format: `Program { ops, fault plan }`, decoded from any byte string
//! (the `arbitrary` crate's `Unstructured`) and written/read as line-oriented text.
//!
//! Addresses and sizes are byte offsets in the arena in the kernel geometry
//! (4 KiB pages, 2 MiB PMDs). The decoder puts them on a grid of eighths of a PMD
//! (256 KiB), which every geometry represents exactly, so one program means the
//! same thing with 512 PTEs per table and with the small fuzzing geometry.

pub mod generate;
pub mod minimize;
pub mod plan;

pub use crate::base::{ARENA_PMDS, ARENA_SIZE, GRID, MAX_MMS, PAGE_SIZE, PMD_SIZE};
use arbitrary::Unstructured;
pub use plan::Plan;
use std::fmt::{self, Write as _};

/// Upper bound on ops decoded from bytes.
pub const MAX_DECODED_OPS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Advice {
    Dontneed,
    Free,
    Cold,
    Pageout,
    Collapse,
    /// MADV_GUARD_INSTALL: PTE guard markers (zaps what is mapped first).
    GuardInstall,
    /// MADV_GUARD_REMOVE
    GuardRemove,
}

impl Advice {
    pub const ALL: [Advice; 7] = [
        Advice::Dontneed,
        Advice::Free,
        Advice::Cold,
        Advice::Pageout,
        Advice::Collapse,
        Advice::GuardInstall,
        Advice::GuardRemove,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Advice::Dontneed => "dontneed",
            Advice::Free => "free",
            Advice::Cold => "cold",
            Advice::Pageout => "pageout",
            Advice::Collapse => "collapse",
            Advice::GuardInstall => "guard-install",
            Advice::GuardRemove => "guard-remove",
        }
    }
}

/// One user-level action. Ranges are `[start, start+len)` in arena bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `mmap(MAP_FIXED|MAP_PRIVATE|MAP_ANONYMOUS)`, optionally `MADV_HUGEPAGE`.
    Mmap {
        start: u64,
        len: u64,
        thp: bool,
    },
    Munmap {
        start: u64,
        len: u64,
    },
    /// `mprotect` to `PROT_READ` (write=false) or `PROT_READ|PROT_WRITE`.
    Mprotect {
        start: u64,
        len: u64,
        write: bool,
    },
    /// Read or write every page of the range (writes store a tag per op and page).
    Touch {
        start: u64,
        len: u64,
        write: bool,
    },
    Madvise {
        start: u64,
        len: u64,
        advice: Advice,
    },
    Fork,
    /// `pin_user_pages(FOLL_WRITE|FOLL_LONGTERM)` on every page.
    Pin {
        start: u64,
        len: u64,
    },
    Unpin {
        start: u64,
        len: u64,
    },
    /// `mremap(old, len, len, MREMAP_MAYMOVE|MREMAP_FIXED, new)`.
    Mremap {
        old: u64,
        len: u64,
        new: u64,
    },
    /// Reclaim the folio mapped at `addr` (shrink_folio_list → try_to_unmap).
    Reclaim {
        addr: u64,
    },
    /// Migrate the folio mapped at `addr` (migrate_pages → try_to_migrate).
    Migrate {
        addr: u64,
    },
    /// `exit_mmap` + `check_mm`.
    Exit,
    /// `UFFDIO_REGISTER` (mode WP) with this process's userfaultfd.
    UffdRegister {
        start: u64,
        len: u64,
    },
    /// `UFFDIO_UNREGISTER`
    UffdUnregister {
        start: u64,
        len: u64,
    },
    /// `UFFDIO_MOVE` (mode 0) of `[src, src+len)` to `[dst, dst+len)`.
    UffdMove {
        dst: u64,
        src: u64,
        len: u64,
    },
    /// `ioctl(PAGEMAP_SCAN)` with PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC on
    /// the written pages (category and return mask PAGE_IS_WRITTEN).
    PagemapScan {
        start: u64,
        len: u64,
    },
    /// `mlock2(start, len, 0)`
    Mlock {
        start: u64,
        len: u64,
    },
    /// `munlock(start, len)`
    Munlock {
        start: u64,
        len: u64,
    },
    /// `mbind(MPOL_BIND, {node}, MPOL_MF_MOVE)`
    Mbind {
        start: u64,
        len: u64,
        node: u8,
    },
    /// `echo 3 > /proc/sys/vm/drop_caches`: `shrink_slab()` runs the
    /// deferred-split shrinker (`deferred_split_scan()`).
    DropCaches,
    /// `UFFDIO_WRITEPROTECT` (mode WP on, or off = resolve) on a range registered
    /// with `UFFDIO_REGISTER_MODE_WP`: `change_protection()` without a VMA split.
    UffdWp {
        start: u64,
        len: u64,
        on: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpLine {
    pub op: Op,
    /// The process: 0 is the initial mm, forks get 1, 2, 3.
    pub mm: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct FaultPlan {
    pub pte_alloc: Plan,
    pub thp: Plan,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    Ok,
    /// `expect violation INVARIANT FUNCTION [SEVERITY]`.
    Violation {
        invariant: String,
        function: String,
        severity: Option<String>,
    },
}

impl Expect {
    /// Does a run's violation (or its absence) meet this expectation? `Err`
    /// says in words what differed.
    pub fn check(&self, got: Option<&crate::base::Violation>) -> Result<(), String> {
        match (self, got) {
            (Expect::Ok, None) => Ok(()),
            (Expect::Ok, Some(v)) => Err(format!(
                "expected no violation, got {} [{}]",
                v.signature(),
                v.severity
            )),
            (Expect::Violation { .. }, None) => {
                Err(format!("expected {}, got no violation", self.describe()))
            }
            (
                Expect::Violation {
                    invariant,
                    function,
                    severity,
                },
                Some(v),
            ) => {
                let sev_ok = severity.as_deref().is_none_or(|s| s == v.severity.name());
                if v.invariant.name() == invariant && v.function == *function && sev_ok {
                    Ok(())
                } else {
                    Err(format!(
                        "expected {}, got {} [{}]",
                        self.describe(),
                        v.signature(),
                        v.severity
                    ))
                }
            }
        }
    }

    /// The expectation in words (as the `expect` line says it).
    pub fn describe(&self) -> String {
        match self {
            Expect::Ok => "no violation".into(),
            Expect::Violation {
                invariant,
                function,
                severity,
            } => match severity {
                Some(s) => format!("{invariant} {function} [{s}]"),
                None => format!("{invariant} {function}"),
            },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Program {
    /// Optional `policy NAME` line (the CLI flag wins).
    pub policy: Option<String>,
    /// `uffd async`: every process's userfaultfd has UFFD_FEATURE_WP_ASYNC.
    pub uffd_async: bool,
    /// `override CALLER=STRATEGY` lines, applied on top of the policy.
    pub overrides: Vec<String>,
    pub faults: FaultPlan,
    pub ops: Vec<OpLine>,
    /// Optional `expect` line, checked by `cargo test` and `splitfuzz run`.
    pub expect: Option<Expect>,
    /// `expect op N RESULT` lines: op N (0-based) returns RESULT (`ok`, an
    /// errno name such as `ENOMEM`, `oom-loop`, `no-mm`).
    pub expect_results: Vec<(usize, String)>,
}

// ---------------------------------------------------------------- decoding

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
        let mut ops = Vec::new();
        while !u.is_empty() && ops.len() < MAX_DECODED_OPS {
            ops.push(op(&mut u));
        }
        Program {
            policy: None,
            uffd_async: flags & 1 != 0,
            overrides: Vec::new(),
            faults: FaultPlan { pte_alloc, thp },
            ops,
            expect: None,
            expect_results: Vec::new(),
        }
    }
}

// ---------------------------------------------------------------- text form

impl Program {
    /// Op `i` as its text line (`(teardown)` past the end): what reports quote.
    pub fn op_text(&self, i: usize) -> String {
        self.ops
            .get(i)
            .map(OpLine::to_string)
            .unwrap_or_else(|| "(teardown)".into())
    }
}

pub fn fmt_size(b: u64) -> String {
    if b == 0 {
        "0".into()
    } else if b % (1 << 20) == 0 {
        format!("{}M", b >> 20)
    } else if b % 1024 == 0 {
        format!("{}K", b >> 10)
    } else {
        format!("{b}")
    }
}

impl fmt::Display for OpLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = fmt_size;
        match &self.op {
            Op::Mmap { start, len, thp } => write!(
                f,
                "mmap {} {}{}",
                s(*start),
                s(*len),
                if *thp { " thp" } else { "" }
            )?,
            Op::Munmap { start, len } => write!(f, "munmap {} {}", s(*start), s(*len))?,
            Op::Mprotect { start, len, write } => write!(
                f,
                "mprotect {} {} {}",
                s(*start),
                s(*len),
                if *write { "rw" } else { "r" }
            )?,
            Op::Touch { start, len, write } => write!(
                f,
                "touch {} {} {}",
                s(*start),
                s(*len),
                if *write { "write" } else { "read" }
            )?,
            Op::Madvise { start, len, advice } => {
                write!(f, "madvise {} {} {}", s(*start), s(*len), advice.name())?
            }
            Op::Fork => write!(f, "fork")?,
            Op::Pin { start, len } => write!(f, "pin {} {}", s(*start), s(*len))?,
            Op::Unpin { start, len } => write!(f, "unpin {} {}", s(*start), s(*len))?,
            Op::Mremap { old, len, new } => {
                write!(f, "mremap {} {} {}", s(*old), s(*len), s(*new))?
            }
            Op::Reclaim { addr } => write!(f, "reclaim {}", s(*addr))?,
            Op::Migrate { addr } => write!(f, "migrate {}", s(*addr))?,
            Op::Exit => write!(f, "exit")?,
            Op::UffdRegister { start, len } => {
                write!(f, "uffd-register {} {}", s(*start), s(*len))?
            }
            Op::UffdUnregister { start, len } => {
                write!(f, "uffd-unregister {} {}", s(*start), s(*len))?
            }
            Op::UffdMove { dst, src, len } => {
                write!(f, "uffd-move {} {} {}", s(*dst), s(*src), s(*len))?
            }
            Op::PagemapScan { start, len } => write!(f, "pagemap-scan {} {}", s(*start), s(*len))?,
            Op::Mlock { start, len } => write!(f, "mlock {} {}", s(*start), s(*len))?,
            Op::Munlock { start, len } => write!(f, "munlock {} {}", s(*start), s(*len))?,
            Op::Mbind { start, len, node } => {
                write!(f, "mbind {} {} {}", s(*start), s(*len), node)?
            }
            Op::DropCaches => write!(f, "drop-caches")?,
            Op::UffdWp { start, len, on } => write!(
                f,
                "uffd-wp {} {} {}",
                s(*start),
                s(*len),
                if *on { "on" } else { "off" }
            )?,
        }
        if self.mm != 0 {
            write!(f, " mm={}", self.mm)?;
        }
        Ok(())
    }
}

impl Program {
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        if let Some(p) = &self.policy {
            let _ = writeln!(out, "policy {p}");
        }
        for o in &self.overrides {
            let _ = writeln!(out, "override {o}");
        }
        if self.uffd_async {
            out.push_str("uffd async\n");
        }
        if !self.faults.pte_alloc.is_never() {
            let _ = writeln!(out, "fail pte_alloc {}", self.faults.pte_alloc);
        }
        if !self.faults.thp.is_never() {
            let _ = writeln!(out, "fail thp {}", self.faults.thp);
        }
        for op in &self.ops {
            let _ = writeln!(out, "{op}");
        }
        match &self.expect {
            Some(Expect::Ok) => out.push_str("expect ok\n"),
            Some(Expect::Violation {
                invariant,
                function,
                severity,
            }) => {
                let sev = severity
                    .as_deref()
                    .map(|s| format!(" {s}"))
                    .unwrap_or_default();
                let _ = writeln!(out, "expect violation {invariant} {function}{sev}");
            }
            None => {}
        }
        for (i, r) in &self.expect_results {
            let _ = writeln!(out, "expect op {i} {r}");
        }
        out
    }

    /// Parse the text form. Errors name the line.
    pub fn parse(text: &str) -> Result<Program, String> {
        let mut p = Program::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            parse_line(line, &mut p)
                .map_err(|e| format!("line {}: {e}: '{}'", i + 1, raw.trim()))?;
        }
        Ok(p)
    }
}

pub fn parse_size(s: &str) -> Result<u64, String> {
    let (num, mul) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 1 << 20),
        Some(b'G' | b'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let n: u64 = if let Some(h) = num.strip_prefix("0x") {
        u64::from_str_radix(h, 16).map_err(|_| format!("bad size '{s}'"))?
    } else {
        num.parse().map_err(|_| format!("bad size '{s}'"))?
    };
    n.checked_mul(mul)
        .ok_or_else(|| format!("size '{s}' overflows"))
}

fn parse_plan(s: &str) -> Result<Plan, String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("fault plan '{s}' is not nth=N, from=N or at=N,M"))?;
    let num = |x: &str| -> Result<u32, String> {
        let n: u32 = x
            .trim()
            .parse()
            .map_err(|_| format!("bad call index '{x}'"))?;
        if n == 0 {
            return Err("call indices start at 1".into());
        }
        Ok(n)
    };
    match k {
        "nth" => Ok(Plan::Nth(num(v)?)),
        "from" => Ok(Plan::From(num(v)?)),
        "at" => {
            let mut l = v.split(',').map(num).collect::<Result<Vec<_>, _>>()?;
            l.sort_unstable();
            l.dedup();
            Ok(Plan::At(l))
        }
        _ => Err(format!("unknown fault plan kind '{k}' (nth, from, at)")),
    }
}

fn parse_line(line: &str, p: &mut Program) -> Result<(), String> {
    let mut words: Vec<&str> = line.split_whitespace().collect();
    let mut mm = 0usize;
    if let Some(last) = words.last() {
        if let Some(n) = last.strip_prefix("mm=") {
            mm = n.parse().map_err(|_| format!("bad mm '{n}'"))?;
            if mm >= MAX_MMS {
                return Err(format!("mm={mm} out of range (0..{})", MAX_MMS - 1));
            }
            words.pop();
        }
    }
    let cmd = words[0];
    let args = &words[1..];
    let want = |n: usize| -> Result<(), String> {
        if args.len() != n {
            Err(format!("'{cmd}' takes {n} argument(s), got {}", args.len()))
        } else {
            Ok(())
        }
    };
    let addr = |s: &str| -> Result<u64, String> {
        let a = parse_size(s)?;
        if a % PAGE_SIZE != 0 {
            return Err(format!("address {s} is not 4K aligned"));
        }
        if a >= ARENA_SIZE {
            return Err(format!(
                "address {s} is outside the {}M arena",
                ARENA_SIZE >> 20
            ));
        }
        Ok(a)
    };
    let rng = |a: &str, l: &str| -> Result<(u64, u64), String> {
        let start = addr(a)?;
        let len = parse_size(l)?;
        if len == 0 || len % PAGE_SIZE != 0 {
            return Err(format!("length {l} must be a non-zero multiple of 4K"));
        }
        if start + len > ARENA_SIZE {
            return Err(format!(
                "range {a}+{l} runs past the {}M arena",
                ARENA_SIZE >> 20
            ));
        }
        Ok((start, len))
    };
    let op = match cmd {
        "policy" => {
            want(1)?;
            p.policy = Some(args[0].to_string());
            return Ok(());
        }
        "uffd" => {
            if args != ["async"] {
                return Err("'uffd' takes 'async' (UFFD_FEATURE_WP_ASYNC)".into());
            }
            p.uffd_async = true;
            return Ok(());
        }
        "override" => {
            want(1)?;
            crate::base::caller::parse_override(args[0])?;
            p.overrides.push(args[0].to_string());
            return Ok(());
        }
        "fail" => {
            want(2)?;
            let plan = parse_plan(args[1])?;
            match args[0] {
                "pte_alloc" => p.faults.pte_alloc = plan,
                "thp" => p.faults.thp = plan,
                k => return Err(format!("unknown allocation '{k}' (pte_alloc, thp)")),
            }
            return Ok(());
        }
        "expect" if args.first() == Some(&"op") => {
            let [_, n, r] = args else {
                return Err("'expect op' takes N RESULT (ok, ENOMEM, oom-loop, ...)".into());
            };
            let n: usize = n.parse().map_err(|_| format!("bad op index '{n}'"))?;
            p.expect_results.push((n, r.to_string()));
            return Ok(());
        }
        "expect" => {
            p.expect = Some(match args {
                ["ok"] => Expect::Ok,
                ["violation", inv, func] => Expect::Violation {
                    invariant: inv.to_string(),
                    function: func.to_string(),
                    severity: None,
                },
                ["violation", inv, func, sev] => {
                    if crate::base::Severity::from_name(sev).is_none() {
                        return Err(format!(
                            "unknown severity '{sev}' ({})",
                            crate::base::Severity::ALL
                                .map(|s| s.name())
                                .join(", ")
                        ));
                    }
                    Expect::Violation {
                        invariant: inv.to_string(),
                        function: func.to_string(),
                        severity: Some(sev.to_string()),
                    }
                }
                _ => {
                    return Err(
                        "expect takes 'ok' or 'violation INVARIANT FUNCTION [SEVERITY]'".into(),
                    )
                }
            });
            return Ok(());
        }
        "mmap" => {
            if args.len() == 3 && args[2] != "thp" {
                return Err(format!("mmap flag '{}' (only 'thp')", args[2]));
            }
            if args.len() != 2 && args.len() != 3 {
                return Err("mmap takes START LEN [thp]".into());
            }
            let (start, len) = rng(args[0], args[1])?;
            Op::Mmap {
                start,
                len,
                thp: args.len() == 3,
            }
        }
        "munmap" => {
            want(2)?;
            let (start, len) = rng(args[0], args[1])?;
            Op::Munmap { start, len }
        }
        "mprotect" => {
            want(3)?;
            let (start, len) = rng(args[0], args[1])?;
            let write = match args[2] {
                "r" => false,
                "rw" => true,
                x => return Err(format!("protection '{x}' (r or rw)")),
            };
            Op::Mprotect { start, len, write }
        }
        "touch" => {
            want(3)?;
            let (start, len) = rng(args[0], args[1])?;
            let write = match args[2] {
                "read" => false,
                "write" => true,
                x => return Err(format!("access '{x}' (read or write)")),
            };
            Op::Touch { start, len, write }
        }
        "madvise" => {
            want(3)?;
            let (start, len) = rng(args[0], args[1])?;
            let advice = Advice::ALL
                .iter()
                .copied()
                .find(|a| a.name() == args[2])
                .ok_or_else(|| {
                    format!(
                        "advice '{}' ({})",
                        args[2],
                        Advice::ALL.map(|a| a.name()).join(", ")
                    )
                })?;
            Op::Madvise { start, len, advice }
        }
        "fork" => {
            want(0)?;
            Op::Fork
        }
        "exit" => {
            want(0)?;
            Op::Exit
        }
        "pin" | "unpin" | "uffd-register" | "uffd-unregister" | "pagemap-scan" | "mlock"
        | "munlock" => {
            want(2)?;
            let (start, len) = rng(args[0], args[1])?;
            match cmd {
                "pin" => Op::Pin { start, len },
                "unpin" => Op::Unpin { start, len },
                "uffd-register" => Op::UffdRegister { start, len },
                "uffd-unregister" => Op::UffdUnregister { start, len },
                "pagemap-scan" => Op::PagemapScan { start, len },
                "mlock" => Op::Mlock { start, len },
                _ => Op::Munlock { start, len },
            }
        }
        "uffd-move" => {
            want(3)?;
            let (src, len) = rng(args[1], args[2])?;
            let (dst, _) = rng(args[0], args[2])?;
            Op::UffdMove { dst, src, len }
        }
        "mbind" => {
            want(3)?;
            let (start, len) = rng(args[0], args[1])?;
            let node = match args[2] {
                "0" => 0,
                "1" => 1,
                x => return Err(format!("node '{x}' (0 or 1)")),
            };
            Op::Mbind { start, len, node }
        }
        "drop-caches" => {
            want(0)?;
            Op::DropCaches
        }
        "walk" => {
            return Err("'walk' was removed: no walker a process can reach on anonymous memory takes the splitting path (use pagemap-scan or madvise guard-install)".into())
        }
        "uffd-wp" => {
            want(3)?;
            let (start, len) = rng(args[0], args[1])?;
            let on = match args[2] {
                "on" => true,
                "off" => false,
                x => return Err(format!("uffd-wp mode '{x}' (on or off)")),
            };
            Op::UffdWp { start, len, on }
        }
        "mremap" => {
            want(3)?;
            let (old, len) = rng(args[0], args[1])?;
            let (new, _) = rng(args[2], args[1])?;
            Op::Mremap { old, len, new }
        }
        "reclaim" => {
            want(1)?;
            Op::Reclaim {
                addr: addr(args[0])?,
            }
        }
        "migrate" => {
            want(1)?;
            Op::Migrate {
                addr: addr(args[0])?,
            }
        }
        other => return Err(format!("unknown op '{other}'")),
    };
    p.ops.push(OpLine { op, mm });
    Ok(())
}

// ---------------------------------------------------------------- encoding

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
    out.push(p.uffd_async as u8);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_from_the_issue_parses() {
        let t = "policy lazy-v3\nfail pte_alloc nth=2\nmmap 0 8M thp\ntouch 0 4M write\nfork\npin 2M 4K\n\
                 mprotect 1M 4K r mm=1\nmadvise 6M 8K dontneed\nmremap 0 2M 10M\nreclaim 2M\nmigrate 4M\n\
                 uffd-register 0 8M\nmunmap 0 8M\nexpect violation no-silent-skip zap_pmd_range # c\n";
        let p = Program::parse(t).unwrap();
        assert_eq!(p.ops.len(), 11);
        assert_eq!(p.ops[4].mm, 1);
        assert_eq!(Program::parse(&p.to_text()).unwrap(), p);
    }

    #[test]
    fn errors_name_the_line() {
        let e = Program::parse("mmap 0 8M\ntouch 0 4M sideways\n").unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
        assert!(Program::parse("mmap 0 64M").is_err());
        assert!(Program::parse("fail pte_alloc nth=0").is_err());
        assert!(Program::parse("mmap 3 4K").is_err());
        assert!(Program::parse("frobnicate").is_err());
        assert!(Program::parse("touch 0 4K write mm=9").is_err());
    }

    #[test]
    fn any_bytes_decode_and_roundtrip_through_text() {
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for n in 0..2000 {
            let bytes: Vec<u8> = (0..(n % 200))
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let p = Program::decode(&bytes);
            let back = Program::parse(&p.to_text()).unwrap();
            assert_eq!(back, p, "{}", p.to_text());
            let bytes = encode(&p).unwrap();
            assert_eq!(Program::decode(&bytes), p);
        }
    }
}
