//! `splitfuzz real`: the host kernel as an oracle for the `deposit` policy in the
//! kernel geometry.
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

use crate::base::Geometry;
use crate::check::reference::tag;
use crate::model::alloc::AllocKind;
use crate::model::mm::{Errno, Kernel, Pmd, Pte};
use crate::model::policy::{Policy, Preset};
use crate::prog::{fmt_size, Advice, Op, OpLine, Program, ARENA_SIZE, MAX_MMS, PAGE_SIZE};
use crate::run::{self, OpResult};
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
/// Our kernel patch's fault-plan interface (kernel/patches/).
pub const SF_DEBUGFS: &str = "/sys/kernel/debug/splitfuzz";

// ------------------------------------------------------------------ kernel interfaces

/// pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst).
const PM_PFN_MASK: u64 = (1 << 55) - 1;
const PM_GUARD_REGION: u64 = 1 << 58;
const PM_SWAP: u64 = 1 << 62;
/// Swap types of non-swap entries (migration, hwpoison, PTE markers) start
/// at MAX_SWAPFILES, at least 32 - 3 - 3 - 1 - 1 = 24 in any configuration.
const MARKER_SWAP_TYPE_MIN: u64 = 24;
const PM_PRESENT: u64 = 1 << 63;
/// /proc/kpageflags bits.
const KPF_COMPOUND_HEAD: u64 = 1 << 15;
const KPF_COMPOUND_TAIL: u64 = 1 << 16;

const UFFD_API: u64 = 0xAA;
const UFFD_FEATURE_PAGEFAULT_FLAG_WP: u64 = 1 << 0;
const UFFD_FEATURE_WP_UNPOPULATED: u64 = 1 << 13;
const UFFD_FEATURE_WP_ASYNC: u64 = 1 << 15;
const UFFD_FEATURE_MOVE: u64 = 1 << 16;
const UFFD_EVENT_PAGEFAULT: u8 = 0x12;
const UFFD_PAGEFAULT_FLAG_WP: u64 = 1 << 1;
/// `_IOR(0xAA, 0x01, struct uffdio_range)` (16 bytes).
const UFFDIO_UNREGISTER: u64 = 0x8010_AA01;
/// `_IOWR(0xAA, 0x05, struct uffdio_move)` (40 bytes).
const UFFDIO_MOVE: u64 = 0xC028_AA05;
const PM_SCAN_WP_MATCHING: u64 = 1 << 0;
const PM_SCAN_CHECK_WPASYNC: u64 = 1 << 1;
const PAGE_IS_WRITTEN: u64 = 1 << 1;
const MPOL_BIND: i64 = 2;
const MPOL_MF_MOVE: i64 = 1 << 1;
/// Bytes of the uffd handler thread's stack (preallocated, so that creating
/// the thread maps nothing: VmPTE and the counted allocations stay the arena's).
const HANDLER_STACK: usize = 256 << 10;
/// `_IOWR(0xAA, 0x3F, struct uffdio_api)` (24 bytes).
const UFFDIO_API: u64 = 0xC018_AA3F;
/// `_IOWR(0xAA, 0x00, struct uffdio_register)` (32 bytes).
const UFFDIO_REGISTER: u64 = 0xC020_AA00;
/// `_IOWR(0xAA, 0x06, struct uffdio_writeprotect)` (24 bytes).
const UFFDIO_WRITEPROTECT: u64 = 0xC018_AA06;
const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;
const UFFDIO_WRITEPROTECT_MODE_WP: u64 = 1 << 0;

