//! Ops as system calls, run by the mm process the op names.

use super::{probe::*, proc::*, sys::*};
use crate::base::NPAGES;
use crate::check::reference::tag;
use crate::observe::line::*;
use crate::prog::{Advice, Op, ARENA_SIZE, PAGE_SIZE};
use anyhow::Result;
use nix::libc;
pub(crate) fn setup_arena() -> Result<(), String> {
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

pub(crate) fn addr(off: u64) -> *mut libc::c_void {
    (ARENA_BASE + off) as *mut libc::c_void
}

pub(crate) fn ret(r: libc::c_int) -> String {
    if r == 0 {
        "ok".into()
    } else {
        errno_name(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

/// Run one op in this process (not fork/exit). Returns the result string.
pub(crate) fn host_op(p: &mut Proc, i: usize, op: &Op) -> String {
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
                // SIGSEGV: skip pages outside a VMA, writes to read-only ones,
                // and guard regions (MADV_GUARD_INSTALL markers).
                if let Err(e) = p.read_smaps() {
                    return e;
                }
                let lo = (start / PAGE_SIZE) as usize;
                let hi = ((start + len) / PAGE_SIZE) as usize;
                let guards = p.guard_use && p.read_pagemap(lo, hi);
                // The memcg trigger: the limit starts here, after the reads.
                if let (Some(l), Some(slack)) = (p.limit, p.limit_pending.take()) {
                    l.set(slack);
                }
                for pg in lo..hi {
                    let Some(w) = p.vma_at(pg) else { continue };
                    if guards && p.pm[pg - lo] & PM_GUARD_REGION != 0 {
                        continue;
                    }
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
            Op::Pin { start, len } => p.pin(start, len),
            Op::Unpin { start, len } => p.unpin(start, len),
            Op::Reclaim { addr } => p.reclaim(addr),
            Op::Migrate { addr } => p.migrate(addr),
            Op::UffdWp { start, len, on } => p.uffd_wp(start, len, on),
            Op::UffdRegister { start, len } => p.uffd_register(start, len),
            Op::UffdUnregister { start, len } => p.uffd_unregister(start, len),
            Op::UffdMove { dst, src, len } => p.uffd_move(dst, src, len),
            Op::PagemapScan { start, len } => p.pagemap_scan(start, len),
            Op::Mlock { start, len } => {
                ret(libc::syscall(libc::SYS_mlock2, addr(start), len as usize, 0) as libc::c_int)
            }
            Op::Munlock { start, len } => ret(libc::munlock(addr(start), len as usize)),
            Op::Mbind { start, len, node } => p.mbind(start, len, node),
            Op::DropCaches => match write_file("/proc/sys/vm/drop_caches", "3") {
                Ok(()) => "ok".into(),
                Err(e) => format!("{UNSUPPORTED}drop-caches: {e}"),
            },
            _ => "EOPNOTSUPP".into(),
        }
    }
}

/// The result of an op the executor cannot run here: the program ends there.
pub const UNSUPPORTED: &str = "UNSUPPORTED ";

impl Proc {
    /// pagemap entries of arena pages `[lo, hi)` into `self.pm[..hi - lo]`.
    pub(crate) fn read_pagemap(&mut self, lo: usize, hi: usize) -> bool {
        let base = ARENA_BASE / PAGE_SIZE + lo as u64;
        pread_u64s(self.pagemap, base, &mut self.pm[..hi - lo])
    }

    /// `pin START LEN`: one io_uring fixed buffer per page, each pinned by
    /// `pin_user_pages(FOLL_WRITE|FOLL_LONGTERM)` (io_sqe_buffer_register()),
    /// page by page, stopping at the first failure as the model does.
    pub(crate) fn pin(&mut self, start: u64, len: u64) -> String {
        if self.ring < 0 {
            return format!(
                "{UNSUPPORTED}pin: io_uring_setup: {}",
                errno_name(self.ring_err)
            );
        }
        for pg in start / PAGE_SIZE..(start + len) / PAGE_SIZE {
            let Some(slot) = self.free_slots.pop() else {
                return format!("{UNSUPPORTED}pin: more than {PIN_SLOTS} pinned pages");
            };
            match ring_set_slot(self.ring, slot, ARENA_BASE + pg * PAGE_SIZE) {
                Ok(()) => self.pins.push((pg as usize, slot)),
                Err(e) => {
                    self.free_slots.push(slot);
                    return errno_name(e);
                }
            }
        }
        "ok".into()
    }

    /// `unpin START LEN`: release every pin this mm took on pages in the range.
    pub(crate) fn unpin(&mut self, start: u64, len: u64) -> String {
        if self.ring < 0 {
            return format!(
                "{UNSUPPORTED}pin: io_uring_setup: {}",
                errno_name(self.ring_err)
            );
        }
        let (lo, hi) = (
            (start / PAGE_SIZE) as usize,
            ((start + len) / PAGE_SIZE) as usize,
        );
        let mut i = 0;
        while i < self.pins.len() {
            let (pg, slot) = self.pins[i];
            if pg >= lo && pg < hi {
                if let Err(e) = ring_set_slot(self.ring, slot, 0) {
                    return format!("unpin slot {slot}: {}", errno_name(e));
                }
                self.free_slots.push(slot);
                self.pins.swap_remove(i);
            } else {
                i += 1;
            }
        }
        "ok".into()
    }

    /// Drop every pin (before exit: the ring's own teardown is asynchronous).
    pub(crate) fn release_pins(&mut self) {
        if self.ring >= 0 && !self.pins.is_empty() {
            unsafe {
                libc::syscall(
                    libc::SYS_io_uring_register,
                    self.ring,
                    IORING_UNREGISTER_BUFFERS,
                    std::ptr::null_mut::<libc::c_void>(),
                    0u32,
                )
            };
            self.pins.clear();
        }
    }

    /// The folio mapped at arena page `pg`: its pfn range and whether it is
    /// the (huge) zero page. None: nothing present there.
    pub(crate) fn folio_of(&mut self, pg: usize) -> Result<Option<(u64, u64)>, String> {
        if !self.read_pagemap(pg, pg + 1) {
            return Err("pagemap read failed".into());
        }
        let e = self.pm[0];
        if e & PM_PRESENT == 0 {
            return Ok(None);
        }
        let pfn = e & PM_PFN_MASK;
        if pfn == 0 {
            return Err("pagemap shows no PFNs (needs CAP_SYS_ADMIN)".into());
        }
        if self.kpageflags < 0 {
            return Err("/proc/kpageflags is not readable".into());
        }
        let lo = pfn.saturating_sub(511);
        let n = (pfn - lo + 1) as usize + 512;
        if !pread_u64s(self.kpageflags, lo, &mut self.kf[..n]) {
            return Err("kpageflags read failed".into());
        }
        const KPF_ZERO_PAGE: u64 = 1 << 24;
        let at = (pfn - lo) as usize;
        if self.kf[at] & KPF_ZERO_PAGE != 0 {
            return Ok(None);
        }
        if self.kf[at] & (KPF_COMPOUND_HEAD | KPF_COMPOUND_TAIL) == 0 {
            return Ok(Some((pfn, pfn + 1)));
        }
        let head = (0..=at)
            .rev()
            .find(|&j| self.kf[j] & KPF_COMPOUND_HEAD != 0)
            .ok_or("no compound head within 512 pages")?;
        let mut end = head + 1;
        while end < n
            && self.kf[end] & KPF_COMPOUND_TAIL != 0
            && self.kf[end] & KPF_COMPOUND_HEAD == 0
        {
            end += 1;
        }
        Ok(Some((lo + head as u64, lo + end as u64)))
    }

    /// Arena page runs `[a, b)` of this mm that map pfns `[f0, f1)` in order.
    pub(crate) fn runs_of(&mut self, f0: u64, f1: u64) -> Result<Vec<(usize, usize)>, String> {
        if !self.read_pagemap(0, NPAGES) {
            return Err("pagemap read failed".into());
        }
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for pg in 0..NPAGES {
            let e = self.pm[pg];
            let pfn = e & PM_PFN_MASK;
            if e & PM_PRESENT == 0 || pfn < f0 || pfn >= f1 {
                continue;
            }
            match runs.last_mut() {
                Some(r) if r.1 == pg => r.1 += 1,
                _ => runs.push((pg, pg + 1)),
            }
        }
        Ok(runs)
    }

    /// `reclaim ADDR`: reclaim the folio mapped at ADDR, realised as
    /// MADV_PAGEOUT of exactly the pages that map it in this mm
    /// (reclaim_pages() → shrink_folio_list() → try_to_unmap()). MADV_PAGEOUT
    /// skips a folio another mm maps (folio_maybe_mapped_shared()), and no
    /// user-space trigger reclaims one given folio from every mm: such a
    /// folio is reported unsupported.
    pub(crate) fn reclaim(&mut self, addr: u64) -> String {
        let pg = (addr / PAGE_SIZE) as usize;
        let (f0, f1) = match self.folio_of(pg) {
            Ok(Some(r)) => r,
            Ok(None) => return "ok".into(),
            Err(e) => return format!("{UNSUPPORTED}reclaim: {e}"),
        };
        let runs = match self.runs_of(f0, f1) {
            Ok(r) => r,
            Err(e) => return format!("{UNSUPPORTED}reclaim: {e}"),
        };
        // Mapped here once per page; a larger mapcount is another mm's mapping.
        let n = (f1 - f0) as usize;
        if self.kpagecount < 0 || !pread_u64s(self.kpagecount, f0, &mut self.kf[..n]) {
            return format!("{UNSUPPORTED}reclaim: /proc/kpagecount is not readable");
        }
        let mut here = vec![0u64; n];
        for &(a, b) in &runs {
            for pg in a..b {
                let pfn = self.pm[pg] & PM_PFN_MASK;
                here[(pfn - f0) as usize] += 1;
            }
        }
        if (0..n).any(|j| self.kf[j] > here[j]) {
            return format!(
                "{UNSUPPORTED}reclaim: the folio is mapped by another process too (MADV_PAGEOUT skips shared folios; no user-space trigger reclaims one folio from every mm)"
            );
        }
        for (a, b) in runs {
            let r = unsafe {
                libc::madvise(addr_of_page(a), (b - a) * PAGE_SIZE as usize, MADV_PAGEOUT)
            };
            if r != 0 {
                // madvise()'s errno, as every op reports it (and as the C
                // reproducer's do_reclaim() does).
                return errno_name(errno());
            }
        }
        "ok".into()
    }

    /// `migrate ADDR`: move_pages(MPOL_MF_MOVE_ALL) of the page at ADDR (its
    /// whole folio) to the other NUMA node.
    pub(crate) fn migrate(&mut self, addr: u64) -> String {
        let page = [(ARENA_BASE + addr / PAGE_SIZE * PAGE_SIZE) as *mut libc::c_void];
        let mut status = [0i32; 1];
        let q = unsafe {
            libc::syscall(
                libc::SYS_move_pages,
                0,
                1u64,
                page.as_ptr(),
                std::ptr::null::<i32>(),
                status.as_mut_ptr(),
                0,
            )
        };
        if q < 0 {
            return format!("{UNSUPPORTED}migrate: move_pages: {}", errno_name(errno()));
        }
        if status[0] < 0 {
            // Nothing (or the zero page) there: the model's folio_at() is None.
            return "ok".into();
        }
        let target = [if status[0] == 0 { 1i32 } else { 0 }];
        let r = unsafe {
            libc::syscall(
                libc::SYS_move_pages,
                0,
                1u64,
                page.as_ptr(),
                target.as_ptr(),
                status.as_mut_ptr(),
                MPOL_MF_MOVE_ALL,
            )
        };
        if r < 0 {
            return errno_name(errno());
        }
        "ok".into()
    }

    pub(crate) fn no_uffd(&self, what: &str) -> Option<String> {
        (self.uffd < 0).then(|| {
            format!(
                "{UNSUPPORTED}{what}: userfaultfd: {}",
                errno_name(self.uffd_err)
            )
        })
    }

    /// `uffd-wp START LEN on|off`: UFFDIO_WRITEPROTECT (mode WP, or 0).
    pub(crate) fn uffd_wp(&mut self, start: u64, len: u64, on: bool) -> String {
        if let Some(u) = self.no_uffd("uffd-wp") {
            return u;
        }
        // struct uffdio_writeprotect { range { start, len }, mode }
        let mut wp = [
            ARENA_BASE + start,
            len,
            if on { UFFDIO_WRITEPROTECT_MODE_WP } else { 0 },
        ];
        ret(unsafe { libc::ioctl(self.uffd, UFFDIO_WRITEPROTECT as _, wp.as_mut_ptr()) })
    }

    /// `uffd-register START LEN`: UFFDIO_REGISTER, mode WP.
    pub(crate) fn uffd_register(&mut self, start: u64, len: u64) -> String {
        if let Some(u) = self.no_uffd("uffd-register") {
            return u;
        }
        // struct uffdio_register { range { start, len }, mode, ioctls }
        let mut reg = [ARENA_BASE + start, len, UFFDIO_REGISTER_MODE_WP, 0u64];
        ret(unsafe { libc::ioctl(self.uffd, UFFDIO_REGISTER as _, reg.as_mut_ptr()) })
    }

    /// `uffd-unregister START LEN`: UFFDIO_UNREGISTER.
    pub(crate) fn uffd_unregister(&mut self, start: u64, len: u64) -> String {
        if let Some(u) = self.no_uffd("uffd-unregister") {
            return u;
        }
        let mut range = [ARENA_BASE + start, len];
        ret(unsafe { libc::ioctl(self.uffd, UFFDIO_UNREGISTER as _, range.as_mut_ptr()) })
    }

    /// `uffd-move DST SRC LEN`: UFFDIO_MOVE, mode 0.
    pub(crate) fn uffd_move(&mut self, dst: u64, src: u64, len: u64) -> String {
        if let Some(u) = self.no_uffd("uffd-move") {
            return u;
        }
        if !self.uffd_move {
            return format!("{UNSUPPORTED}uffd-move: UFFD_FEATURE_MOVE is not available");
        }
        // struct uffdio_move { dst, src, len, mode, move }
        let mut mv = [ARENA_BASE + dst, ARENA_BASE + src, len, 0u64, 0u64];
        ret(unsafe { libc::ioctl(self.uffd, UFFDIO_MOVE as _, mv.as_mut_ptr()) })
    }

    /// `pagemap-scan START LEN`: PAGEMAP_SCAN with PM_SCAN_WP_MATCHING |
    /// PM_SCAN_CHECK_WPASYNC, category and return mask PAGE_IS_WRITTEN.
    pub(crate) fn pagemap_scan(&mut self, start: u64, len: u64) -> String {
        let mut arg = [0u64; 12];
        arg[0] = 96;
        arg[1] = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC;
        arg[2] = ARENA_BASE + start;
        arg[3] = ARENA_BASE + start + len;
        arg[5] = self.regions.as_mut_ptr() as u64;
        arg[6] = self.regions.len() as u64;
        arg[9] = PAGE_IS_WRITTEN;
        arg[11] = PAGE_IS_WRITTEN;
        let n = unsafe { libc::ioctl(self.pagemap, PAGEMAP_SCAN as _, arg.as_mut_ptr()) };
        if n < 0 {
            errno_name(errno())
        } else {
            "ok".into()
        }
    }

    /// `mbind START LEN NODE`: MPOL_BIND to {NODE} with MPOL_MF_MOVE.
    pub(crate) fn mbind(&mut self, start: u64, len: u64, node: u8) -> String {
        let mask: u64 = 1 << node;
        let r = unsafe {
            libc::syscall(
                libc::SYS_mbind,
                ARENA_BASE + start,
                len,
                MPOL_BIND,
                &mask as *const u64,
                65u64,
                MPOL_MF_MOVE,
            )
        };
        ret(r as libc::c_int)
    }
}

/// Every process of a program allocates on node 0 unless a VMA policy says
/// otherwise (the model's `policy_node()`).
pub(crate) fn bind_node0() -> Result<(), String> {
    let mask: u64 = 1;
    let r = unsafe {
        libc::syscall(
            libc::SYS_set_mempolicy,
            MPOL_BIND,
            &mask as *const u64,
            65u64,
        )
    };
    if r != 0 {
        return Err(format!(
            "set_mempolicy(MPOL_BIND, {{0}}): {}",
            errno_name(errno())
        ));
    }
    Ok(())
}

pub(crate) fn addr_of_page(pg: usize) -> *mut libc::c_void {
    (ARENA_BASE + pg as u64 * PAGE_SIZE) as *mut libc::c_void
}
