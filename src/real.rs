//! `splitfuzz real`: the host kernel as an oracle for the `deposit` policy in the
//! kernel geometry.
//!
//! Every program runs twice: in the model (`exec::run_on` with a hook that
//! records an observation line per live mm after every op) and on the host, where
//! each mm is a real process (the program's `fork` forks again) driven over
//! pipes by this process (the controller). After every op every live process
//! reports the same observation line from the kernel's own counters:
//!
//! ```text
//! op 3 res ok
//! mm 0 pte 2 anon 513 thp 1 vmas 0-8M:rw+h pages H512p1z511.7168 data w2*513,-*7679
//! ```
//!
//! * `pte`: the change of `VmPTE` (`mm->pgtables_bytes`) since the start, in
//!   tables. The PUD and both PMD tables of the arena are allocated before the
//!   baseline (guard pages in the same 1 GiB ranges keep them), and every
//!   non-arena mapping is populated first (`MADV_POPULATE_READ`), so the change is
//!   exactly the arena's PTE tables, installed plus deposited: the model's `nr_ptes`.
//! * `anon`: pages of the `Anonymous:` lines of the arena VMAs in `smaps`
//!   (`MM_ANONPAGES` of the arena; the status `RssAnon` also counts the heap).
//! * `thp`: `AnonHugePages` of the arena VMAs / 2 MiB.
//! * `vmas`: the arena VMAs (adjacent ones with equal flags merged), `+h` for
//!   `MADV_HUGEPAGE`.
//! * `pages`: per page (`PAGEMAP_SCAN`): `.` none, `p` anon PTE, `z` zero-page
//!   PTE, `H` PMD-mapped THP, `Z` huge zero page, `s` swap (run-length coded).
//! * `data`: the tag read from every present page (`w<op>`: written by that op,
//!   `0`: zero, `x<hex>`: anything else, `-`: not present, so not read).
//!
//! The kernel decides THP allocation failures itself: when an op diverges and
//! `/proc/vmstat` shows THP allocation fallbacks during it, the model is re-run
//! with those THP allocations failed (the `fail thp at=...` plan), and only the
//! divergences that remain are reported. Runs during which khugepaged collapsed
//! pages (its `pages_collapsed` moved) are repeated.

/// println! that ends the run quietly when stdout is closed (`real ... | head`):
/// SIGPIPE stays ignored here because the controller writes to its mm processes'
/// pipes and must see EPIPE rather than die.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout(), $($t)*).is_err() {
            std::process::exit(1);
        }
    }};
}

use crate::alloc::{AllocKind, Plan};
use crate::exec::{self, OpResult, RunConfig};
use crate::mm::{Errno, Geometry, Kernel, Pmd, Pte};
use crate::oracle::tag;
use crate::policy::{Policy, Preset};
use crate::program::{fmt_size, Advice, Op, OpLine, Program, ARENA_SIZE, MAX_MMS, PAGE_SIZE};
use anyhow::{anyhow, bail, Context, Result};
use nix::libc;
use std::fmt::Write as _;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// A 1 GiB boundary that is not a 512 GiB one: the arena's two halves have their
/// own PMD tables under one PUD table, as in the model.
pub const GIB_BOUNDARY: u64 = 0x7e40_0000_0000;
/// Where arena offset 0 is mapped (2 MiB aligned).
pub const ARENA_BASE: u64 = GIB_BOUNDARY - ARENA_SIZE / 2;
/// One written page in each 1 GiB range of the arena, outside it, so the PMD
/// tables (and the PUD table) exist before the baseline and are never freed.
pub const GUARD_LO: u64 = ARENA_BASE - (4 << 20);
pub const GUARD_HI: u64 = ARENA_BASE + ARENA_SIZE + (4 << 20);
pub const NPAGES: usize = (ARENA_SIZE / PAGE_SIZE) as usize;

const MADV_COLD: i32 = 20;
const MADV_PAGEOUT: i32 = 21;
const MADV_POPULATE_READ: i32 = 22;
const MADV_COLLAPSE: i32 = 25;
/// `_IOWR('f', 16, struct pm_scan_arg)` (96 bytes).
const PAGEMAP_SCAN: u64 = 0xC060_6610;
const PAGE_IS_PRESENT: u64 = 1 << 3;
const PAGE_IS_SWAPPED: u64 = 1 << 4;
const PAGE_IS_PFNZERO: u64 = 1 << 5;
const PAGE_IS_HUGE: u64 = 1 << 6;

const THP: &str = "/sys/kernel/mm/transparent_hugepage";

// ------------------------------------------------------------------ the host

/// What this machine's kernel lets a program do, read from the machine.
#[derive(Clone, Debug)]
pub struct Host {
    pub thp_enabled: String,
    pub defrag: String,
    pub use_zero_page: bool,
    pub max_ptes_none: u32,
    pub swap_kb: u64,
    pub numa_nodes: usize,
    pub fail_nth: bool,
    pub kernel: String,
}

fn read_trim(p: &str) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

fn selected(s: &str) -> String {
    s.split_whitespace()
        .find(|w| w.starts_with('['))
        .map(|w| w.trim_matches(|c| c == '[' || c == ']').to_string())
        .unwrap_or_else(|| s.to_string())
}

