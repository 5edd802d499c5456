//! The observation line: what a run (the model, the host, the guest) reports
//! after every op, and the transcript of a run.
//!
//! Every program runs twice: in the model (`run::run_on` with a hook that
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

use crate::base::NPAGES;
use crate::model::mm::Errno;
use crate::prog::fmt_size;
use nix::libc;
use std::fmt::Write as _;
// ------------------------------------------------------------------ observations

pub(crate) fn errno_name(e: i32) -> String {
    match e {
        libc::ENOMEM => "ENOMEM".into(),
        libc::EAGAIN => "EAGAIN".into(),
        libc::EBUSY => "EBUSY".into(),
        libc::EFAULT => "EFAULT".into(),
        libc::EINVAL => "EINVAL".into(),
        libc::EPERM => "EPERM".into(),
        libc::ENOENT => "ENOENT".into(),
        libc::ENOSPC => "ENOSPC".into(),
        libc::EOPNOTSUPP => "EOPNOTSUPP".into(),
        libc::EACCES => "EACCES".into(),
        libc::ESRCH => "ESRCH".into(),
        libc::EEXIST => "EEXIST".into(),
        n => format!("E{n}"),
    }
}

pub(crate) fn model_errno(e: Errno) -> String {
    format!("{e:?}")
}

pub(crate) fn data_token(v: u64, page: usize, out: &mut String) {
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
pub(crate) fn rle_states(states: &[u8], out: &mut String) {
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
pub(crate) fn rle_data(
    states: &[u8],
    value: &dyn Fn(usize) -> u64,
    out: &mut String,
    tok: &mut String,
) {
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
pub(crate) fn fmt_vmas(v: &mut [(u64, u64, bool, bool)], out: &mut String) {
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

/// What one run (model or host) saw: per op, the result (None: the op's mm was
/// not live, the op was not run) and the observation lines of every live mm.
#[derive(Clone, Debug, Default)]
pub struct Transcript {
    pub results: Vec<Option<String>>,
    pub obs: Vec<Vec<String>>,
    /// Allocation calls counted after each op, (pte_alloc_one, THP), where
    /// the side counts them (the model always; a kernel with our patch).
    pub allocs: Vec<Option<(u32, u32)>>,
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
