//! One mm process of a program: its preallocated state and how it observes
//! itself (smaps, pagemap, PAGEMAP_SCAN, kpageflags) into an observation line.

use super::{limit::*, sys::*};
use crate::base::NPAGES;
use crate::observe::line::*;
use crate::prog::{ARENA_SIZE, PAGE_SIZE};
use anyhow::Result;
use nix::libc;
use std::fmt::Write as _;
use std::os::fd::RawFd;
// ------------------------------------------------------------------ the host side

/// One arena VMA from smaps.
#[derive(Clone, Copy, Default)]
pub(crate) struct SmapsVma {
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) write: bool,
    pub(crate) thp: bool,
    pub(crate) anon_kb: u64,
    pub(crate) thp_kb: u64,
}

/// State of one mm process (everything preallocated before the baseline, so
/// the process's own page tables do not grow while it runs).
pub(crate) struct Proc {
    pub(crate) idx: usize,
    pub(crate) base_pte_kb: u64,
    pub(crate) pagemap: RawFd,
    /// userfaultfd (write-protect) and io_uring (pins) of this mm, or -1.
    pub(crate) uffd: RawFd,
    pub(crate) uffd_err: i32,
    /// The program has uffd ops (this process gets a userfaultfd), with
    /// `uffd async`; UFFD_FEATURE_MOVE is available.
    pub(crate) uffd_use: bool,
    pub(crate) uffd_async: bool,
    pub(crate) uffd_move: bool,
    /// The program installs guard regions: touches skip their pages.
    pub(crate) guard_use: bool,
    /// The uffd handler thread's stack (touched before the baseline).
    pub(crate) handler_stack: Vec<u8>,
    pub(crate) ring: RawFd,
    pub(crate) ring_err: i32,
    /// (page, slot) of every page pinned through this mm's ring.
    pub(crate) pins: Vec<(usize, u32)>,
    pub(crate) free_slots: Vec<u32>,
    pub(crate) kpageflags: RawFd,
    /// The memcg trigger's control files (opened before the first op).
    pub(crate) limit: Option<Limit>,
    /// A limit to set once the op has read what it needs (`touch` reads
    /// smaps, whose seq_file buffer is a charged allocation): the slack.
    pub(crate) limit_pending: Option<u64>,
    pub(crate) kpagecount: RawFd,
    /// The program's KCOV buffers (`kcov.rs`), if coverage is collected.
    pub(crate) kcov: Option<super::kcov::Kcov>,
    pub(crate) pm: Vec<u64>,
    pub(crate) kf: Vec<u64>,
    pub(crate) buf: Vec<u8>,
    pub(crate) vmas: Vec<SmapsVma>,
    pub(crate) states: Vec<u8>,
    pub(crate) regions: Vec<[u64; 3]>,
    pub(crate) out: String,
    pub(crate) tok: String,
    pub(crate) tuples: Vec<(u64, u64, bool, bool)>,
}