impl Host {
    pub fn read() -> Host {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let swap_kb = meminfo
            .lines()
            .find(|l| l.starts_with("SwapTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let numa_nodes = std::fs::read_dir("/sys/devices/system/node")
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| {
                        let n = e.file_name();
                        let n = n.to_string_lossy();
                        n.starts_with("node") && n[4..].parse::<u32>().is_ok()
                    })
                    .count()
            })
            .unwrap_or(1)
            .max(1);
        Host {
            thp_enabled: selected(&read_trim(&format!("{THP}/enabled")).unwrap_or_default()),
            defrag: selected(&read_trim(&format!("{THP}/defrag")).unwrap_or_default()),
            use_zero_page: read_trim(&format!("{THP}/use_zero_page")).as_deref() != Some("0"),
            max_ptes_none: read_trim(&format!("{THP}/khugepaged/max_ptes_none"))
                .and_then(|s| s.parse().ok())
                .unwrap_or(511),
            swap_kb,
            numa_nodes,
            fail_nth: std::path::Path::new("/proc/thread-self/fail-nth").exists(),
            kernel: read_trim("/proc/sys/kernel/osrelease").unwrap_or_default(),
        }
    }

    /// Can THP programs run here at all (`madvise` or `always` mode)?
    pub fn thp_usable(&self) -> Result<(), String> {
        if !std::path::Path::new(THP).exists() {
            return Err(format!("{THP} is missing (no CONFIG_TRANSPARENT_HUGEPAGE)"));
        }
        match self.thp_enabled.as_str() {
            "madvise" | "always" => Ok(()),
            m => Err(format!("transparent_hugepage/enabled is [{m}]")),
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "kernel {}, THP enabled [{}] defrag [{}], use_zero_page {}, khugepaged max_ptes_none {}, swap {} kB, {} NUMA node(s), fail-nth {}",
            self.kernel,
            self.thp_enabled,
            self.defrag,
            self.use_zero_page as u8,
            self.max_ptes_none,
            self.swap_kb,
            self.numa_nodes,
            if self.fail_nth { "yes" } else { "no" }
        )
    }

    /// Why the host cannot run this op (None: it can).
    pub fn unsupported(&self, op: &Op) -> Option<&'static str> {
        match op {
            Op::Pin { .. } | Op::Unpin { .. } => {
                Some("pin/unpin: no user-space FOLL_LONGTERM pin without io_uring fixed buffers")
            }
            Op::Reclaim { .. } => {
                Some("reclaim: no user-space trigger to reclaim one given folio (and no swap)")
            }
            Op::Madvise {
                advice: Advice::Pageout,
                ..
            } if self.swap_kb == 0 => {
                Some("madvise pageout: no swap device, the host cannot swap anon pages out")
            }
            Op::Migrate { .. } if self.numa_nodes < 2 => {
                Some("migrate: one NUMA node, nowhere to migrate to")
            }
            Op::Migrate { .. } => Some("migrate: not implemented for the host (move_pages)"),
            Op::UffdWp { .. } => {
                Some("uffd-wp: writes to protected pages need a userfaultfd handler (not built)")
            }
            Op::UffdRegister { .. }
            | Op::UffdUnregister { .. }
            | Op::UffdMove { .. }
            | Op::PagemapScan { .. }
            | Op::Mlock { .. }
            | Op::Munlock { .. }
            | Op::Mbind { .. }
            | Op::DropCaches
            | Op::Madvise {
                advice: Advice::GuardInstall | Advice::GuardRemove,
                ..
            } => Some("not yet in the host executor"),
            _ => None,
        }
    }

    /// Why the host cannot run this program (None: it can).
    pub fn program_unsupported(&self, p: &Program) -> Option<String> {
        if !p.faults.pte_alloc.is_never() || !p.faults.thp.is_never() {
            return Some(if self.fail_nth {
                "fault plan: allocation failures are injected only by emit-c reproducers".into()
            } else {
                "fault plan: the kernel has no fault injection (/proc/thread-self/fail-nth)".into()
            });
        }
        if let Some(pol) = &p.policy {
            if pol != "deposit" {
                return Some(format!(
                    "policy {pol}: the host kernel is the deposit policy"
                ));
            }
        }
        if !p.overrides.is_empty() {
            return Some("override lines: the host kernel has no split-failure strategies".into());
        }
        p.ops
            .iter()
            .find_map(|l| self.unsupported(&l.op).map(|r| r.to_string()))
    }
}

// ------------------------------------------------------------------ observations

fn errno_name(e: i32) -> String {
    match e {
        libc::ENOMEM => "ENOMEM".into(),
        libc::EAGAIN => "EAGAIN".into(),
        libc::EBUSY => "EBUSY".into(),
        libc::EFAULT => "EFAULT".into(),
        libc::EINVAL => "EINVAL".into(),
        libc::EPERM => "EPERM".into(),
        libc::ENOENT => "ENOENT".into(),
        libc::EEXIST => "EEXIST".into(),
        n => format!("E{n}"),
    }
}

fn model_errno(e: Errno) -> String {
    format!("{e:?}")
}

fn data_token(v: u64, page: usize, out: &mut String) {
    if v == 0 {
        out.push('0');
    } else if (1..=NPAGES as u64).contains(&(v & 0xffff_ffff)) && v >> 32 >= 1 {
        // Written by op (v >> 32) - 1 at page (v & 0xffffffff) - 1: moved by
        // mremap when that is not this page (`w3+2560`: 2560 pages up).
        let _ = write!(out, "w{}", (v >> 32) - 1);
        let d = page as i64 - ((v & 0xffff_ffff) as i64 - 1);
        if d != 0 {
            let _ = write!(out, "{d:+}");
        }
    } else {
        let _ = write!(out, "x{v:x}");
    }
}

/// Run-length code per-page states into `out`: `H512.7680`.
fn rle_states(states: &[u8], out: &mut String) {
    let mut i = 0;
    while i < states.len() {
        let c = states[i];
        let mut j = i;
        while j < states.len() && states[j] == c {
            j += 1;
        }
        out.push(c as char);
        let _ = write!(out, "{}", j - i);
        i = j;
    }
}

/// Data tokens, run-length coded: `w2*513,-*7679`.
fn rle_data(states: &[u8], value: &dyn Fn(usize) -> u64, out: &mut String, tok: &mut String) {
    let mut prev = String::new();
    let mut count = 0;
    let mut first = true;
    for (page, &s) in states.iter().enumerate() {
        tok.clear();
        if matches!(s, b'p' | b'z' | b'H' | b'Z') {
            data_token(value(page), page, tok);
        } else {
            tok.push('-');
        }
        if *tok == prev {
            count += 1;
            continue;
        }
        if count > 0 {
            if !first {
                out.push(',');
            }
            first = false;
            let _ = write!(out, "{prev}*{count}");
        }
        prev.clear();
        prev.push_str(tok);
        count = 1;
    }
    if count > 0 {
        if !first {
            out.push(',');
        }
        let _ = write!(out, "{prev}*{count}");
    }
}

/// `(start, end, write, thp)` in arena bytes, adjacent equal ones merged.
fn fmt_vmas(v: &mut [(u64, u64, bool, bool)], out: &mut String) {
    v.sort_unstable();
    let mut merged: Vec<(u64, u64, bool, bool)> = Vec::new();
    for &x in v.iter() {
        if let Some(l) = merged.last_mut() {
            if l.1 == x.0 && l.2 == x.2 && l.3 == x.3 {
                l.1 = x.1;
                continue;
            }
        }
        merged.push(x);
    }
    if merged.is_empty() {
        out.push_str("none");
    }
    for (i, (s, e, w, h)) in merged.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{}-{}:{}{}",
            fmt_size(*s),
            fmt_size(*e),
            if *w { "rw" } else { "r" },
            if *h { "+h" } else { "" }
        );
    }
}

