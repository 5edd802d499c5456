//! Kernel coverage of a program's ops through KCOV (`vm fuzz`).
//!
//! The guest kernel has CONFIG_KCOV with only the files of
//! kernel/patches/0002-splitfuzz-kcov-scope.patch instrumented (mm/,
//! fs/proc/task_mmu.c, arch/x86/mm/pgtable.c). KCOV records the PCs of the
//! task that enabled it (kernel/kcov.c `__sanitizer_cov_trace_pc()` checks
//! `current`'s mode), so this sees what an op does in the task that runs it:
//! the mm process's system calls and page faults. It does not see what other
//! tasks do for the op: kworkers (deferred frees, lru drains), khugepaged
//! (asleep in the guest anyway), kswapd (reclaim in the background), nor the
//! uffd handler thread of the mm process, nor interrupts. (KCOV's remote
//! handles would cover the kworkers only where the kernel annotates them with
//! `kcov_remote_start()`; mm/ has no such annotation, so they are not used.)
//!
//! One buffer per possible mm of a program, opened and mapped by the
//! controller once (before it forks mm 0, so every mm process inherits every
//! fd and mapping, and no mm maps anything after its baseline); mm `k`
//! enables the k-th in its own task (`KCOV_ENABLE`); the controller zeroes the
//! running mm's count before each op and reads its PCs after the op answers.

use crate::prog::MAX_MMS;
use nix::libc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Entries per buffer (8 bytes each; entry 0 is the count).
const COVER_SIZE: usize = 1 << 17;
const KCOV_INIT_TRACE: libc::c_ulong = 0x8008_6301; // _IOR('c', 1, unsigned long)
const KCOV_ENABLE: libc::c_ulong = 0x6364; // _IO('c', 100)
const KCOV_TRACE_PC: libc::c_ulong = 0;

/// The KCOV buffers of one program's mms.
#[derive(Clone, Debug)]
pub struct Kcov {
    fds: Vec<libc::c_int>,
    areas: Vec<usize>,
}

/// Coverage of one op: the distinct PCs (low 32 bits of the kernel address)
/// and edges it reached, and whether one of its allocations failed by plan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpCov {
    pub pcs: Vec<u32>,
    pub edges: Vec<u32>,
    pub failed: bool,
}

impl Kcov {
    /// Open and map a buffer per mm; an error if the kernel has no KCOV.
    pub fn open() -> Result<Kcov, String> {
        let mut k = Kcov {
            fds: Vec::new(),
            areas: Vec::new(),
        };
        for _ in 0..MAX_MMS {
            let fd = unsafe {
                libc::open(
                    c"/sys/kernel/debug/kcov".as_ptr(),
                    libc::O_RDWR | libc::O_CLOEXEC,
                )
            };
            if fd < 0 {
                return Err(format!(
                    "open /sys/kernel/debug/kcov: {} (a kernel without CONFIG_KCOV?)",
                    std::io::Error::last_os_error()
                ));
            }
            k.fds.push(fd);
            if unsafe { libc::ioctl(fd, KCOV_INIT_TRACE as _, COVER_SIZE as libc::c_ulong) } != 0 {
                return Err(format!(
                    "KCOV_INIT_TRACE: {}",
                    std::io::Error::last_os_error()
                ));
            }
            let a = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    COVER_SIZE * 8,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    fd,
                    0,
                )
            };
            if a == libc::MAP_FAILED {
                return Err(format!("mmap kcov: {}", std::io::Error::last_os_error()));
            }
            k.areas.push(a as usize);
        }
        Ok(k)
    }

    fn count(&self, mm: usize) -> &AtomicU64 {
        // SAFETY: entry 0 of a live shared mapping, 8-byte aligned.
        unsafe { &*(self.areas[mm] as *const AtomicU64) }
    }

    /// In mm `mm`'s own task: trace this task into its buffer.
    pub fn enable(&self, mm: usize) -> Result<(), String> {
        if unsafe { libc::ioctl(self.fds[mm], KCOV_ENABLE as _, KCOV_TRACE_PC) } != 0 {
            return Err(format!("KCOV_ENABLE: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Before an op of mm `mm`: forget what its task did so far.
    pub fn reset(&self, mm: usize) {
        self.count(mm).store(0, Ordering::Relaxed);
    }

    /// After an op of mm `mm`: the PCs its task reached, in order.
    pub fn take(&self, mm: usize) -> Vec<u64> {
        let n = (self.count(mm).load(Ordering::Relaxed) as usize).min(COVER_SIZE - 1);
        let base = self.areas[mm] as *const u64;
        // SAFETY: entries 1..=n of the live mapping.
        (1..=n)
            .map(|i| unsafe { std::ptr::read_volatile(base.add(i)) })
            .collect()
    }
}

/// A 32-bit integer mix (multiply-xorshift), for the previous PC's low bits.
fn mix(x: u32) -> u32 {
    let mut h = x.wrapping_mul(0x9e37_79b1);
    h ^= h >> 15;
    h = h.wrapping_mul(0x85eb_ca77);
    h ^ (h >> 13)
}

/// Edges of a PC sequence as syzkaller's executor makes its signal
/// (executor/executor.cc, `write_signal`): each PC xor a hash of the
/// previous PC's low 12 bits, kept to 12 bits, so an edge is independent of
/// where the kernel is loaded. Low 32 bits of the kernel addresses.
pub fn edges(pcs: &[u64]) -> Vec<u32> {
    let mut prev = 0u32;
    let mut out: Vec<u32> = pcs
        .iter()
        .map(|&pc| {
            let pc = pc as u32;
            let e = pc ^ (mix(prev & 0xfff) & 0xfff);
            prev = pc;
            e
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// One op's coverage from its PC sequence.
pub fn op_cov(pcs: &[u64], failed: bool) -> OpCov {
    let mut p: Vec<u32> = pcs.iter().map(|&x| x as u32).collect();
    p.sort_unstable();
    p.dedup();
    OpCov {
        pcs: p,
        edges: edges(pcs),
        failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_tell_paths_apart_and_dedup() {
        let a = 0xffff_ffff_8100_1000u64;
        let b = 0xffff_ffff_8100_2004u64;
        let c = 0xffff_ffff_8100_3008u64;
        // a→b→c and a→c→b reach the same PCs by different edges.
        let x = op_cov(&[a, b, c], false);
        let y = op_cov(&[a, c, b], false);
        assert_eq!(x.pcs, y.pcs);
        assert_ne!(x.edges, y.edges);
        // A loop repeats its edges: no new ones.
        assert_eq!(op_cov(&[a, b, a, b, a, b], false).edges.len(), 3);
        // The edge into a PC keeps its high bits.
        assert!(x
            .edges
            .iter()
            .all(|e| e >> 12 == 0x81001 || e >> 12 == 0x81002 || e >> 12 == 0x81003));
    }
}