pub(crate) fn read_file(path: &[u8], buf: &mut Vec<u8>) -> std::io::Result<()> {
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

pub(crate) fn parse_hex(s: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(s).ok()?;
    u64::from_str_radix(s, 16).ok()
}

pub(crate) fn field_kb(line: &[u8], key: &[u8]) -> Option<u64> {
    let rest = line.strip_prefix(key)?;
    let s = std::str::from_utf8(rest).ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// `start-end perms ...` header of a maps/smaps entry.
pub(crate) fn vma_header(line: &[u8]) -> Option<(u64, u64, &[u8])> {
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

pub(crate) fn in_arena(s: u64, e: u64) -> bool {
    s < ARENA_BASE + ARENA_SIZE && ARENA_BASE < e
}

impl Proc {
    pub(crate) fn new(idx: usize) -> Proc {
        let mut p = Proc {
            idx,
            base_pte_kb: 0,
            pagemap: -1,
            uffd: -1,
            uffd_err: 0,
            uffd_use: false,
            uffd_async: false,
            uffd_move: false,
            guard_use: false,
            handler_stack: vec![1u8; HANDLER_STACK],
            ring: -1,
            ring_err: 0,
            pins: Vec::with_capacity(PIN_SLOTS as usize),
            free_slots: (0..PIN_SLOTS).rev().collect(),
            kpageflags: -1,
            limit: None,
            limit_pending: None,
            kpagecount: -1,
            kcov: None,
            pm: vec![0; NPAGES],
            kf: vec![0; 1024],
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

    /// This mm's own userfaultfd and io_uring (a forked child drops its
    /// parent's: their registrations and pins belong to the parent's mm), and
    /// the page-flag files. Before the baseline: none of it maps memory.
    pub(crate) fn open_fds(&mut self) {
        for fd in [self.uffd, self.ring, self.kpageflags, self.kpagecount] {
            if fd >= 0 {
                unsafe { libc::close(fd) };
            }
        }
        (self.uffd, self.uffd_err) = if self.uffd_use {
            // UFFD_FEATURE_MOVE where the kernel has it (6.8+).
            let r = match uffd_open(self.uffd_async, true) {
                Err(libc::EINVAL) => {
                    self.uffd_move = false;
                    uffd_open(self.uffd_async, false)
                }
                r => {
                    self.uffd_move = true;
                    r
                }
            };
            match r {
                Ok((fd, _)) => (fd, 0),
                Err(e) => (-1, e),
            }
        } else {
            (-1, libc::ENOSYS)
        };
        (self.ring, self.ring_err) = match ring_open() {
            Ok(fd) => (fd, 0),
            Err(e) => (-1, e),
        };
        self.pins.clear();
        self.free_slots = (0..PIN_SLOTS).rev().collect();
        let open = |p: &std::ffi::CStr| unsafe {
            libc::open(p.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC)
        };
        self.kpageflags = open(c"/proc/kpageflags");
        self.kpagecount = open(c"/proc/kpagecount");
    }

    /// Start the uffd handler thread (not with `uffd async`) on the
    /// preallocated stack: creating it maps nothing. Forked children run this
    /// again for their own userfaultfd (fork copies only the calling thread).
    pub(crate) fn start_handler(&mut self) -> Result<(), String> {
        if self.uffd < 0 || self.uffd_async {
            return Ok(());
        }
        unsafe {
            let mut attr: libc::pthread_attr_t = std::mem::zeroed();
            libc::pthread_attr_init(&mut attr);
            libc::pthread_attr_setstack(
                &mut attr,
                self.handler_stack.as_mut_ptr() as *mut libc::c_void,
                HANDLER_STACK,
            );
            let mut t: libc::pthread_t = std::mem::zeroed();
            let r = libc::pthread_create(
                &mut t,
                &attr,
                uffd_handler,
                self.uffd as usize as *mut libc::c_void,
            );
            libc::pthread_attr_destroy(&mut attr);
            if r != 0 {
                return Err(format!("uffd handler thread: {}", errno_name(r)));
            }
        }
        Ok(())
    }

    /// Trace this task (mm `idx`) into its KCOV buffer, if coverage is on.
    pub(crate) fn enable_kcov(&self) -> Result<(), String> {
        match &self.kcov {
            Some(k) => k.enable(self.idx),
            None => Ok(()),
        }
    }

    pub(crate) fn open_pagemap(&mut self) -> Result<(), String> {
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

    pub(crate) fn vm_pte_kb(&mut self) -> u64 {
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
    pub(crate) fn populate_outside_arena(&mut self) {
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

    pub(crate) fn read_smaps(&mut self) -> Result<(), String> {
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

    pub(crate) fn scan_pages(&mut self) -> Result<(), String> {
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
        // PAGEMAP_SCAN calls every non-present, non-none PTE "swapped": PTE
        // markers too. /proc/self/pagemap tells them apart: a guard marker has
        // PM_GUARD_REGION (`g`), a uffd-wp marker is a swap entry of the
        // SWP_PTE_MARKER type, which no swap device has (`.`, as the model
        // keeps it: a none PTE with its uffd-wp bit).
        if self.states.contains(&b's') {
            if !self.read_pagemap(0, NPAGES) {
                return Err("pagemap read failed".into());
            }
            for pg in 0..NPAGES {
                if self.states[pg] != b's' {
                    continue;
                }
                let e = self.pm[pg];
                if e & PM_GUARD_REGION != 0 {
                    self.states[pg] = b'g';
                } else if e & PM_SWAP != 0 && (e & PM_PFN_MASK) & 0x1f >= MARKER_SWAP_TYPE_MIN {
                    self.states[pg] = b'.';
                }
            }
        }
        Ok(())
    }

    /// The observation line of this process (same format as `model_line`).
    pub(crate) fn observe(&mut self) -> Result<(), String> {
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
    pub(crate) fn vma_at(&self, pg: usize) -> Option<bool> {
        let a = ARENA_BASE + pg as u64 * PAGE_SIZE;
        self.vmas
            .iter()
            .find(|v| v.start <= a && a < v.end)
            .map(|v| v.write)
    }
}