/// The observation line of mm `m` as the model predicts it (any geometry:
/// `pages` and `data` then count model pages; `diff` uses it in both).
pub fn model_line(k: &Kernel, m: usize) -> String {
    let mm = &k.mms[m];
    let p = k.ptrs();
    let mut states = vec![b'.'; k.pages()];
    for (slot, pmd) in mm.pmds.iter().enumerate() {
        let s = slot * p;
        match *pmd {
            Pmd::None => {}
            Pmd::Huge { .. } => states[s..s + p].fill(b'H'),
            Pmd::HugeZero => states[s..s + p].fill(b'Z'),
            Pmd::Migration { .. } => states[s..s + p].fill(b'm'),
            Pmd::Table(t) => {
                for i in 0..p {
                    states[s + i] = match k.pte(t, i) {
                        Pte::None => b'.',
                        Pte::Guard => b'g',
                        Pte::Present { .. } => b'p',
                        Pte::Zero => b'z',
                        Pte::Swap(_) => b's',
                        Pte::Migration { .. } => b'm',
                    };
                }
            }
        }
    }
    let thp = mm
        .pmds
        .iter()
        .filter(|x| matches!(x, Pmd::Huge { .. }))
        .count();
    let mut out = String::new();
    let _ = write!(
        out,
        "mm {m} pte {} anon {} thp {thp} vmas ",
        mm.nr_ptes, mm.rss_anon
    );
    let pb = k.geom.page_bytes();
    let mut vmas: Vec<_> = mm
        .vmas
        .iter()
        .map(|v| (v.start as u64 * pb, v.end as u64 * pb, v.write, v.thp))
        .collect();
    fmt_vmas(&mut vmas, &mut out);
    out.push_str(" pages ");
    rle_states(&states, &mut out);
    out.push_str(" data ");
    let mut tok = String::new();
    rle_data(&states, &|pg| k.page_value(m, pg), &mut out, &mut tok);
    out
}

/// What one run (model or host) saw: per op, the result (None: the op's mm was
/// not live, the op was not run) and the observation lines of every live mm.
#[derive(Clone, Debug, Default)]
pub struct Transcript {
    pub results: Vec<Option<String>>,
    pub obs: Vec<Vec<String>>,
}

impl Transcript {
    /// The text form `real -v` and the emitted C programs print.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for (i, r) in self.results.iter().enumerate() {
            if let Some(r) = r {
                let _ = writeln!(s, "op {i} res {r}");
                for l in &self.obs[i] {
                    let _ = writeln!(s, "{l}");
                }
            }
        }
        s
    }
}

pub struct ModelRun {
    pub t: Transcript,
    /// THP allocation calls made before / after each op.
    pub thp_calls: Vec<(u32, u32)>,
    pub violation: Option<String>,
}

/// Run the model (deposit, kernel geometry) with the given THP calls failed.
pub fn model_run(prog: &Program, thp_fail: &[u32]) -> ModelRun {
    let mut p = prog.clone();
    p.faults.pte_alloc = Plan::Never;
    p.faults.thp = if thp_fail.is_empty() {
        Plan::Never
    } else {
        Plan::At(thp_fail.to_vec())
    };
    let cfg = RunConfig::new(Policy::preset(Preset::Deposit), Geometry::KERNEL);
    let mut k = exec::build(&p, &cfg);
    let n = p.ops.len();
    let mut obs: Vec<Vec<String>> = vec![Vec::new(); n];
    let mut calls = vec![(0u32, 0u32); n];
    let mut results = Vec::new();
    let violation = exec::run_on(
        &mut k,
        &p,
        &mut results,
        &mut |k, i, phase| {
            let c = k.alloc.calls(AllocKind::Thp);
            if phase == 0 {
                calls[i].0 = c;
            } else {
                calls[i].1 = c;
                obs[i] = (0..k.mms.len())
                    .filter(|&m| k.mms[m].alive)
                    .map(|m| model_line(k, m))
                    .collect();
            }
        },
        true,
    );
    let mut res: Vec<Option<String>> = results
        .iter()
        .map(|r| match r {
            OpResult::Ok => Some("ok".to_string()),
            OpResult::Err(e) => Some(model_errno(*e)),
            OpResult::NoSuchMm => None,
            OpResult::OomLoop => Some("oom-loop".to_string()),
        })
        .collect();
    res.resize(n, None);
    ModelRun {
        t: Transcript { results: res, obs },
        thp_calls: calls,
        violation: violation.map(|v| v.to_string()),
    }
}

// ------------------------------------------------------------------ the host side

/// One arena VMA from smaps.
#[derive(Clone, Copy, Default)]
struct SmapsVma {
    start: u64,
    end: u64,
    write: bool,
    thp: bool,
    anon_kb: u64,
    thp_kb: u64,
}

/// State of one mm process (everything preallocated before the baseline, so
/// the process's own page tables do not grow while it runs).
struct Proc {
    idx: usize,
    base_pte_kb: u64,
    pagemap: RawFd,
    buf: Vec<u8>,
    vmas: Vec<SmapsVma>,
    states: Vec<u8>,
    regions: Vec<[u64; 3]>,
    out: String,
    tok: String,
    tuples: Vec<(u64, u64, bool, bool)>,
}

