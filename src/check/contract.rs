//! The contract of an op that runs while allocations inside it fail: what any
//! kernel may do, whatever its split-failure strategy (no preset needed).
//! Written once, here: the kernel oracle (`verdict::contract`, `vm check`)
//! reads it. docs/contract.md says why each rule is so.
//!
//! An op whose allocation fails must give one of:
//! * **full effect**: the result and state that `deposit` gives for the op
//!   with no failure (page tables are the kernel's business: VmPTE, THP or
//!   small pages are not part of the effect);
//! * **clean failure**: an errno of [`may_fail_with`], with every page old or
//!   new (an op that fails may have changed part of its range, as a failed
//!   mprotect or munmap may leave VMAs split: mm/vma.c vma_modify());
//! * for an **advisory** op ([`advisory`]: MADV_COLD, MADV_PAGEOUT,
//!   MADV_FREE, reclaim), success with less done: every page old or new;
//! * for a **fault** ([`is_fault`]), a retry under VM_FAULT_OOM: the task
//!   stays in the page-fault loop until the allocation succeeds or the task
//!   is killed (arch/x86/mm/fault.c do_user_addr_fault() →
//!   mm/oom_kill.c pagefault_out_of_memory()); that is the designed OOM path,
//!   told apart from a loop with no OOM by the kernel's own words for it.
//!
//! Always: the op returns within the bound, SIGKILL ends a task that loops,
//! the kernel logs no complaint, and at teardown the page tables are gone.

use crate::base::Severity;
use crate::prog::{Advice, Op};

/// The errnos an op may return when an allocation inside it fails. ENOMEM is
/// every syscall's answer to a failed allocation; EAGAIN is madvise's for a
/// transient one (mm/madvise.c madvise_walk_vmas() turns -ENOMEM from a
/// VMA op into -EAGAIN), mlock's (mm/mlock.c) and fork's (kernel/fork.c
/// copy_process(): -EAGAIN from the rlimit paths, -ENOMEM otherwise); EBUSY
/// and EAGAIN are UFFDIO_MOVE's (mm/userfaultfd.c move_pages(): a folio it
/// cannot lock or split now). A fault returns no errno.
pub fn may_fail_with(op: &Op) -> &'static [&'static str] {
    match op {
        Op::Touch { .. } => &[],
        Op::UffdMove { .. } => &["ENOMEM", "EAGAIN", "EBUSY"],
        Op::Madvise { .. } | Op::Fork | Op::Mlock { .. } | Op::Munlock { .. } => {
            &["ENOMEM", "EAGAIN"]
        }
        Op::Migrate { .. } | Op::Mbind { .. } => &["ENOMEM", "EAGAIN", "EBUSY"],
        _ => &["ENOMEM", "EAGAIN"],
    }
}

/// An errno `e` (by name) is in the op's contract for a failed allocation.
pub fn allows(op: &Op, e: &str) -> bool {
    may_fail_with(op).contains(&e)
}

/// Ops that discard the contents of their range before the step that can
/// fail, so a failure may leave a page discarded (reading zero) instead of old
/// or new. MADV_GUARD_INSTALL: mm/madvise.c madvise_guard_install() walks the
/// range, zaps it when it finds populated entries, and walks again to install
/// the markers; that walk allocates the page table (install_pte, through
/// __pte_alloc()), and -ENOMEM from it returns with the range zapped and not
/// guarded. The caller asked for the contents to go; the guard is what is
/// missing, and the call says so. (Found by `vm fuzz` on stock 7.2.)
pub fn may_discard_on_failure(op: &Op) -> bool {
    matches!(
        op,
        Op::Madvise {
            advice: Advice::GuardInstall,
            ..
        }
    )
}

/// The range a failed op may leave unmapped although the caller had it
/// mapped: mremap's destination. 7.2 mm/mremap.c mremap_to() unmaps
/// `[new_addr, new_addr + new_len)` (do_munmap(), MREMAP_FIXED) before
/// move_vma() allocates anything, and a later failure does not map it again
/// (found by `vm fuzz` on 7.2 + v3: move_page_tables()'s own __pte_alloc()
/// failed after the destination was gone; stock 7.2 does the same).
pub fn may_unmap_on_failure(op: &Op) -> Option<(u64, u64)> {
    match op {
        Op::Mremap { len, new, .. } => Some((*new, new + len)),
        _ => None,
    }
}

