//! The kernel interfaces the executor uses: constants of the uAPI it needs
//! (madvise, PAGEMAP_SCAN, userfaultfd, io_uring), and small wrappers.

use crate::prog::{ARENA_SIZE, PAGE_SIZE};
use anyhow::Result;
use nix::libc;
use std::os::fd::RawFd;

/// A 1 GiB boundary that is not a 512 GiB one: the arena's two halves have their
/// own PMD tables under one PUD table, as in the model.
pub const GIB_BOUNDARY: u64 = 0x7e40_0000_0000;
/// Where arena offset 0 is mapped (2 MiB aligned).
pub const ARENA_BASE: u64 = GIB_BOUNDARY - ARENA_SIZE / 2;
/// One written page in each 1 GiB range of the arena, outside it, so the PMD
/// tables (and the PUD table) exist before the baseline and are never freed.
pub const GUARD_LO: u64 = ARENA_BASE - (4 << 20);
pub const GUARD_HI: u64 = ARENA_BASE + ARENA_SIZE + (4 << 20);

pub(crate) const MADV_COLD: i32 = 20;
pub(crate) const MADV_PAGEOUT: i32 = 21;
pub(crate) const MADV_POPULATE_READ: i32 = 22;
pub(crate) const MADV_COLLAPSE: i32 = 25;
/// `_IOWR('f', 16, struct pm_scan_arg)` (96 bytes).
pub(crate) const PAGEMAP_SCAN: u64 = 0xC060_6610;
pub(crate) const PAGE_IS_PRESENT: u64 = 1 << 3;
pub(crate) const PAGE_IS_SWAPPED: u64 = 1 << 4;
pub(crate) const PAGE_IS_PFNZERO: u64 = 1 << 5;
pub(crate) const PAGE_IS_HUGE: u64 = 1 << 6;

pub(crate) const THP: &str = "/sys/kernel/mm/transparent_hugepage";

// ------------------------------------------------------------------ kernel interfaces

/// pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst).
pub(crate) const PM_PFN_MASK: u64 = (1 << 55) - 1;
pub(crate) const PM_GUARD_REGION: u64 = 1 << 58;
pub(crate) const PM_SWAP: u64 = 1 << 62;
/// Swap types of non-swap entries (migration, hwpoison, PTE markers) start
/// at MAX_SWAPFILES, at least 32 - 3 - 3 - 1 - 1 = 24 in any configuration.
pub(crate) const MARKER_SWAP_TYPE_MIN: u64 = 24;
pub(crate) const PM_PRESENT: u64 = 1 << 63;
/// /proc/kpageflags bits.
pub(crate) const KPF_COMPOUND_HEAD: u64 = 1 << 15;
pub(crate) const KPF_COMPOUND_TAIL: u64 = 1 << 16;

pub(crate) const UFFD_API: u64 = 0xAA;
pub(crate) const UFFD_FEATURE_PAGEFAULT_FLAG_WP: u64 = 1 << 0;
pub(crate) const UFFD_FEATURE_WP_UNPOPULATED: u64 = 1 << 13;
pub(crate) const UFFD_FEATURE_WP_ASYNC: u64 = 1 << 15;
pub(crate) const UFFD_FEATURE_MOVE: u64 = 1 << 16;
pub(crate) const UFFD_EVENT_PAGEFAULT: u8 = 0x12;
pub(crate) const UFFD_PAGEFAULT_FLAG_WP: u64 = 1 << 1;
/// `_IOR(0xAA, 0x01, struct uffdio_range)` (16 bytes).
pub(crate) const UFFDIO_UNREGISTER: u64 = 0x8010_AA01;
/// `_IOWR(0xAA, 0x05, struct uffdio_move)` (40 bytes).
pub(crate) const UFFDIO_MOVE: u64 = 0xC028_AA05;
pub(crate) const PM_SCAN_WP_MATCHING: u64 = 1 << 0;
pub(crate) const PM_SCAN_CHECK_WPASYNC: u64 = 1 << 1;
pub(crate) const PAGE_IS_WRITTEN: u64 = 1 << 1;
pub(crate) const MPOL_BIND: i64 = 2;
pub(crate) const MPOL_MF_MOVE: i64 = 1 << 1;
/// Bytes of the uffd handler thread's stack (preallocated, so that creating
/// the thread maps nothing: VmPTE and the counted allocations stay the arena's).
pub(crate) const HANDLER_STACK: usize = 256 << 10;
/// `_IOWR(0xAA, 0x3F, struct uffdio_api)` (24 bytes).
pub(crate) const UFFDIO_API: u64 = 0xC018_AA3F;
/// `_IOWR(0xAA, 0x00, struct uffdio_register)` (32 bytes).
pub(crate) const UFFDIO_REGISTER: u64 = 0xC020_AA00;
/// `_IOWR(0xAA, 0x06, struct uffdio_writeprotect)` (24 bytes).
pub(crate) const UFFDIO_WRITEPROTECT: u64 = 0xC018_AA06;
pub(crate) const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;
pub(crate) const UFFDIO_WRITEPROTECT_MODE_WP: u64 = 1 << 0;

pub(crate) const IORING_REGISTER_BUFFERS2: u32 = 15;
pub(crate) const IORING_REGISTER_BUFFERS_UPDATE: u32 = 16;
pub(crate) const IORING_UNREGISTER_BUFFERS: u32 = 1;
pub(crate) const IORING_RSRC_REGISTER_SPARSE: u32 = 1;
/// Fixed-buffer slots per mm process: one per pinned page.
pub(crate) const PIN_SLOTS: u32 = 16384;
pub(crate) const MPOL_MF_MOVE_ALL: i32 = 1 << 2;