fn read_file(path: &[u8], buf: &mut Vec<u8>) -> std::io::Result<()> {
    buf.clear();
    let fd = unsafe { libc::open(path.as_ptr() as *const libc::c_char, libc::O_RDONLY) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    loop {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(1 << 16);
        }
        let spare = buf.capacity() - buf.len();
        let n = unsafe {
            libc::read(
                fd,
                buf.as_mut_ptr().add(buf.len()) as *mut libc::c_void,
                spare,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            unsafe { libc::close(fd) };
            return Err(e);
        }
        if n == 0 {
            break;
        }
        unsafe { buf.set_len(buf.len() + n as usize) };
    }
    unsafe { libc::close(fd) };
    Ok(())
}

fn parse_hex(s: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(s).ok()?;
    u64::from_str_radix(s, 16).ok()
}

fn field_kb(line: &[u8], key: &[u8]) -> Option<u64> {
    let rest = line.strip_prefix(key)?;
    let s = std::str::from_utf8(rest).ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// `start-end perms ...` header of a maps/smaps entry.
fn vma_header(line: &[u8]) -> Option<(u64, u64, &[u8])> {
    let first = line.first()?;
    if !first.is_ascii_hexdigit() || first.is_ascii_uppercase() {
        return None;
    }
    let sp = line.iter().position(|&c| c == b' ')?;
    let range = &line[..sp];
    let dash = range.iter().position(|&c| c == b'-')?;
    let s = parse_hex(&range[..dash])?;
    let e = parse_hex(&range[dash + 1..])?;
    let perms = line.get(sp + 1..sp + 5)?;
    Some((s, e, perms))
}

fn in_arena(s: u64, e: u64) -> bool {
    s < ARENA_BASE + ARENA_SIZE && ARENA_BASE < e
}

impl Proc {
    fn new(idx: usize) -> Proc {
        let mut p = Proc {
            idx,
            base_pte_kb: 0,
            pagemap: -1,
            buf: Vec::with_capacity(1 << 20),
            vmas: Vec::with_capacity(256),
            states: vec![b'.'; NPAGES],
            regions: vec![[0u64; 3]; NPAGES + 1],
            out: String::with_capacity(1 << 18),
            tok: String::with_capacity(64),
            tuples: Vec::with_capacity(256),
        };
        // Touch the buffers so their pages (and tables) exist before the baseline.
        p.buf.resize(p.buf.capacity(), 0);
        p.buf.clear();
        p.out.push_str(&"x".repeat(p.out.capacity()));
        p.out.clear();
        p
    }

    fn open_pagemap(&mut self) -> Result<(), String> {
        if self.pagemap >= 0 {
            unsafe { libc::close(self.pagemap) };
        }
        let fd = unsafe { libc::open(c"/proc/self/pagemap".as_ptr(), libc::O_RDONLY) };
        if fd < 0 {
            return Err(format!(
                "open /proc/self/pagemap: {}",
                std::io::Error::last_os_error()
            ));
        }
        self.pagemap = fd;
        Ok(())
    }

    fn vm_pte_kb(&mut self) -> u64 {
        if read_file(b"/proc/self/status\0", &mut self.buf).is_err() {
            return 0;
        }
        self.buf
            .split(|&c| c == b'\n')
            .find_map(|l| field_kb(l, b"VmPTE:"))
            .unwrap_or(0)
    }

    /// `MADV_POPULATE_READ` every mapping outside the arena: their page tables
    /// all exist before the baseline (and again in a forked child, where fork
    /// copied only those of VMAs with anon pages).
    fn populate_outside_arena(&mut self) {
        if read_file(b"/proc/self/maps\0", &mut self.buf).is_err() {
            return;
        }
        self.tuples.clear();
        for l in self.buf.split(|&c| c == b'\n') {
            if let Some((s, e, perms)) = vma_header(l) {
                if !in_arena(s, e) && perms[0] == b'r' && s < 0xffff_8000_0000_0000 {
                    self.tuples.push((s, e, false, false));
                }
            }
        }
        for &(s, e, _, _) in &self.tuples {
            unsafe { libc::madvise(s as *mut libc::c_void, (e - s) as usize, MADV_POPULATE_READ) };
        }
    }

    fn read_smaps(&mut self) -> Result<(), String> {
        read_file(b"/proc/self/smaps\0", &mut self.buf).map_err(|e| format!("smaps: {e}"))?;
        self.vmas.clear();
        let mut cur: Option<SmapsVma> = None;
        for l in self.buf.split(|&c| c == b'\n') {
            if let Some((s, e, perms)) = vma_header(l) {
                if let Some(v) = cur.take() {
                    self.vmas.push(v);
                }
                if in_arena(s, e) {
                    cur = Some(SmapsVma {
                        start: s,
                        end: e,
                        write: perms[1] == b'w',
                        ..Default::default()
                    });
                }
                continue;
            }
            let Some(v) = cur.as_mut() else { continue };
            if let Some(kb) = field_kb(l, b"Anonymous:") {
                v.anon_kb = kb;
            } else if let Some(kb) = field_kb(l, b"AnonHugePages:") {
                v.thp_kb = kb;
            } else if let Some(rest) = l.strip_prefix(b"VmFlags:") {
                v.thp = rest.split(|&c| c == b' ').any(|w| w == b"hg");
            }
        }
        if let Some(v) = cur.take() {
            self.vmas.push(v);
        }
        Ok(())
    }

    fn scan_pages(&mut self) -> Result<(), String> {
        self.states.fill(b'.');
        let mut start = ARENA_BASE;
        let end = ARENA_BASE + ARENA_SIZE;
        while start < end {
            let mut arg = [0u64; 12];
            arg[0] = 96;
            arg[2] = start;
            arg[3] = end;
            arg[5] = self.regions.as_mut_ptr() as u64;
            arg[6] = self.regions.len() as u64;
            arg[11] = PAGE_IS_PRESENT | PAGE_IS_SWAPPED | PAGE_IS_PFNZERO | PAGE_IS_HUGE;
            let n = unsafe { libc::ioctl(self.pagemap, PAGEMAP_SCAN as _, arg.as_mut_ptr()) };
            if n < 0 {
                return Err(format!("PAGEMAP_SCAN: {}", std::io::Error::last_os_error()));
            }
            for r in &self.regions[..n as usize] {
                let c = r[2];
                let ch = if c & PAGE_IS_PRESENT != 0 {
                    match (c & PAGE_IS_HUGE != 0, c & PAGE_IS_PFNZERO != 0) {
                        (true, true) => b'Z',
                        (true, false) => b'H',
                        (false, true) => b'z',
                        (false, false) => b'p',
                    }
                } else if c & PAGE_IS_SWAPPED != 0 {
                    b's'
                } else {
                    continue;
                };
                let a = ((r[0].max(ARENA_BASE) - ARENA_BASE) / PAGE_SIZE) as usize;
                let b = ((r[1].min(end) - ARENA_BASE) / PAGE_SIZE) as usize;
                self.states[a..b].fill(ch);
            }
            let walk_end = arg[4];
            if walk_end <= start || walk_end >= end {
                break;
            }
            start = walk_end;
        }
        Ok(())
    }

    /// The observation line of this process (same format as `model_line`).
    fn observe(&mut self) -> Result<(), String> {
        let pte_kb = self.vm_pte_kb();
        self.read_smaps()?;
        self.scan_pages()?;
        let anon: u64 = self.vmas.iter().map(|v| v.anon_kb).sum::<u64>() / 4;
        let thp: u64 = self.vmas.iter().map(|v| v.thp_kb).sum::<u64>() / 2048;
        self.out.clear();
        let d = pte_kb as i64 - self.base_pte_kb as i64;
        let _ = write!(
            self.out,
            "mm {} pte {} anon {anon} thp {thp} vmas ",
            self.idx,
            d / 4
        );
        self.tuples.clear();
        for v in &self.vmas {
            let s = v.start.max(ARENA_BASE) - ARENA_BASE;
            let e = v.end.min(ARENA_BASE + ARENA_SIZE) - ARENA_BASE;
            self.tuples.push((s, e, v.write, v.thp));
        }
        fmt_vmas(&mut self.tuples, &mut self.out);
        self.out.push_str(" pages ");
        rle_states(&self.states, &mut self.out);
        self.out.push_str(" data ");
        let read = |pg: usize| unsafe {
            std::ptr::read_volatile((ARENA_BASE + pg as u64 * PAGE_SIZE) as *const u64)
        };
        rle_data(&self.states, &read, &mut self.out, &mut self.tok);
        Ok(())
    }

    /// Writable / readable VMA at arena page `pg` (from the last smaps read).
    fn vma_at(&self, pg: usize) -> Option<bool> {
        let a = ARENA_BASE + pg as u64 * PAGE_SIZE;
        self.vmas
            .iter()
            .find(|v| v.start <= a && a < v.end)
            .map(|v| v.write)
    }
}

fn setup_arena() -> Result<(), String> {
    unsafe {
        let p = libc::mmap(
            ARENA_BASE as *mut libc::c_void,
            ARENA_SIZE as usize,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        );
        if p as u64 != ARENA_BASE {
            return Err(format!(
                "arena {ARENA_BASE:#x}+{}M is not free in this process",
                ARENA_SIZE >> 20
            ));
        }
        libc::munmap(p, ARENA_SIZE as usize);
        for g in [GUARD_LO, GUARD_HI] {
            let q = libc::mmap(
                g as *mut libc::c_void,
                PAGE_SIZE as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            );
            if q as u64 != g {
                return Err(format!("guard page {g:#x} is not free"));
            }
            std::ptr::write_volatile(q as *mut u64, 1);
        }
    }
    Ok(())
}

fn addr(off: u64) -> *mut libc::c_void {
    (ARENA_BASE + off) as *mut libc::c_void
}

fn ret(r: libc::c_int) -> String {
    if r == 0 {
        "ok".into()
    } else {
        errno_name(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

/// Run one op in this process (not fork/exit). Returns the result string.
fn host_op(p: &mut Proc, i: usize, op: &Op) -> String {
    unsafe {
        match *op {
            Op::Mmap { start, len, thp } => {
                let r = libc::mmap(
                    addr(start),
                    len as usize,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                );
                if r == libc::MAP_FAILED {
                    return ret(-1);
                }
                if thp {
                    return ret(libc::madvise(
                        addr(start),
                        len as usize,
                        libc::MADV_HUGEPAGE,
                    ));
                }
                "ok".into()
            }
            Op::Munmap { start, len } => ret(libc::munmap(addr(start), len as usize)),
            Op::Mprotect { start, len, write } => ret(libc::mprotect(
                addr(start),
                len as usize,
                if write {
                    libc::PROT_READ | libc::PROT_WRITE
                } else {
                    libc::PROT_READ
                },
            )),
            Op::Touch { start, len, write } => {
                // The model's access() returns EFAULT where the kernel would send
                // SIGSEGV: skip pages outside a VMA, and writes to read-only ones.
                if let Err(e) = p.read_smaps() {
                    return e;
                }
                let lo = (start / PAGE_SIZE) as usize;
                let hi = ((start + len) / PAGE_SIZE) as usize;
                for pg in lo..hi {
                    let Some(w) = p.vma_at(pg) else { continue };
                    let a = (ARENA_BASE + pg as u64 * PAGE_SIZE) as *mut u64;
                    if write {
                        if w {
                            std::ptr::write_volatile(a, tag(i, pg));
                        }
                    } else {
                        std::ptr::read_volatile(a);
                    }
                }
                "ok".into()
            }
            Op::Madvise { start, len, advice } => {
                let adv = match advice {
                    Advice::Dontneed => libc::MADV_DONTNEED,
                    Advice::Free => libc::MADV_FREE,
                    Advice::Cold => MADV_COLD,
                    Advice::Pageout => MADV_PAGEOUT,
                    Advice::Collapse => MADV_COLLAPSE,
                    Advice::GuardInstall => 102,
                    Advice::GuardRemove => 103,
                };
                ret(libc::madvise(addr(start), len as usize, adv))
            }
            Op::Mremap { old, len, new } => {
                let r = libc::mremap(
                    addr(old),
                    len as usize,
                    len as usize,
                    libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                    addr(new),
                );
                if r == libc::MAP_FAILED {
                    ret(-1)
                } else {
                    "ok".into()
                }
            }
            _ => "EOPNOTSUPP".into(),
        }
    }
}

// ---- pipes

struct Pipes {
    /// cmd[k] = (read, write): controller → mm k.
    cmd: Vec<(RawFd, RawFd)>,
    /// resp[k] = (read, write): mm k → controller.
    resp: Vec<(RawFd, RawFd)>,
}

fn pipe() -> Result<(RawFd, RawFd)> {
    let mut fds = [0; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        bail!("pipe: {}", std::io::Error::last_os_error());
    }
    Ok((fds[0], fds[1]))
}

fn write_all(fd: RawFd, mut b: &[u8]) -> bool {
    while !b.is_empty() {
        let n = unsafe { libc::write(fd, b.as_ptr() as *const libc::c_void, b.len()) };
        if n <= 0 {
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return false;
        }
        b = &b[n as usize..];
    }
    true
}

fn read_exact(fd: RawFd, b: &mut [u8], timeout: Option<Duration>) -> Result<(), String> {
    let mut off = 0;
    let deadline = timeout.map(|t| Instant::now() + t);
    while off < b.len() {
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as i32) };
            if r == 0 {
                return Err("timeout waiting for an mm process".into());
            }
            if r < 0 {
                continue;
            }
        }
        let n = unsafe {
            libc::read(
                fd,
                b[off..].as_mut_ptr() as *mut libc::c_void,
                b.len() - off,
            )
        };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("read: {}", std::io::Error::last_os_error()));
        }
        if n == 0 {
            return Err("an mm process died (EOF)".into());
        }
        off += n as usize;
    }
    Ok(())
}

