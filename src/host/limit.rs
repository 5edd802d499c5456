//! The memcg trigger's kernel side: the program's memory cgroup, and the
//! limit its process sets and lifts around an op without allocating.

use super::sys::*;
use crate::observe::line::*;
use crate::prog::PAGE_SIZE;
use anyhow::{anyhow, bail, Context, Result};
use nix::libc;
use std::os::fd::RawFd;
/// The memcg trigger: the program's cgroup's control files, opened by mm 0
/// after it joined the cgroup (so later forks inherit them) and before any op,
/// so setting and lifting the limit allocates nothing (no open(), no new
/// seq_file buffer: memory.current is read once beforehand).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limit {
    pub(crate) max: RawFd,
    pub(crate) current: RawFd,
    pub(crate) swap_max: RawFd,
}

/// How many times the limit is written: each memory.max write drains the
/// per-cpu charge stocks (mm/memcontrol.c:memory_max_write() →
/// drain_all_stock(), which drains other CPUs' stocks asynchronously), so the
/// usage drops and the limit is set again below the new usage.
pub(crate) const LIMIT_WRITES: usize = 4;

pub(crate) fn fd_write(fd: RawFd, b: &[u8]) -> bool {
    unsafe { libc::pwrite(fd, b.as_ptr() as *const libc::c_void, b.len(), 0) == b.len() as isize }
}

/// Parse a decimal u64 from a cgroup file read through `fd` (no allocation).
pub(crate) fn fd_read_u64(fd: RawFd) -> Option<u64> {
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
pub(crate) fn fmt_u64(mut v: u64, buf: &mut [u8; 24]) -> &[u8] {
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
    pub(crate) fn open(dir: &str) -> Result<Limit, String> {
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
    pub(crate) fn set(&self, slack: u64) {
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
    pub(crate) fn lift(&self) {
        fd_write(self.max, b"max");
        fd_write(self.swap_max, b"max");
    }
}

/// Create the program's memory cgroup (enabling the memory controller in its
/// parent) and return its directory.
pub(crate) fn memcg_create(dir: &str) -> Result<()> {
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
pub(crate) fn memcg_lift(dir: &str) {
    let _ = std::fs::write(format!("{dir}/memory.max"), "max");
    let _ = std::fs::write(format!("{dir}/memory.swap.max"), "max");
}