pub(crate) fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// A process's userfaultfd (blocking: its handler thread reads it), with
/// UFFD_FEATURE_MOVE where the kernel has it, and WP_ASYNC + WP_UNPOPULATED
/// for `uffd async`. Returns the fd and the features the kernel offers.
pub(crate) fn uffd_open(async_wp: bool, move_ok: bool) -> Result<(RawFd, u64), i32> {
    let fd = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC) } as RawFd;
    if fd < 0 {
        return Err(errno());
    }
    let mut features = if move_ok { UFFD_FEATURE_MOVE } else { 0 };
    if async_wp {
        features |= UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED;
    }
    let mut api = [UFFD_API, features, 0u64];
    if unsafe { libc::ioctl(fd, UFFDIO_API as _, api.as_mut_ptr()) } != 0 {
        let e = errno();
        unsafe { libc::close(fd) };
        return Err(e);
    }
    Ok((fd, api[1]))
}

/// An io_uring whose only use is a table of sparse fixed-buffer slots.
pub(crate) fn ring_open() -> Result<RawFd, i32> {
    let mut params = [0u8; 120];
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) } as RawFd;
    if fd < 0 {
        return Err(errno());
    }
    // struct io_uring_rsrc_register { nr, flags, resv2, data, tags }
    let mut reg = [0u8; 32];
    reg[0..4].copy_from_slice(&PIN_SLOTS.to_le_bytes());
    reg[4..8].copy_from_slice(&IORING_RSRC_REGISTER_SPARSE.to_le_bytes());
    let r = unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            fd,
            IORING_REGISTER_BUFFERS2,
            reg.as_mut_ptr(),
            32u32,
        )
    };
    if r < 0 {
        let e = errno();
        unsafe { libc::close(fd) };
        return Err(e);
    }
    Ok(fd)
}

/// Point fixed-buffer slot `slot` at one page (`addr` != 0: pins it with
/// FOLL_WRITE|FOLL_LONGTERM) or at nothing (`addr` == 0: unpins).
pub(crate) fn ring_set_slot(ring: RawFd, slot: u32, addr: u64) -> Result<(), i32> {
    let iov = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: if addr == 0 { 0 } else { PAGE_SIZE as usize },
    };
    // struct io_uring_rsrc_update2 { offset, resv, data, tags, nr, resv2 }
    let mut upd = [0u8; 32];
    upd[0..4].copy_from_slice(&slot.to_le_bytes());
    upd[8..16].copy_from_slice(&(&iov as *const libc::iovec as u64).to_le_bytes());
    upd[24..28].copy_from_slice(&1u32.to_le_bytes());
    let r = unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            ring,
            IORING_REGISTER_BUFFERS_UPDATE,
            upd.as_mut_ptr(),
            32u32,
        )
    };
    match r {
        1 => Ok(()),
        r if r < 0 => Err(errno()),
        _ => Err(libc::EIO),
    }
}

pub(crate) fn probe_io_uring() -> bool {
    match ring_open() {
        Ok(fd) => {
            unsafe { libc::close(fd) };
            true
        }
        Err(_) => false,
    }
}

/// The userfaultfd features this kernel offers (0: no userfaultfd).
pub(crate) fn probe_uffd() -> u64 {
    match uffd_open(false, false) {
        Ok((fd, features)) => {
            unsafe { libc::close(fd) };
            features
        }
        Err(_) => 0,
    }
}

/// The uffd handler thread of `uffd async`-less programs: resolves each
/// write-protect fault with UFFDIO_WRITEPROTECT mode 0 on the faulting page
/// (which wakes the faulting task), retrying while that fails (the model's
/// `handle_userfault_wp()`).
pub(crate) extern "C" fn uffd_handler(arg: *mut libc::c_void) -> *mut libc::c_void {
    let fd = arg as usize as RawFd;
    let mut msg = [0u8; 32];
    loop {
        let n = unsafe { libc::read(fd, msg.as_mut_ptr() as *mut libc::c_void, 32) };
        if n != 32 {
            if n < 0 && errno() == libc::EINTR {
                continue;
            }
            return std::ptr::null_mut();
        }
        if msg[0] != UFFD_EVENT_PAGEFAULT {
            continue;
        }
        let flags = u64::from_le_bytes(msg[8..16].try_into().unwrap());
        let addr = u64::from_le_bytes(msg[16..24].try_into().unwrap());
        if flags & UFFD_PAGEFAULT_FLAG_WP == 0 {
            continue;
        }
        let mut wp = [addr & !(PAGE_SIZE - 1), PAGE_SIZE, 0u64];
        while unsafe { libc::ioctl(fd, UFFDIO_WRITEPROTECT as _, wp.as_mut_ptr()) } != 0 {
            match errno() {
                libc::ENOMEM | libc::EAGAIN | libc::EINTR => unsafe {
                    libc::sched_yield();
                },
                _ => break,
            }
        }
    }
}
pub(crate) fn pread_u64s(fd: RawFd, index: u64, out: &mut [u64]) -> bool {
    let bytes = std::mem::size_of_val(out);
    let n = unsafe {
        libc::pread(
            fd,
            out.as_mut_ptr() as *mut libc::c_void,
            bytes,
            (index * 8) as libc::off_t,
        )
    };
    n == bytes as isize
}