fn send_msg(fd: RawFd, s: &str) -> bool {
    let len = (s.len() as u32).to_le_bytes();
    write_all(fd, &len) && write_all(fd, s.as_bytes())
}

fn recv_msg(fd: RawFd) -> Result<String, String> {
    let mut len = [0u8; 4];
    let t = Some(Duration::from_secs(60));
    read_exact(fd, &mut len, t)?;
    let mut b = vec![0u8; u32::from_le_bytes(len) as usize];
    read_exact(fd, &mut b, t)?;
    String::from_utf8(b).map_err(|e| e.to_string())
}

const CMD_OP: u32 = 1;
const CMD_OBSERVE: u32 = 2;
const CMD_QUIT: u32 = 3;

/// The command loop of the process that is mm `idx`. Never returns.
fn mm_process(prog: &Program, pipes: &Pipes, mut p: Proc) -> ! {
    loop {
        let idx = p.idx;
        let mut cmd = [0u8; 12];
        if read_exact(pipes.cmd[idx].0, &mut cmd, None).is_err() {
            unsafe { libc::_exit(3) };
        }
        let kind = u32::from_le_bytes(cmd[0..4].try_into().unwrap());
        let a = u32::from_le_bytes(cmd[4..8].try_into().unwrap()) as usize;
        let b = u32::from_le_bytes(cmd[8..12].try_into().unwrap()) as usize;
        let resp = pipes.resp[idx].1;
        match kind {
            CMD_OP => {
                let op = &prog.ops[a].op;
                match op {
                    Op::Fork => {
                        if b >= MAX_MMS {
                            // The program language has at most MAX_MMS mms (dup_mmap: EAGAIN).
                            send_msg(resp, "EAGAIN");
                            continue;
                        }
                        let child = b;
                        let pid = unsafe { libc::fork() };
                        if pid < 0 {
                            send_msg(resp, &ret(-1));
                            continue;
                        }
                        if pid == 0 {
                            p.idx = child;
                            let r = p.open_pagemap();
                            p.populate_outside_arena();
                            let msg = match r {
                                Ok(()) => format!("ready {}", unsafe { libc::getpid() }),
                                Err(e) => format!("error {e}"),
                            };
                            send_msg(pipes.resp[child].1, &msg);
                            continue;
                        }
                        send_msg(resp, "ok");
                    }
                    Op::Exit => {
                        send_msg(resp, "ok");
                        unsafe { libc::_exit(0) };
                    }
                    op => {
                        let r = host_op(&mut p, a, op);
                        send_msg(resp, &r);
                    }
                }
            }
            CMD_OBSERVE => {
                if let Err(e) = p.observe() {
                    p.out.clear();
                    p.out.push_str("error ");
                    p.out.push_str(&e);
                }
                send_msg(resp, &p.out);
            }
            _ => unsafe { libc::_exit(0) },
        }
    }
}