const IORING_REGISTER_BUFFERS2: u32 = 15;
const IORING_REGISTER_BUFFERS_UPDATE: u32 = 16;
const IORING_UNREGISTER_BUFFERS: u32 = 1;
const IORING_RSRC_REGISTER_SPARSE: u32 = 1;
/// Fixed-buffer slots per mm process: one per pinned page.
const PIN_SLOTS: u32 = 16384;
const MPOL_MF_MOVE_ALL: i32 = 1 << 2;

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// A process's userfaultfd (blocking: its handler thread reads it), with
/// UFFD_FEATURE_MOVE where the kernel has it, and WP_ASYNC + WP_UNPOPULATED
/// for `uffd async`. Returns the fd and the features the kernel offers.
fn uffd_open(async_wp: bool, move_ok: bool) -> Result<(RawFd, u64), i32> {
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
fn ring_open() -> Result<RawFd, i32> {
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
fn ring_set_slot(ring: RawFd, slot: u32, addr: u64) -> Result<(), i32> {
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

fn probe_io_uring() -> bool {
    match ring_open() {
        Ok(fd) => {
            unsafe { libc::close(fd) };
            true
        }
        Err(_) => false,
    }
}

/// The userfaultfd features this kernel offers (0: no userfaultfd).
fn probe_uffd() -> u64 {
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
extern "C" fn uffd_handler(arg: *mut libc::c_void) -> *mut libc::c_void {
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
fn pread_u64s(fd: RawFd, index: u64, out: &mut [u64]) -> bool {
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

/// Write a small file (sysfs, procfs, debugfs); errors as text.
pub fn write_file(path: &str, v: &str) -> Result<(), String> {
    std::fs::write(path, v).map_err(|e| format!("{path}: {e}"))
}

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
    /// io_uring fixed buffers can be registered (FOLL_LONGTERM pins).
    pub io_uring: bool,
    /// userfaultfd with UFFDIO_REGISTER_MODE_WP works.
    pub uffd_wp: bool,
    /// Our kernel patch's fault plans (/sys/kernel/debug/splitfuzz).
    pub fail_plans: bool,
    /// UFFD_FEATURE_MOVE (UFFDIO_MOVE) and UFFD_FEATURE_WP_ASYNC.
    pub uffd_move: bool,
    pub uffd_async: bool,
    /// The executor may write /proc/sys/vm/drop_caches (a machine of its
    /// own: the guest; never the host, where it is machine-wide).
    pub drop_caches: bool,
    pub kernel: String,
}

/// `6.18.44-foo` → (6, 18); unparsable → the model's default.
pub fn linux_version(release: &str) -> (u32, u32) {
    let mut it = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|x| x.parse::<u32>());
    match (it.next(), it.next()) {
        (Some(Ok(a)), Some(Ok(b))) => (a, b),
        _ => crate::model::mm::LINUX_DEFAULT,
    }
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
        let uffd_features = probe_uffd();
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
            io_uring: probe_io_uring(),
            uffd_wp: uffd_features & UFFD_FEATURE_PAGEFAULT_FLAG_WP != 0,
            uffd_move: uffd_features & UFFD_FEATURE_MOVE != 0,
            uffd_async: uffd_features & UFFD_FEATURE_WP_ASYNC != 0,
            drop_caches: false,
            fail_plans: std::path::Path::new(SF_DEBUGFS)
                .join("pte_alloc/plan")
                .exists(),
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

    /// (major, minor) of this kernel's release, for the model's
    /// version-dependent behaviour (`Kernel::linux`).
    pub fn linux(&self) -> (u32, u32) {
        linux_version(&self.kernel)
    }

    pub fn describe(&self) -> String {
        format!(
            "kernel {}, THP enabled [{}] defrag [{}], use_zero_page {}, khugepaged max_ptes_none {}, swap {} kB, {} NUMA node(s), fail-nth {}, io_uring {}, uffd-wp {}, fault plans {}",
            self.kernel,
            self.thp_enabled,
            self.defrag,
            self.use_zero_page as u8,
            self.max_ptes_none,
            self.swap_kb,
            self.numa_nodes,
            if self.fail_nth { "yes" } else { "no" },
            if self.io_uring { "yes" } else { "no" },
            if self.uffd_wp { "yes" } else { "no" },
            if self.fail_plans { "yes" } else { "no" }
        )
    }

    /// Why the host cannot run this op (None: it can).
    pub fn unsupported(&self, op: &Op) -> Option<&'static str> {
        match op {
            Op::Pin { .. } | Op::Unpin { .. } if !self.io_uring => {
                Some("pin/unpin: io_uring fixed buffers (the FOLL_LONGTERM pin) are not available")
            }
            Op::Reclaim { .. } if self.swap_kb == 0 => {
                Some("reclaim: no swap device, anon folios cannot be reclaimed")
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
            Op::Mbind { node, .. } if *node as usize >= self.numa_nodes => {
                Some("mbind: the node does not exist here")
            }
            Op::UffdWp { .. }
            | Op::UffdRegister { .. }
            | Op::UffdUnregister { .. }
            | Op::PagemapScan { .. }
                if !self.uffd_wp =>
            {
                Some("uffd: userfaultfd with UFFDIO_REGISTER_MODE_WP is not available")
            }
            Op::UffdMove { .. } if !self.uffd_move => {
                Some("uffd-move: UFFD_FEATURE_MOVE is not available")
            }
            Op::DropCaches if !self.drop_caches => Some(
                "drop-caches: /proc/sys/vm/drop_caches is machine-wide; only the guest runs it",
            ),
            _ => None,
        }
    }

    /// Why the host cannot run this program (None: it can).
    pub fn program_unsupported(&self, p: &Program) -> Option<String> {
        if p.uffd_async && !self.uffd_async {
            return Some("uffd async: UFFD_FEATURE_WP_ASYNC is not available".into());
        }
        if (!p.faults.pte_alloc.is_never() || !p.faults.thp.is_never()) && !self.fail_plans {
            return Some(
                "fault plan: this kernel has no splitfuzz fault plans (a kernel from `splitfuzz vm build` has them)"
                    .into(),
            );
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
        libc::ENOSPC => "ENOSPC".into(),
        libc::EOPNOTSUPP => "EOPNOTSUPP".into(),
        libc::EACCES => "EACCES".into(),
        libc::ESRCH => "ESRCH".into(),
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

pub struct ModelRun {
    pub t: Transcript,
    /// THP allocation calls made before / after each op.
    pub thp_calls: Vec<(u32, u32)>,
    pub violation: Option<String>,
    /// The violation's op (== ops.len() for the teardown) and invariant.
    pub violation_at: Option<(usize, crate::check::Invariant)>,
}

/// A fault plan plus THP calls the kernel failed by itself.
struct PlanPlus {
    plan: Box<dyn crate::model::alloc::FailPolicy>,
    extra: Vec<u32>,
}

impl crate::model::alloc::FailPolicy for PlanPlus {
    fn should_fail(&self, call: u32) -> bool {
        self.plan.should_fail(call) || self.extra.contains(&call)
    }
    fn fails_forever_from(&self, call: u32) -> bool {
        self.plan.fails_forever_from(call)
    }
    fn should_fail_at(&self, call: u32, site: &'static str) -> bool {
        self.plan.should_fail_at(call, site) || self.extra.contains(&call)
    }
}

/// Run the model (deposit, kernel geometry, no fault plan) with the given THP
/// calls failed: what the host kernel is compared with.
pub fn model_run(prog: &Program, linux: (u32, u32), thp_fail: &[u32]) -> ModelRun {
    let mut p = prog.clone();
    p.faults = Default::default();
    model_run_with(&p, &Policy::preset(Preset::Deposit), linux, thp_fail)
}

/// Run the model under `policy` in the kernel geometry with the program's own
/// fault plan, plus the THP calls in `thp_fail` failed.
pub fn model_run_with(
    prog: &Program,
    policy: &Policy,
    linux: (u32, u32),
    thp_fail: &[u32],
) -> ModelRun {
    let pte = prog.faults.pte_alloc.policy();
    let thp = Box::new(PlanPlus {
        plan: prog.faults.thp.policy(),
        extra: thp_fail.to_vec(),
    });
    model_run_policies(prog, policy, linux, pte, thp, &mut |_, _, _| {})
}

/// Run the model under `policy` in the kernel geometry with these fail
/// policies (the program's plan is ignored); `on_op` sees the kernel before
/// (phase 0) and after (phase 1) each op, as `run::run_on`'s hook.
pub fn model_run_policies(
    prog: &Program,
    policy: &Policy,
    linux: (u32, u32),
    pte: Box<dyn crate::model::alloc::FailPolicy>,
    thp: Box<dyn crate::model::alloc::FailPolicy>,
    on_op: &mut dyn FnMut(&Kernel, usize, u8),
) -> ModelRun {
    use crate::model::alloc::FaultInjector;
    let k = Kernel::new(
        Geometry::KERNEL,
        policy.clone(),
        FaultInjector::new(pte, thp),
    );
    let mut k = {
        // run::build()'s kernel, with the plan plus the kernel's own failures.
        let mut b = run::build(prog, &run::RunConfig::new(policy.clone(), Geometry::KERNEL));
        b.alloc = k.alloc;
        b
    };
    // Per-op allocation and charge logs (memcg.rs reads them in `on_op`).
    k.alloc.record = true;
    k.linux = linux;
    // The executor's guard pages keep the arena's PMD tables (and PUDs).
    k.arena_neighbours = true;
    let p = prog;
    let n = p.ops.len();
    let mut obs: Vec<Vec<String>> = vec![Vec::new(); n];
    let mut allocs: Vec<Option<(u32, u32)>> = vec![None; n];
    let mut calls = vec![(0u32, 0u32); n];
    let mut results = Vec::new();
    let violation = run::run_on(
        &mut k,
        p,
        &mut results,
        &mut |k, i, phase| {
            on_op(k, i, phase);
            let c = k.alloc.calls(AllocKind::Thp);
            if phase == 0 {
                calls[i].0 = c;
            } else {
                calls[i].1 = c;
                allocs[i] = Some((k.alloc.calls(AllocKind::PteTable), c));
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
    // Ops the model never reached (after a violation) have no allocation counts.
    for (i, a) in allocs.iter_mut().enumerate() {
        if i >= results.len() && obs[i].is_empty() {
            *a = None;
        }
    }
    ModelRun {
        t: Transcript {
            results: res,
            obs,
            allocs,
        },
        thp_calls: calls,
        violation_at: violation.as_ref().map(|v| (v.op_index, v.invariant)),
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
    /// userfaultfd (write-protect) and io_uring (pins) of this mm, or -1.
    uffd: RawFd,
    uffd_err: i32,
    /// The program has uffd ops (this process gets a userfaultfd), with
    /// `uffd async`; UFFD_FEATURE_MOVE is available.
    uffd_use: bool,
    uffd_async: bool,
    uffd_move: bool,
    /// The program installs guard regions: touches skip their pages.
    guard_use: bool,
    /// The uffd handler thread's stack (touched before the baseline).
    handler_stack: Vec<u8>,
    ring: RawFd,
    ring_err: i32,
    /// (page, slot) of every page pinned through this mm's ring.
    pins: Vec<(usize, u32)>,
    free_slots: Vec<u32>,
    kpageflags: RawFd,
    /// The memcg trigger's control files (opened before the first op).
    limit: Option<Limit>,
    /// A limit to set once the op has read what it needs (`touch` reads
    /// smaps, whose seq_file buffer is a charged allocation): the slack.
    limit_pending: Option<u64>,
    kpagecount: RawFd,
    pm: Vec<u64>,
    kf: Vec<u64>,
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
    fn open_fds(&mut self) {
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
    fn start_handler(&mut self) -> Result<(), String> {
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
    fn read_pagemap(&mut self, lo: usize, hi: usize) -> bool {
        let base = ARENA_BASE / PAGE_SIZE + lo as u64;
        pread_u64s(self.pagemap, base, &mut self.pm[..hi - lo])
    }

    /// `pin START LEN`: one io_uring fixed buffer per page, each pinned by
    /// `pin_user_pages(FOLL_WRITE|FOLL_LONGTERM)` (io_sqe_buffer_register()),
    /// page by page, stopping at the first failure as the model does.
    fn pin(&mut self, start: u64, len: u64) -> String {
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
    fn unpin(&mut self, start: u64, len: u64) -> String {
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
    fn release_pins(&mut self) {
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
    fn folio_of(&mut self, pg: usize) -> Result<Option<(u64, u64)>, String> {
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
    fn runs_of(&mut self, f0: u64, f1: u64) -> Result<Vec<(usize, usize)>, String> {
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
    fn reclaim(&mut self, addr: u64) -> String {
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
                return format!("reclaim: MADV_PAGEOUT: {}", errno_name(errno()));
            }
        }
        "ok".into()
    }

    /// `migrate ADDR`: move_pages(MPOL_MF_MOVE_ALL) of the page at ADDR (its
    /// whole folio) to the other NUMA node.
    fn migrate(&mut self, addr: u64) -> String {
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

    fn no_uffd(&self, what: &str) -> Option<String> {
        (self.uffd < 0).then(|| {
            format!(
                "{UNSUPPORTED}{what}: userfaultfd: {}",
                errno_name(self.uffd_err)
            )
        })
    }

    /// `uffd-wp START LEN on|off`: UFFDIO_WRITEPROTECT (mode WP, or 0).
    fn uffd_wp(&mut self, start: u64, len: u64, on: bool) -> String {
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
    fn uffd_register(&mut self, start: u64, len: u64) -> String {
        if let Some(u) = self.no_uffd("uffd-register") {
            return u;
        }
        // struct uffdio_register { range { start, len }, mode, ioctls }
        let mut reg = [ARENA_BASE + start, len, UFFDIO_REGISTER_MODE_WP, 0u64];
        ret(unsafe { libc::ioctl(self.uffd, UFFDIO_REGISTER as _, reg.as_mut_ptr()) })
    }

    /// `uffd-unregister START LEN`: UFFDIO_UNREGISTER.
    fn uffd_unregister(&mut self, start: u64, len: u64) -> String {
        if let Some(u) = self.no_uffd("uffd-unregister") {
            return u;
        }
        let mut range = [ARENA_BASE + start, len];
        ret(unsafe { libc::ioctl(self.uffd, UFFDIO_UNREGISTER as _, range.as_mut_ptr()) })
    }

    /// `uffd-move DST SRC LEN`: UFFDIO_MOVE, mode 0.
    fn uffd_move(&mut self, dst: u64, src: u64, len: u64) -> String {
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
    fn pagemap_scan(&mut self, start: u64, len: u64) -> String {
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
    fn mbind(&mut self, start: u64, len: u64, node: u8) -> String {
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
fn bind_node0() -> Result<(), String> {
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

fn addr_of_page(pg: usize) -> *mut libc::c_void {
    (ARENA_BASE + pg as u64 * PAGE_SIZE) as *mut libc::c_void
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

fn recv_msg(fd: RawFd, t: Duration) -> Result<String, String> {
    let mut len = [0u8; 4];
    let t = Some(t);
    read_exact(fd, &mut len, t)?;
    let mut b = vec![0u8; u32::from_le_bytes(len) as usize];
    read_exact(fd, &mut b, t)?;
    String::from_utf8(b).map_err(|e| e.to_string())
}

const CMD_OP: u32 = 1;
const CMD_OBSERVE: u32 = 2;
const CMD_QUIT: u32 = 3;
/// CMD_OP with the memory cgroup at its limit for the op (the memcg trigger).
const CMD_OP_LIMITED: u32 = 4;

/// The memcg trigger: the program's cgroup's control files, opened by mm 0
/// after it joined the cgroup (so later forks inherit them) and before any op,
/// so setting and lifting the limit allocates nothing (no open(), no new
/// seq_file buffer: memory.current is read once beforehand).
#[derive(Clone, Copy, Debug)]
struct Limit {
    max: RawFd,
    current: RawFd,
    swap_max: RawFd,
}

/// How many times the limit is written: each memory.max write drains the
/// per-cpu charge stocks (mm/memcontrol.c:memory_max_write() →
/// drain_all_stock(), which drains other CPUs' stocks asynchronously), so the
/// usage drops and the limit is set again below the new usage.
const LIMIT_WRITES: usize = 4;

fn fd_write(fd: RawFd, b: &[u8]) -> bool {
    unsafe { libc::pwrite(fd, b.as_ptr() as *const libc::c_void, b.len(), 0) == b.len() as isize }
}

/// Parse a decimal u64 from a cgroup file read through `fd` (no allocation).
fn fd_read_u64(fd: RawFd) -> Option<u64> {
    let mut b = [0u8; 32];
    let n = unsafe { libc::pread(fd, b.as_mut_ptr() as *mut libc::c_void, b.len(), 0) };
    if n <= 0 {
        return None;
    }
    let mut v: u64 = 0;
    let mut any = false;
    for &c in &b[..n as usize] {
        if c.is_ascii_digit() {
            v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
            any = true;
        } else {
            break;
        }
    }
    any.then_some(v)
}

/// Format `v` into `buf` (no allocation); returns the digits.
fn fmt_u64(mut v: u64, buf: &mut [u8; 24]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
}

impl Limit {
    /// Open the control files of the cgroup this process is in, at `dir`.
    fn open(dir: &str) -> Result<Limit, String> {
        let open = |f: &str, flags: i32| -> Result<RawFd, String> {
            let c = std::ffi::CString::new(format!("{dir}/{f}")).map_err(|e| e.to_string())?;
            let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
            if fd < 0 {
                Err(format!("open {dir}/{f}: {}", errno_name(errno())))
            } else {
                Ok(fd)
            }
        };
        let l = Limit {
            max: open("memory.max", libc::O_WRONLY)?,
            current: open("memory.current", libc::O_RDONLY)?,
            swap_max: open("memory.swap.max", libc::O_WRONLY)?,
        };
        // The first read allocates the seq_file buffer; later ones reuse it.
        fd_read_u64(l.current).ok_or("cannot read memory.current")?;
        Ok(l)
    }

    /// Put the cgroup at its limit: no swap (reclaim must not make room by
    /// swapping the program out), then memory.max one page below the usage,
    /// less `slack` pages (what the op itself frees before its last charge,
    /// e.g. a MADV_GUARD_INSTALL zapping small pages before the THP whose
    /// split fails: without it the freed pages would make room), written
    /// until the usage stops dropping (each write drains the per-cpu stocks,
    /// other CPUs' asynchronously), at least LIMIT_WRITES times. No allocation
    /// of ours from here until `lift`.
    fn set(&self, slack: u64) {
        fd_write(self.swap_max, b"0");
        let mut buf = [0u8; 24];
        let below = (1 + slack) * PAGE_SIZE;
        let mut last = u64::MAX;
        for n in 0..4 * LIMIT_WRITES {
            let Some(cur) = fd_read_u64(self.current) else {
                continue;
            };
            if n >= LIMIT_WRITES && cur == last {
                break;
            }
            let v = fmt_u64(cur.saturating_sub(below).max(PAGE_SIZE), &mut buf);
            fd_write(self.max, v);
            // Let other CPUs' drain work run.
            let ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 2_000_000,
            };
            unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
            last = fd_read_u64(self.current).unwrap_or(cur);
        }
    }

    /// Lift the limit (memory.max and memory.swap.max back to max).
    fn lift(&self) {
        fd_write(self.max, b"max");
        fd_write(self.swap_max, b"max");
    }
}

/// The command loop of the process that is mm `idx`. Never returns.
fn mm_process(prog: &Program, pipes: &Pipes, mut p: Proc) -> ! {
    loop {
        let idx = p.idx;
        let mut cmd = [0u8; 16];
        if read_exact(pipes.cmd[idx].0, &mut cmd, None).is_err() {
            unsafe { libc::_exit(3) };
        }
        let kind = u32::from_le_bytes(cmd[0..4].try_into().unwrap());
        let a = u32::from_le_bytes(cmd[4..8].try_into().unwrap()) as usize;
        let b = u32::from_le_bytes(cmd[8..12].try_into().unwrap()) as usize;
        // CMD_OP_LIMITED: the pages the op may uncharge (see `Limit::set`).
        let slack = u32::from_le_bytes(cmd[12..16].try_into().unwrap()) as u64;
        let resp = pipes.resp[idx].1;
        let limited = kind == CMD_OP_LIMITED;
        let kind = if limited { CMD_OP } else { kind };
        let limit = if limited { p.limit } else { None };
        match kind {
            CMD_OP => {
                let op = &prog.ops[a].op;
                if let Some(l) = &limit {
                    if matches!(op, Op::Touch { .. }) {
                        p.limit_pending = Some(slack);
                    } else {
                        l.set(slack);
                    }
                }
                match op {
                    Op::Fork => {
                        if b >= MAX_MMS {
                            // The program language has at most MAX_MMS mms (dup_mmap: EAGAIN).
                            if let Some(l) = &limit {
                                l.lift();
                            }
                            send_msg(resp, "EAGAIN");
                            continue;
                        }
                        let child = b;
                        let pid = unsafe { libc::fork() };
                        let e = errno();
                        if let Some(l) = &limit {
                            l.lift();
                        }
                        if pid < 0 {
                            send_msg(resp, &errno_name(e));
                            continue;
                        }
                        if pid == 0 {
                            p.idx = child;
                            let r = p.open_pagemap();
                            p.open_fds();
                            let r = r.and_then(|_| p.start_handler());
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
                        if let Some(l) = &limit {
                            l.lift();
                        }
                        p.release_pins();
                        send_msg(resp, "ok");
                        unsafe { libc::_exit(0) };
                    }
                    op => {
                        let r = host_op(&mut p, a, op);
                        // (A touch that failed before its reads set nothing.)
                        p.limit_pending = None;
                        if let Some(l) = &limit {
                            l.lift();
                        }
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
            _ => {
                p.release_pins();
                unsafe { libc::_exit(0) }
            }
        }
    }
}

/// How the executor runs a program: on the host (`real`, the defaults) or in
/// the guest (`vm run`: fault plans through our kernel patch, kernel-log markers).
#[derive(Clone, Debug)]
pub struct ExecOpts {
    /// Realise the program's fault plan through /sys/kernel/debug/splitfuzz
    /// (pte_alloc_one() and THP allocations counted across the program's
    /// processes, which have make-it-fail set) and report per-op call counts.
    pub inject: bool,
    /// Write `splitfuzz: op I` to /dev/kmsg before each op, so kernel messages
    /// can be attributed to the op during which they were printed.
    pub markers: bool,
    /// An op (or observation) that does not answer within this is reported hung.
    pub op_timeout: Duration,
    /// The memcg trigger (`memcg.rs`): run the program's processes in this
    /// memory cgroup with oom_score_adj -1000, at its limit during these ops.
    pub memcg: Option<MemcgOpts>,
}

/// Where and when the memcg trigger puts the program at its memory limit.
#[derive(Clone, Debug, Default)]
pub struct MemcgOpts {
    /// The cgroup-v2 directory to create (its parent must be able to enable
    /// the memory controller), e.g. /sys/fs/cgroup/splitfuzz-3.
    pub dir: String,
    /// The ops run at the limit, each with the pages it may uncharge before
    /// its last charge (the limit is set that much lower: `Limit::set`).
    pub limited: Vec<(usize, u64)>,
}

/// Create the program's memory cgroup (enabling the memory controller in its
/// parent) and return its directory.
fn memcg_create(dir: &str) -> Result<()> {
    let parent = std::path::Path::new(dir)
        .parent()
        .ok_or_else(|| anyhow!("bad cgroup path {dir}"))?;
    let ctl = parent.join("cgroup.subtree_control");
    let on = std::fs::read_to_string(&ctl).unwrap_or_default();
    if !on.split_whitespace().any(|w| w == "memory") {
        std::fs::write(&ctl, "+memory")
            .with_context(|| format!("enabling the memory controller in {}", ctl.display()))?;
    }
    let _ = std::fs::remove_dir(dir);
    std::fs::create_dir(dir).with_context(|| format!("creating the cgroup {dir}"))?;
    if !std::path::Path::new(&format!("{dir}/memory.max")).exists() {
        bail!("{dir} has no memory.max (kernel without CONFIG_MEMCG?)");
    }
    Ok(())
}

/// memory.events of the cgroup as `max N oom N oom_kill N` (the counters the
/// limit moves: mm/memcontrol.c memcg_memory_event()).
pub fn memcg_events(dir: &str) -> String {
    let s = std::fs::read_to_string(format!("{dir}/memory.events")).unwrap_or_default();
    let get = |k: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(k).and_then(|v| v.strip_prefix(' ')))
            .unwrap_or("?")
            .trim()
            .to_string()
    };
    format!(
        "max {} oom {} oom_kill {}",
        get("max"),
        get("oom"),
        get("oom_kill")
    )
}

/// Lift the limit from outside (the controller, after a hung op).
fn memcg_lift(dir: &str) {
    let _ = std::fs::write(format!("{dir}/memory.max"), "max");
    let _ = std::fs::write(format!("{dir}/memory.swap.max"), "max");
}

impl Default for ExecOpts {
    fn default() -> Self {
        ExecOpts {
            inject: false,
            markers: false,
            op_timeout: Duration::from_secs(60),
            memcg: None,
        }
    }
}

/// The kernel side of one program: transcript plus per-op THP fallbacks.
#[derive(Clone, Debug, Default)]
pub struct HostRun {
    pub t: Transcript,
    /// THP allocation fallbacks (/proc/vmstat) during each op, minus the
    /// failures the plan injected.
    pub fallbacks: Vec<u64>,
    /// khugepaged collapsed pages (somewhere) during the run.
    pub khugepaged: bool,
    /// The op that did not return (or whose observation did not) within the
    /// bound; the run stopped there.
    pub hung: Option<usize>,
    /// The op the executor cannot run here, and why; the run stopped there.
    pub unsupported: Option<(usize, String)>,
    /// An mm process died or answered nonsense during this op.
    pub broken: Option<(usize, String)>,
    /// The program's processes still alive when the run stopped early.
    pub pids: Vec<i32>,
    /// The memcg trigger: memory.events after each limited op.
    pub memcg_events: Vec<Option<String>>,
}

fn sf_file(rel: &str) -> String {
    format!("{SF_DEBUGFS}/{rel}")
}

/// Calls counted so far by our kernel patch: (pte_alloc_one, THP, THP failed).
fn sf_counts() -> Result<(u32, u32, u32)> {
    let rd = |f: &str| -> Result<u32> {
        let p = sf_file(f);
        read_trim(&p)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("cannot read {p}"))
    };
    Ok((rd("pte_alloc/calls")?, rd("thp/calls")?, rd("thp/failed")?))
}

/// Arm the fault plans (resets the counters), or disarm them (`None`).
pub fn sf_set_plans(prog: Option<&Program>) -> Result<()> {
    let (pte, thp) = match prog {
        Some(p) => (p.faults.pte_alloc.to_string(), p.faults.thp.to_string()),
        None => ("never".into(), "never".into()),
    };
    write_file(
        &sf_file("window"),
        &format!("{:x} {:x}", ARENA_BASE, ARENA_BASE + ARENA_SIZE),
    )
    .map_err(|e| anyhow!(e))?;
    write_file(&sf_file("pte_alloc/plan"), &pte).map_err(|e| anyhow!(e))?;
    write_file(&sf_file("thp/plan"), &thp).map_err(|e| anyhow!(e))?;
    Ok(())
}

/// A line in the kernel log (for attributing kernel messages to ops).
pub fn kmsg(line: &str) {
    let _ = std::fs::write("/dev/kmsg", format!("{line}\n"));
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
    host_run_opts(prog, &ExecOpts::default())
}

/// Run a program on this machine's kernel (the host's, or the guest's).
pub fn host_run_opts(prog: &Program, opts: &ExecOpts) -> Result<HostRun> {
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
    if let Some(mc) = &opts.memcg {
        if let Err(e) = memcg_create(&mc.dir) {
            close_all(&pipes);
            return Err(e);
        }
    }
    // Allocate everything the child needs before fork.
    let mut proc0 = Proc::new(0);
    proc0.uffd_use = prog.ops.iter().any(|l| {
        matches!(
            l.op,
            Op::UffdWp { .. }
                | Op::UffdRegister { .. }
                | Op::UffdUnregister { .. }
                | Op::UffdMove { .. }
                | Op::PagemapScan { .. }
        )
    });
    proc0.uffd_async = prog.uffd_async;
    proc0.guard_use = prog.ops.iter().any(|l| {
        matches!(
            l.op,
            Op::Madvise {
                advice: Advice::GuardInstall,
                ..
            }
        )
    });
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
        // The program's processes (and their handler threads) are the only
        // tasks the fault plan counts; fork and new threads inherit the flag.
        // (The plan is armed only after this process is ready.)
        let r = if opts.inject {
            write_file("/proc/self/make-it-fail", "1")
        } else {
            Ok(())
        };
        // The memcg trigger: this process (and every process and thread it
        // forks) joins the cgroup, and the memcg OOM killer may not pick it
        // (mm/oom_kill.c oom_badness(): OOM_SCORE_ADJ_MIN is never chosen).
        let r = r.and_then(|_| match &opts.memcg {
            Some(mc) => write_file(&format!("{}/cgroup.procs", mc.dir), "0")
                .and_then(|_| write_file("/proc/self/oom_score_adj", "-1000"))
                .and_then(|_| Limit::open(&mc.dir))
                .map(|l| p.limit = Some(l)),
            None => Ok(()),
        });
        // A crash of this process must not spend seconds dumping core.
        let nocore = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        unsafe { libc::setrlimit(libc::RLIMIT_CORE, &nocore) };
        let r = r
            .and_then(|_| setup_arena())
            .and_then(|_| p.open_pagemap())
            .and_then(|_| bind_node0());
        p.open_fds();
        let r = r.and_then(|_| p.start_handler());
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
    let result = drive(prog, &pipes, pid0, opts);
    for k in 0..MAX_MMS {
        unsafe {
            libc::close(pipes.cmd[k].1);
            libc::close(pipes.resp[k].0);
        }
    }
    // A hung op's process may not die on SIGKILL (a livelock in the kernel):
    // never wait for it.
    let stuck = result.as_ref().is_ok_and(|r| r.hung.is_some());
    unsafe {
        libc::kill(pid0, libc::SIGKILL);
        let mut st = 0;
        libc::waitpid(pid0, &mut st, if stuck { libc::WNOHANG } else { 0 });
    }
    if let Some(mc) = &opts.memcg {
        if !stuck {
            // Empty once its processes are gone (the forked ones may take a moment).
            for _ in 0..100 {
                if std::fs::remove_dir(&mc.dir).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    result
}

fn drive(prog: &Program, pipes: &Pipes, pid0: i32, opts: &ExecOpts) -> Result<HostRun> {
    let cmd4 = |k: usize, kind: u32, a: u32, c: u32, d: u32| -> bool {
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&kind.to_le_bytes());
        b[4..8].copy_from_slice(&a.to_le_bytes());
        b[8..12].copy_from_slice(&c.to_le_bytes());
        b[12..16].copy_from_slice(&d.to_le_bytes());
        write_all(pipes.cmd[k].1, &b)
    };
    let cmd = |k: usize, kind: u32, a: u32, c: u32| cmd4(k, kind, a, c, 0);
    let recv = |k: usize| recv_msg(pipes.resp[k].0, opts.op_timeout);
    let ready = |k: usize| -> Result<i32, String> {
        let m = recv(k)?;
        m.strip_prefix("ready ")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("mm {k}: {m}"))
    };
    let mut pids: Vec<Option<i32>> = vec![None; MAX_MMS];
    pids[0] = Some(ready(0).map_err(|e| anyhow!("mm 0: {e}"))?);
    let _ = pid0;
    let mut nprocs = 1;
    let kh0 = khugepaged_collapsed();
    let n = prog.ops.len();
    let mut run = HostRun {
        t: Transcript {
            results: vec![None; n],
            obs: vec![Vec::new(); n],
            allocs: vec![None; n],
        },
        fallbacks: vec![0; n],
        memcg_events: vec![None; n],
        ..Default::default()
    };
    let limit_of = |i: usize| {
        opts.memcg
            .as_ref()
            .and_then(|mc| mc.limited.iter().find(|l| l.0 == i).map(|l| l.1))
    };
    let limited = |i: usize| limit_of(i).is_some();
    if opts.inject {
        sf_set_plans(Some(prog))?;
    }
    let mut thp_failed = 0u32;
    'ops: for (i, line) in prog.ops.iter().enumerate() {
        let m = line.mm;
        if pids.get(m).copied().flatten().is_none() {
            continue;
        }
        if opts.markers {
            kmsg(&format!("splitfuzz: op {i}"));
        }
        let fb0 = vmstat_fallbacks();
        let (kind, slack) = match limit_of(i) {
            Some(s) => (CMD_OP_LIMITED, s.min(u32::MAX as u64) as u32),
            None => (CMD_OP, 0),
        };
        if !cmd4(m, kind, i as u32, nprocs as u32, slack) {
            run.broken = Some((i, format!("mm {m} is gone")));
            break;
        }
        let r = match recv(m) {
            Ok(r) => r,
            Err(e) if e.starts_with("timeout") => {
                run.hung = Some(i);
                break;
            }
            Err(e) => {
                run.broken = Some((i, format!("mm {m}: {e}")));
                break;
            }
        };
        if let Some(why) = r.strip_prefix(UNSUPPORTED) {
            run.unsupported = Some((i, why.to_string()));
            break;
        }
        match line.op {
            Op::Fork if r == "ok" => match ready(nprocs) {
                Ok(pid) => {
                    pids[nprocs] = Some(pid);
                    nprocs += 1;
                }
                Err(e) if e.starts_with("timeout") => {
                    run.hung = Some(i);
                    break;
                }
                Err(e) => {
                    run.broken = Some((i, e));
                    break;
                }
            },
            Op::Exit => {
                if let Some(pid) = pids[m].take() {
                    wait_exit(pid);
                }
            }
            _ => {}
        }
        let mut fb = vmstat_fallbacks().saturating_sub(fb0);
        if opts.inject {
            let (pte, thp, failed) = sf_counts()?;
            run.t.allocs[i] = Some((pte, thp));
            fb = fb.saturating_sub(failed.saturating_sub(thp_failed) as u64);
            thp_failed = failed;
        }
        run.fallbacks[i] = fb;
        if let (true, Some(mc)) = (limited(i), &opts.memcg) {
            run.memcg_events[i] = Some(memcg_events(&mc.dir));
        }
        run.t.results[i] = Some(r);
        for (k, pid) in pids.iter().enumerate() {
            if pid.is_some() {
                if !cmd(k, CMD_OBSERVE, 0, 0) {
                    run.broken = Some((i, format!("mm {k} is gone")));
                    break 'ops;
                }
                match recv(k) {
                    Ok(o) => run.t.obs[i].push(o),
                    Err(e) if e.starts_with("timeout") => {
                        run.hung = Some(i);
                        break 'ops;
                    }
                    Err(e) => {
                        run.broken = Some((i, format!("mm {k}: {e}")));
                        break 'ops;
                    }
                }
            }
        }
    }
    if opts.inject {
        sf_set_plans(None)?;
    }
    if let Some(mc) = &opts.memcg {
        // A hung op's process never got to lift its limit.
        memcg_lift(&mc.dir);
        if let Some(i) = run.hung.filter(|&i| limited(i)) {
            run.memcg_events[i] = Some(memcg_events(&mc.dir));
        }
    }
    if run.hung.is_none() && run.broken.is_none() {
        if opts.markers {
            kmsg("splitfuzz: teardown");
        }
        for (k, pid) in pids.iter().enumerate() {
            if let Some(pid) = pid {
                cmd(k, CMD_QUIT, 0, 0);
                wait_exit(*pid);
            }
        }
    }
    run.khugepaged = khugepaged_collapsed() != kh0;
    run.pids = pids.iter().flatten().copied().collect();
    Ok(run)
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
    first_divergence_upto(model, kernel, usize::MAX)
}

/// The first difference in ops `0..=last`: result, allocation counts (where
/// both sides count them), then every live mm's observation line.
pub fn first_divergence_upto(
    model: &Transcript,
    kernel: &Transcript,
    last: usize,
) -> Option<Divergence> {
    for i in 0..model.results.len().min(last.saturating_add(1)) {
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
        if let (Some(Some(ma)), Some(Some(ka))) = (model.allocs.get(i), kernel.allocs.get(i)) {
            if ma != ka {
                return Some(Divergence {
                    op: i,
                    mm: None,
                    field: "alloc".into(),
                    model: format!("pte_alloc {} thp {}", ma.0, ma.1),
                    kernel: format!("pte_alloc {} thp {}", ka.0, ka.1),
                });
            }
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

/// The first divergence of a model run from a kernel transcript, over the ops
/// the model completed (up to its violation, if any).
pub fn model_divergence(mr: &ModelRun, kernel: &Transcript) -> Option<Divergence> {
    let last = mr.violation_at.map(|v| v.0).unwrap_or(usize::MAX);
    first_divergence_upto(&mr.t, kernel, last)
}

/// Run the model under `policy` with the program's fault plan and compare it
/// with the kernel's run. Where an op diverges and the kernel fell back from
/// THP allocations by itself during it (/proc/vmstat), the model is re-run with
/// those THP calls failed too (`fail thp at=...`), keeping what explains the
/// kernel best. Returns the model run, the THP calls fed, and the divergence.
pub fn fit_model(
    prog: &Program,
    policy: &Policy,
    linux: (u32, u32),
    hr: &HostRun,
) -> (ModelRun, Vec<u32>, Option<Divergence>) {
    fit_model_by(hr, &|f| model_run_with(prog, policy, linux, f))
}

/// `fit_model` with any model: `run(thp_fail)` runs it with those THP calls
/// failed besides its own plan.
pub fn fit_model_by(
    hr: &HostRun,
    run: &dyn Fn(&[u32]) -> ModelRun,
) -> (ModelRun, Vec<u32>, Option<Divergence>) {
    let mut fails: Vec<u32> = Vec::new();
    let mut mr = run(&fails);
    let mut d = model_divergence(&mr, &hr.t);
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
            let r = run(&f);
            let nd = model_divergence(&r, &hr.t);
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
    (mr, fails, d)
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
        if let Some((i, why)) = &hr.unsupported {
            return Ok(Checked {
                verdict: Verdict::Unsupported(format!("op {i}: {why}")),
                model: None,
                host: None,
            });
        }
        if let Some(i) = hr.hung {
            bail!("op {i} `{}` did not return within 60 s", op_text(prog, i));
        }
        if let Some((i, e)) = &hr.broken {
            bail!("op {i} `{}`: {e}", op_text(prog, *i));
        }
        let mut p = prog.clone();
        p.faults = Default::default();
        let (mr, fails, d) = fit_model(&p, &Policy::preset(Preset::Deposit), host.linux(), &hr);
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
    generate_with(host, n, seed, false, "deposit", skipped)
}

/// Programs from the model's decoder over seeded random bytes, keeping their
/// decoded fault plans when `faults` (the guest realises them), with the ops
/// `host` cannot run removed (counted by reason), under policy `policy`.
pub fn generate_with(
    host: &Host,
    n: usize,
    seed: u64,
    faults: bool,
    policy: &str,
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
            if !faults {
                p.faults = Default::default();
            }
            p.ops.retain(|l| match host.unsupported(&l.op) {
                Some(why) => {
                    let key = why.split(':').next().unwrap_or(why).to_string();
                    *skipped.entry(key).or_default() += 1;
                    false
                }
                None => true,
            });
            p.policy = Some(policy.into());
            p.overrides.clear();
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
        let c = match check_program(&host, p) {
            Ok(c) => c,
            Err(e) => {
                say!("{name}: the host run failed: {e:#}");
                for l in p.to_text().lines() {
                    say!("    | {l}");
                }
                return Err(e);
            }
        };
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