/// Advisory ops may do less than asked and still return success.
pub fn advisory(op: &Op) -> bool {
    matches!(
        op,
        Op::Madvise {
            advice: Advice::Cold | Advice::Pageout | Advice::Free,
            ..
        } | Op::Reclaim { .. }
            | Op::DropCaches
    )
}

/// A page fault (the executor's `touch`): no errno, retries on VM_FAULT_OOM.
pub fn is_fault(op: &Op) -> bool {
    matches!(op, Op::Touch { .. })
}

/// The kernel's words for the designed OOM path of a fault: the page-fault
/// handler retrying VM_FAULT_OOM (mm/oom_kill.c pagefault_out_of_memory()),
/// or the OOM killer being invoked for it (a memcg at its limit).
pub const OOM_RETRY_LOG: &[&str] = &[
    "VM_FAULT_OOM leaked out to the #PF handler",
    "invoked oom-killer",
];

/// At most this many page faults completed in 300 ms of a hung fault mean
/// it is not spinning through completed faults: the OOM retry (a fault that
/// returns success and refaults completes thousands in that time, even
/// under TCG; the executor's uffd handler thread may complete one).
pub const OOM_RETRY_MAX_FAULTS: u64 = 8;

/// How a breach of the contract hurts, worst first (the model's classes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Breach {
    /// BUG, Oops, WARNING, bad pmd, Bad rss-counter, a kernel that went down.
    Complaint,
    /// Success (or a clean-failure errno) with a page that is neither its old
    /// nor its new state: data kept that should be gone, or lost.
    Page,
    /// A range the call reported unmapped or moved stays mapped, empty.
    LeftMapped,
    /// The op did not return and its task survived SIGKILL.
    Unkillable,
    /// The op did not return (no OOM retry), SIGKILL ended it.
    Killable,
    /// An errno outside [`may_fail_with`].
    Errno,
}

impl Breach {
    pub fn severity(self) -> Severity {
        match self {
            Breach::Complaint => Severity::Crash,
            Breach::Page => Severity::DataLoss,
            Breach::Unkillable => Severity::UnkillableLoop,
            Breach::Killable => Severity::KillableLoop,
            Breach::LeftMapped => Severity::Leak,
            Breach::Errno => Severity::WrongErrno,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Breach::Complaint => "kernel-complaint",
            Breach::Page => "page-neither-old-nor-new",
            Breach::LeftMapped => "left-mapped",
            Breach::Unkillable => "unkillable-loop",
            Breach::Killable => "loop",
            Breach::Errno => "errno-outside-contract",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_have_no_errno_and_madvise_may_say_eagain() {
        let touch = Op::Touch {
            start: 0,
            len: 4096,
            write: true,
        };
        assert!(may_fail_with(&touch).is_empty() && is_fault(&touch));
        let dontneed = Op::Madvise {
            start: 0,
            len: 4096,
            advice: Advice::Dontneed,
        };
        assert!(allows(&dontneed, "EAGAIN") && allows(&dontneed, "ENOMEM"));
        assert!(!allows(&dontneed, "EINVAL") && !advisory(&dontneed));
        let cold = Op::Madvise {
            start: 0,
            len: 4096,
            advice: Advice::Cold,
        };
        assert!(advisory(&cold));
        let guard = Op::Madvise {
            start: 0,
            len: 4096,
            advice: Advice::GuardInstall,
        };
        assert!(may_discard_on_failure(&guard) && !may_discard_on_failure(&dontneed));
        let mremap = Op::Mremap {
            old: 0,
            len: 4 << 20,
            new: 8 << 20,
        };
        assert_eq!(may_unmap_on_failure(&mremap), Some((8 << 20, 12 << 20)));
        assert_eq!(may_unmap_on_failure(&dontneed), None);
        assert_eq!(Breach::Page.severity(), Severity::DataLoss);
    }
}