/// The host's side of one program: transcript plus per-op THP fallbacks.
pub struct HostRun {
    pub t: Transcript,
    /// THP allocation fallbacks (/proc/vmstat) during each op.
    pub fallbacks: Vec<u64>,
    /// khugepaged collapsed pages (somewhere) during the run.
    pub khugepaged: bool,
}

fn vmstat_fallbacks() -> u64 {
    let s = std::fs::read_to_string("/proc/vmstat").unwrap_or_default();
    s.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            matches!(
                k,
                "thp_fault_fallback" | "thp_collapse_alloc_failed" | "thp_zero_page_alloc_failed"
            )
            .then(|| v.trim().parse::<u64>().ok())
            .flatten()
        })
        .sum()
}

fn khugepaged_collapsed() -> u64 {
    read_trim(&format!("{THP}/khugepaged/pages_collapsed"))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn wait_exit(pid: i32) {
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if fd < 0 {
        std::thread::sleep(Duration::from_millis(20));
        return;
    }
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    unsafe {
        libc::poll(&mut pfd, 1, 10_000);
        libc::close(fd);
    }
}

/// Run a program on the host kernel.
pub fn host_run(prog: &Program) -> Result<HostRun> {
    let mut pipes = Pipes {
        cmd: Vec::new(),
        resp: Vec::new(),
    };
    for _ in 0..MAX_MMS {
        pipes.cmd.push(pipe()?);
        pipes.resp.push(pipe()?);
    }
    let close_all = |p: &Pipes| {
        for &(r, w) in p.cmd.iter().chain(p.resp.iter()) {
            unsafe {
                libc::close(r);
                libc::close(w);
            }
        }
    };
    // Allocate everything the child needs before fork.
    let proc0 = Proc::new(0);
    let pid0 = unsafe { libc::fork() };
    if pid0 < 0 {
        close_all(&pipes);
        bail!("fork: {}", std::io::Error::last_os_error());
    }
    if pid0 == 0 {
        // mm 0.
        unsafe {
            libc::signal(libc::SIGCHLD, libc::SIG_IGN);
            for k in 0..MAX_MMS {
                libc::close(pipes.cmd[k].1);
                libc::close(pipes.resp[k].0);
            }
        }
        let mut p = proc0;
        let r = setup_arena().and_then(|_| p.open_pagemap());
        p.populate_outside_arena();
        p.base_pte_kb = p.vm_pte_kb();
        let msg = match r {
            Ok(()) => format!("ready {}", unsafe { libc::getpid() }),
            Err(e) => format!("error {e}"),
        };
        send_msg(pipes.resp[0].1, &msg);
        mm_process(prog, &pipes, p);
    }
    drop(proc0);
    for k in 0..MAX_MMS {
        unsafe {
            libc::close(pipes.cmd[k].0);
            libc::close(pipes.resp[k].1);
        }
    }
    let result = drive(prog, &pipes, pid0);
    for k in 0..MAX_MMS {
        unsafe {
            libc::close(pipes.cmd[k].1);
            libc::close(pipes.resp[k].0);
        }
    }
    unsafe {
        libc::kill(pid0, libc::SIGKILL);
        let mut st = 0;
        libc::waitpid(pid0, &mut st, 0);
    }
    result
}

fn drive(prog: &Program, pipes: &Pipes, pid0: i32) -> Result<HostRun> {
    let cmd = |k: usize, kind: u32, a: u32, c: u32| -> Result<()> {
        let mut b = [0u8; 12];
        b[0..4].copy_from_slice(&kind.to_le_bytes());
        b[4..8].copy_from_slice(&a.to_le_bytes());
        b[8..12].copy_from_slice(&c.to_le_bytes());
        if !write_all(pipes.cmd[k].1, &b) {
            bail!("mm {k} is gone");
        }
        Ok(())
    };
    let recv = |k: usize| recv_msg(pipes.resp[k].0).map_err(|e| anyhow!("mm {k}: {e}"));
    let ready = |k: usize| -> Result<i32> {
        let m = recv(k)?;
        m.strip_prefix("ready ")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("mm {k}: {m}"))
    };
    let mut pids: Vec<Option<i32>> = vec![None; MAX_MMS];
    pids[0] = Some(ready(0)?);
    let _ = pid0;
    let mut nprocs = 1;
    let kh0 = khugepaged_collapsed();
    let n = prog.ops.len();
    let mut t = Transcript {
        results: vec![None; n],
        obs: vec![Vec::new(); n],
    };
    let mut fallbacks = vec![0; n];
    for (i, line) in prog.ops.iter().enumerate() {
        let m = line.mm;
        if pids.get(m).copied().flatten().is_none() {
            continue;
        }
        let fb0 = vmstat_fallbacks();
        cmd(m, CMD_OP, i as u32, nprocs as u32)?;
        let r = recv(m)?;
        match line.op {
            Op::Fork if r == "ok" => {
                pids[nprocs] = Some(ready(nprocs)?);
                nprocs += 1;
            }
            Op::Exit => {
                if let Some(pid) = pids[m].take() {
                    wait_exit(pid);
                }
            }
            _ => {}
        }
        fallbacks[i] = vmstat_fallbacks().saturating_sub(fb0);
        t.results[i] = Some(r);
        for (k, pid) in pids.iter().enumerate() {
            if pid.is_some() {
                cmd(k, CMD_OBSERVE, 0, 0)?;
                t.obs[i].push(recv(k)?);
            }
        }
    }
    for (k, pid) in pids.iter().enumerate() {
        if let Some(pid) = pid {
            cmd(k, CMD_QUIT, 0, 0)?;
            wait_exit(*pid);
        }
    }
    Ok(HostRun {
        t,
        fallbacks,
        khugepaged: khugepaged_collapsed() != kh0,
    })
}

// ------------------------------------------------------------------ comparison

#[derive(Clone, Debug)]
pub struct Divergence {
    pub op: usize,
    pub mm: Option<usize>,
    pub field: String,
    pub model: String,
    pub kernel: String,
}

fn fields(line: &str) -> Vec<(&str, &str)> {
    let w: Vec<&str> = line.split(' ').collect();
    w.chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| (c[0], c[1]))
        .collect()
}

