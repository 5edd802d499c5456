//! The text form of a program: one op or header line per line (`Display`,
//! `Program::to_text`) and its parser (`Program::parse`).

use super::*;
use std::fmt::Write as _;

impl Program {
    /// What op `i` is, as tallies group it: `madvise ADVICE`, else the op's
    /// first word (`teardown` past the end).
    pub fn op_kind(&self, i: usize) -> String {
        match self.ops.get(i).map(|l| &l.op) {
            Some(Op::Madvise { advice, .. }) => format!("madvise {}", advice.name()),
            Some(_) => self.op_text(i).split(' ').next().unwrap_or("").to_string(),
            None => "teardown".into(),
        }
    }

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
        if !self.faults.swap_cluster.is_never() {
            let _ = writeln!(out, "fail swap-cluster {}", self.faults.swap_cluster);
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
    let (k, v) = s.split_once('=').ok_or_else(|| {
        format!("fault plan '{s}' is not nth=N, from=N, at=N,M, op=I:nth=K, op=I:all or from-op=I")
    })?;
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
    let op = |x: &str| -> Result<usize, String> {
        x.trim().parse().map_err(|_| format!("bad op index '{x}'"))
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
        // Op-scoped: the k-th call inside op I, every call inside op I, or
        // every call from op I on (ops count from 0, as `expect op` does).
        "op" => {
            let (i, what) = v
                .split_once(':')
                .ok_or_else(|| format!("fault plan '{s}' is not op=I:nth=K or op=I:all"))?;
            let i = op(i)?;
            match what.split_once('=') {
                None if what == "all" => Ok(Plan::InOp { op: i, nth: None }),
                Some(("nth", k)) => Ok(Plan::InOp {
                    op: i,
                    nth: Some(num(k)?),
                }),
                _ => Err(format!("fault plan '{s}' is not op=I:nth=K or op=I:all")),
            }
        }
        "from-op" => Ok(Plan::FromOp(op(v)?)),
        _ => Err(format!(
            "unknown fault plan kind '{k}' (nth, from, at, op, from-op)"
        )),
    }
}

/// `mm=N` at the end of a line: the mm the op runs in (0 without it).
fn split_mm(line: &str) -> Result<(Vec<&str>, usize), String> {
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
    Ok((words, mm))
}

/// `cmd` takes exactly `n` arguments.
fn want(cmd: &str, args: &[&str], n: usize) -> Result<(), String> {
    if args.len() != n {
        Err(format!("'{cmd}' takes {n} argument(s), got {}", args.len()))
    } else {
        Ok(())
    }
}

/// A 4K-aligned arena address.
fn addr(s: &str) -> Result<u64, String> {
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
}

/// A non-empty 4K-aligned range inside the arena.
fn rng(a: &str, l: &str) -> Result<(u64, u64), String> {
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
}

fn parse_line(line: &str, p: &mut Program) -> Result<(), String> {
    let (words, mm) = split_mm(line)?;
    let (cmd, args) = (words[0], &words[1..]);
    if parse_header(cmd, args, p)? {
        return Ok(());
    }
    let op = parse_op(cmd, args)?;
    p.ops.push(OpLine { op, mm });
    Ok(())
}

/// A program-level line (policy, uffd, override, fail, expect): true if
/// `cmd` is one.
fn parse_header(cmd: &str, args: &[&str], p: &mut Program) -> Result<bool, String> {
    let want = |n: usize| want(cmd, args, n);
    match cmd {
        "policy" => {
            want(1)?;
            p.policy = Some(args[0].to_string());
            Ok(true)
        }
        "uffd" => {
            if args != ["async"] {
                return Err("'uffd' takes 'async' (UFFD_FEATURE_WP_ASYNC)".into());
            }
            p.uffd_async = true;
            Ok(true)
        }
        "override" => {
            want(1)?;
            crate::base::caller::parse_override(args[0])?;
            p.overrides.push(args[0].to_string());
            Ok(true)
        }
        "fail" => {
            want(2)?;
            let plan = parse_plan(args[1])?;
            match args[0] {
                "pte_alloc" => p.faults.pte_alloc = plan,
                "thp" => p.faults.thp = plan,
                "swap-cluster" => p.faults.swap_cluster = plan,
                k => {
                    return Err(format!(
                        "unknown allocation '{k}' (pte_alloc, thp, swap-cluster)"
                    ))
                }
            }
            Ok(true)
        }
        "expect" if args.first() == Some(&"op") => {
            let [_, n, r] = args else {
                return Err("'expect op' takes N RESULT (ok, ENOMEM, oom-loop, ...)".into());
            };
            let n: usize = n.parse().map_err(|_| format!("bad op index '{n}'"))?;
            p.expect_results.push((n, r.to_string()));
            Ok(true)
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
                            crate::base::Severity::ALL.map(|s| s.name()).join(", ")
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
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// An op line's op.
fn parse_op(cmd: &str, args: &[&str]) -> Result<Op, String> {
    let want = |n: usize| want(cmd, args, n);
    Ok(match cmd {
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
    })
}

// ---------------------------------------------------------------- encoding