fn expand_states(rle: &str) -> Vec<char> {
    let mut v = Vec::new();
    let mut chars = rle.chars().peekable();
    while let Some(c) = chars.next() {
        let mut n = 0usize;
        while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
            n = n * 10 + d as usize;
            chars.next();
        }
        v.extend(std::iter::repeat_n(c, n));
    }
    v
}

fn expand_data(rle: &str) -> Vec<String> {
    let mut v = Vec::new();
    for run in rle.split(',') {
        if let Some((t, n)) = run.rsplit_once('*') {
            let n: usize = n.parse().unwrap_or(0);
            v.extend(std::iter::repeat_n(t.to_string(), n));
        }
    }
    v
}

fn first_diff<T: PartialEq + std::fmt::Display>(
    a: &[T],
    b: &[T],
) -> Option<(usize, String, String)> {
    (0..a.len().max(b.len())).find_map(|i| {
        let x = a.get(i).map(|x| x.to_string()).unwrap_or_default();
        let y = b.get(i).map(|x| x.to_string()).unwrap_or_default();
        (a.get(i) != b.get(i)).then_some((i, x, y))
    })
}

/// Compare one observation line pair; the first differing field.
fn compare_line(model: &str, kernel: &str) -> Option<(String, String, String)> {
    let fm = fields(model);
    let fk = fields(kernel);
    for (i, (k, mv)) in fm.iter().enumerate() {
        let kv = fk.get(i).map(|x| x.1).unwrap_or("");
        if fk.get(i).map(|x| x.0) != Some(k) {
            return Some(("line".into(), model.into(), kernel.into()));
        }
        if mv == &kv {
            continue;
        }
        return Some(match *k {
            "pages" => {
                let (a, b) = (expand_states(mv), expand_states(kv));
                let (pg, x, y) = first_diff(&a, &b).unwrap_or((0, mv.to_string(), kv.to_string()));
                let count = |v: &[char], c: char| v.iter().filter(|x| **x == c).count();
                let summary = |v: &[char]| {
                    format!(
                        "{x} (H {} Z {} p {} z {})",
                        count(v, 'H'),
                        count(v, 'Z'),
                        count(v, 'p'),
                        count(v, 'z')
                    )
                };
                let _ = (&x, &y);
                (
                    format!("pages@{}", fmt_size(pg as u64 * PAGE_SIZE)),
                    summary(&a).replacen(
                        &x,
                        &a.get(pg).map(|c| c.to_string()).unwrap_or_default(),
                        1,
                    ),
                    summary(&b).replacen(
                        &y,
                        &b.get(pg).map(|c| c.to_string()).unwrap_or_default(),
                        1,
                    ),
                )
            }
            "data" => {
                let (a, b) = (expand_data(mv), expand_data(kv));
                let (pg, x, y) = first_diff(&a, &b).unwrap_or((0, mv.to_string(), kv.to_string()));
                (format!("data@{}", fmt_size(pg as u64 * PAGE_SIZE)), x, y)
            }
            _ => (k.to_string(), mv.to_string(), kv.to_string()),
        });
    }
    None
}

pub fn first_divergence(model: &Transcript, kernel: &Transcript) -> Option<Divergence> {
    for i in 0..model.results.len() {
        let (mr, kr) = (&model.results[i], &kernel.results[i]);
        if mr != kr {
            return Some(Divergence {
                op: i,
                mm: None,
                field: "res".into(),
                model: mr.clone().unwrap_or_else(|| "not run".into()),
                kernel: kr.clone().unwrap_or_else(|| "not run".into()),
            });
        }
        let (mo, ko) = (&model.obs[i], &kernel.obs[i]);
        for j in 0..mo.len().max(ko.len()) {
            let (a, b) = (mo.get(j), ko.get(j));
            let (a, b) = match (a, b) {
                (Some(a), Some(b)) => (a, b),
                _ => {
                    return Some(Divergence {
                        op: i,
                        mm: None,
                        field: "live-mms".into(),
                        model: mo.len().to_string(),
                        kernel: ko.len().to_string(),
                    })
                }
            };
            if let Some((field, m, k)) = compare_line(a, b) {
                let mm = fields(a).first().and_then(|x| x.1.parse().ok());
                return Some(Divergence {
                    op: i,
                    mm,
                    field,
                    model: m,
                    kernel: k,
                });
            }
        }
    }
    None
}

/// The verdict on one program.
pub enum Verdict {
    Agree {
        /// THP allocations the host failed, fed to the model.
        thp_fail: Vec<u32>,
    },
    Diverge {
        d: Divergence,
        thp_fail: Vec<u32>,
        khugepaged: bool,
    },
    Unsupported(String),
    ModelViolation(String),
}

pub struct Checked {
    pub verdict: Verdict,
    pub model: Option<Transcript>,
    pub host: Option<Transcript>,
}

/// Run a program on both sides and compare.
pub fn check_program(host: &Host, prog: &Program) -> Result<Checked> {
    if let Some(why) = host.program_unsupported(prog) {
        return Ok(Checked {
            verdict: Verdict::Unsupported(why),
            model: None,
            host: None,
        });
    }
    let mut attempts = 0;
    loop {
        attempts += 1;
        let hr = host_run(prog)?;
        let mut fails: Vec<u32> = Vec::new();
        let mut mr = model_run(prog, &fails);
        // Feed the host's THP allocation fallbacks to the model.
        let mut d = first_divergence(&mr.t, &hr.t);
        let mut rounds = 0;
        while let Some(dv) = &d {
            if rounds >= 16 || hr.fallbacks.get(dv.op).copied().unwrap_or(0) == 0 {
                break;
            }
            rounds += 1;
            let (lo, hi) = mr.thp_calls[dv.op];
            let mut best: Option<(usize, Vec<u32>, ModelRun, Option<Divergence>)> = None;
            for c in lo + 1..=hi {
                if fails.contains(&c) {
                    continue;
                }
                let mut f = fails.clone();
                f.push(c);
                f.sort_unstable();
                let r = model_run(prog, &f);
                let nd = first_divergence(&r.t, &hr.t);
                let score = nd.as_ref().map(|x| x.op).unwrap_or(usize::MAX);
                if score > dv.op && best.as_ref().is_none_or(|b| score > b.0) {
                    best = Some((score, f, r, nd));
                }
            }
            match best {
                Some((_, f, r, nd)) => {
                    fails = f;
                    mr = r;
                    d = nd;
                }
                None => break,
            }
        }
        if let Some(v) = &mr.violation {
            if d.is_none() {
                return Ok(Checked {
                    verdict: Verdict::ModelViolation(v.clone()),
                    model: Some(mr.t),
                    host: Some(hr.t),
                });
            }
        }
        let verdict = match d {
            None => Verdict::Agree { thp_fail: fails },
            Some(_) if hr.khugepaged && attempts < 3 => continue,
            Some(d) => Verdict::Diverge {
                d,
                thp_fail: fails,
                khugepaged: hr.khugepaged,
            },
        };
        return Ok(Checked {
            verdict,
            model: Some(mr.t),
            host: Some(hr.t),
        });
    }
}

// ------------------------------------------------------------------ generation

/// Programs from the model's own decoder over seeded random bytes, with the ops
/// the host cannot run removed (counted by reason) and no fault plan.
pub fn generate(
    host: &Host,
    n: usize,
    seed: u64,
    skipped: &mut std::collections::BTreeMap<String, usize>,
) -> Vec<Program> {
    use rand::{Rng, RngCore, SeedableRng};
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let len = rng.gen_range(8..200);
            let mut bytes = vec![0u8; len];
            rng.fill_bytes(&mut bytes);
            let mut p = Program::decode(&bytes);
            p.faults = Default::default();
            p.ops.retain(|l| match host.unsupported(&l.op) {
                Some(why) => {
                    let key = why.split(':').next().unwrap_or(why).to_string();
                    *skipped.entry(key).or_default() += 1;
                    false
                }
                None => true,
            });
            p.policy = Some("deposit".into());
            p
        })
        .collect()
}

// ------------------------------------------------------------------ CLI entry

fn op_text(prog: &Program, i: usize) -> String {
    prog.ops.get(i).map(OpLine::to_string).unwrap_or_default()
}

/// `splitfuzz real FILE... | --generate N --seed S [-v]`: exit 0 when every
/// program agreed, 1 on a divergence; Err (exit 2) on bad input.
pub fn real_main(
    files: &[PathBuf],
    generate_n: Option<usize>,
    seed: u64,
    verbose: bool,
) -> Result<ExitCode> {
    let host = Host::read();
    if let Err(why) = host.thp_usable() {
        bail!("the host cannot run THP programs: {why}");
    }
    say!("host: {}", host.describe());
    let mut progs: Vec<(String, Program)> = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let p = Program::parse(&text).map_err(|e| anyhow!("{}: {e}", f.display()))?;
        progs.push((f.display().to_string(), p));
    }
    let mut skipped = std::collections::BTreeMap::new();
    if let Some(n) = generate_n {
        for (i, p) in generate(&host, n, seed, &mut skipped)
            .into_iter()
            .enumerate()
        {
            progs.push((format!("gen#{i} (seed {seed})"), p));
        }
    }
    if progs.is_empty() {
        bail!("no programs: give FILEs or --generate N");
    }
    let t0 = Instant::now();
    let mut stats = Stats::default();
    for (name, p) in &progs {
        let c = check_program(&host, p)?;
        stats.add(&c, p);
        match &c.verdict {
            Verdict::Agree { thp_fail } => {
                let fb = if thp_fail.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (host THP fallbacks fed to the model: fail thp at={})",
                        thp_fail
                            .iter()
                            .map(|x| x.to_string())
                            .collect::<Vec<_>>()
                            .join(",")
                    )
                };
                say!("{name}: agree, {} ops{fb}", p.ops.len());
            }
            Verdict::Unsupported(why) => say!("{name}: unsupported on this host: {why}"),
            Verdict::ModelViolation(v) => say!("{name}: model violation (deposit): {v}"),
            Verdict::Diverge {
                d,
                thp_fail,
                khugepaged,
            } => {
                say!(
                    "{name}: DIVERGE at op {} `{}`{} field {}: model {} kernel {}{}{}",
                    d.op,
                    op_text(p, d.op),
                    d.mm.map(|m| format!(" mm {m}")).unwrap_or_default(),
                    d.field,
                    d.model,
                    d.kernel,
                    if thp_fail.is_empty() {
                        String::new()
                    } else {
                        format!(" (with fail thp at={thp_fail:?})")
                    },
                    if *khugepaged {
                        " (khugepaged collapsed pages during the run)"
                    } else {
                        ""
                    }
                );
                if verbose || generate_n.is_some() {
                    for l in p.to_text().lines() {
                        say!("    | {l}");
                    }
                }
            }
        }
        if verbose {
            if let (Some(m), Some(h)) = (&c.model, &c.host) {
                print!("{}", h.text());
                if m.text() != h.text() {
                    for l in m.text().lines() {
                        say!("model: {l}");
                    }
                }
            }
        }
    }
    stats.print(t0.elapsed(), &skipped);
    Ok(if stats.diverged > 0 || stats.violations > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[derive(Default)]
pub struct Stats {
    pub programs: usize,
    pub ops: usize,
    pub agreed: usize,
    pub diverged: usize,
    pub unsupported: usize,
    pub violations: usize,
    pub fed_fallbacks: usize,
    pub by_field: std::collections::BTreeMap<String, usize>,
    pub by_op: std::collections::BTreeMap<String, usize>,
}

impl Stats {
    pub fn add(&mut self, c: &Checked, p: &Program) {
        self.programs += 1;
        match &c.verdict {
            Verdict::Agree { thp_fail } => {
                self.agreed += 1;
                self.ops += p.ops.len();
                self.fed_fallbacks += !thp_fail.is_empty() as usize;
            }
            Verdict::Diverge { d, .. } => {
                self.diverged += 1;
                self.ops += p.ops.len();
                let f = d.field.split('@').next().unwrap_or(&d.field).to_string();
                *self.by_field.entry(f).or_default() += 1;
                let op = op_text(p, d.op);
                let kind = op.split(' ').next().unwrap_or("").to_string();
                let kind = match &p.ops[d.op].op {
                    Op::Madvise { advice, .. } => format!("madvise {}", advice.name()),
                    _ => kind,
                };
                *self.by_op.entry(kind).or_default() += 1;
            }
            Verdict::Unsupported(_) => self.unsupported += 1,
            Verdict::ModelViolation(_) => {
                self.violations += 1;
                self.ops += p.ops.len();
            }
        }
    }

    pub fn print(&self, t: Duration, skipped: &std::collections::BTreeMap<String, usize>) {
        let run = self.programs - self.unsupported;
        say!(
            "real: {} programs ({} run, {} unsupported), {} ops; agreed {} ({:.1}%), diverged {}, model violations {}; {} agreed only after feeding host THP fallbacks; {:.1}s",
            self.programs,
            run,
            self.unsupported,
            self.ops,
            self.agreed,
            if run == 0 { 100.0 } else { 100.0 * self.agreed as f64 / run as f64 },
            self.diverged,
            self.violations,
            self.fed_fallbacks,
            t.as_secs_f64()
        );
        for (f, n) in &self.by_field {
            say!("  divergences in field {f}: {n}");
        }
        for (o, n) in &self.by_op {
            say!("  divergences at op {o}: {n}");
        }
        for (why, n) in skipped {
            say!("  generator skipped {n} unsupported op(s): {why}");
        }
    }
}
