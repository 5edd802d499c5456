//! The input format: `Program { ops, fault plan }`, decoded from any byte string
//! (the `arbitrary` crate's `Unstructured`) and written/read as line-oriented text.
//!
//! Addresses and sizes are byte offsets in the arena in the kernel geometry
//! (4 KiB pages, 2 MiB PMDs). The decoder puts them on a grid of eighths of a PMD
//! (256 KiB), which every geometry represents exactly, so one program means the
//! same thing with 512 PTEs per table and with the small fuzzing geometry.

mod bytes;
pub mod generate;
pub mod minimize;
pub mod mutate;
pub mod plan;
mod text;

pub use bytes::encode;
pub use text::{fmt_size, parse_size};

pub use crate::base::{ARENA_PMDS, ARENA_SIZE, GRID, MAX_MMS, PAGE_SIZE, PMD_SIZE};
pub use plan::Plan;
use std::fmt;

/// Upper bound on ops decoded from bytes.
pub const MAX_DECODED_OPS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Advice {
    Dontneed,
    Free,
    Cold,
    Pageout,
    Collapse,
    /// MADV_GUARD_INSTALL: PTE guard markers (zaps what is mapped first).
    GuardInstall,
    /// MADV_GUARD_REMOVE
    GuardRemove,
}

impl Advice {
    pub const ALL: [Advice; 7] = [
        Advice::Dontneed,
        Advice::Free,
        Advice::Cold,
        Advice::Pageout,
        Advice::Collapse,
        Advice::GuardInstall,
        Advice::GuardRemove,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Advice::Dontneed => "dontneed",
            Advice::Free => "free",
            Advice::Cold => "cold",
            Advice::Pageout => "pageout",
            Advice::Collapse => "collapse",
            Advice::GuardInstall => "guard-install",
            Advice::GuardRemove => "guard-remove",
        }
    }
}

/// One user-level action. Ranges are `[start, start+len)` in arena bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `mmap(MAP_FIXED|MAP_PRIVATE|MAP_ANONYMOUS)`, optionally `MADV_HUGEPAGE`.
    Mmap {
        start: u64,
        len: u64,
        thp: bool,
    },
    Munmap {
        start: u64,
        len: u64,
    },
    /// `mprotect` to `PROT_READ` (write=false) or `PROT_READ|PROT_WRITE`.
    Mprotect {
        start: u64,
        len: u64,
        write: bool,
    },
    /// Read or write every page of the range (writes store a tag per op and page).
    Touch {
        start: u64,
        len: u64,
        write: bool,
    },
    Madvise {
        start: u64,
        len: u64,
        advice: Advice,
    },
    Fork,
    /// `pin_user_pages(FOLL_WRITE|FOLL_LONGTERM)` on every page.
    Pin {
        start: u64,
        len: u64,
    },
    Unpin {
        start: u64,
        len: u64,
    },
    /// `mremap(old, len, len, MREMAP_MAYMOVE|MREMAP_FIXED, new)`.
    Mremap {
        old: u64,
        len: u64,
        new: u64,
    },
    /// Reclaim the folio mapped at `addr` (shrink_folio_list → try_to_unmap).
    Reclaim {
        addr: u64,
    },
    /// Migrate the folio mapped at `addr` (migrate_pages → try_to_migrate).
    Migrate {
        addr: u64,
    },
    /// `exit_mmap` + `check_mm`.
    Exit,
    /// `UFFDIO_REGISTER` (mode WP) with this process's userfaultfd.
    UffdRegister {
        start: u64,
        len: u64,
    },
    /// `UFFDIO_UNREGISTER`
    UffdUnregister {
        start: u64,
        len: u64,
    },
    /// `UFFDIO_MOVE` (mode 0) of `[src, src+len)` to `[dst, dst+len)`.
    UffdMove {
        dst: u64,
        src: u64,
        len: u64,
    },
    /// `ioctl(PAGEMAP_SCAN)` with PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC on
    /// the written pages (category and return mask PAGE_IS_WRITTEN).
    PagemapScan {
        start: u64,
        len: u64,
    },
    /// `mlock2(start, len, 0)`
    Mlock {
        start: u64,
        len: u64,
    },
    /// `munlock(start, len)`
    Munlock {
        start: u64,
        len: u64,
    },
    /// `mbind(MPOL_BIND, {node}, MPOL_MF_MOVE)`
    Mbind {
        start: u64,
        len: u64,
        node: u8,
    },
    /// `echo 3 > /proc/sys/vm/drop_caches`: `shrink_slab()` runs the
    /// deferred-split shrinker (`deferred_split_scan()`).
    DropCaches,
    /// `UFFDIO_WRITEPROTECT` (mode WP on, or off = resolve) on a range registered
    /// with `UFFDIO_REGISTER_MODE_WP`: `change_protection()` without a VMA split.
    UffdWp {
        start: u64,
        len: u64,
        on: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpLine {
    pub op: Op,
    /// The process: 0 is the initial mm, forks get 1, 2, 3.
    pub mm: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct FaultPlan {
    pub pte_alloc: Plan,
    pub thp: Plan,
    /// Contiguous PMD-order swap clusters (`folio_alloc_swap()` of a THP in
    /// reclaim): `fail swap-cluster ...`.
    pub swap_cluster: Plan,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    Ok,
    /// `expect violation INVARIANT FUNCTION [SEVERITY]`.
    Violation {
        invariant: String,
        function: String,
        severity: Option<String>,
    },
}

impl Expect {
    /// Does a run's violation (or its absence) meet this expectation? `Err`
    /// says in words what differed.
    pub fn check(&self, got: Option<&crate::base::Violation>) -> Result<(), String> {
        match (self, got) {
            (Expect::Ok, None) => Ok(()),
            (Expect::Ok, Some(v)) => Err(format!(
                "expected no violation, got {} [{}]",
                v.signature(),
                v.severity
            )),
            (Expect::Violation { .. }, None) => {
                Err(format!("expected {}, got no violation", self.describe()))
            }
            (
                Expect::Violation {
                    invariant,
                    function,
                    severity,
                },
                Some(v),
            ) => {
                let sev_ok = severity.as_deref().is_none_or(|s| s == v.severity.name());
                if v.invariant.name() == invariant && v.function == *function && sev_ok {
                    Ok(())
                } else {
                    Err(format!(
                        "expected {}, got {} [{}]",
                        self.describe(),
                        v.signature(),
                        v.severity
                    ))
                }
            }
        }
    }

    /// The expectation in words (as the `expect` line says it).
    pub fn describe(&self) -> String {
        match self {
            Expect::Ok => "no violation".into(),
            Expect::Violation {
                invariant,
                function,
                severity,
            } => match severity {
                Some(s) => format!("{invariant} {function} [{s}]"),
                None => format!("{invariant} {function}"),
            },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Program {
    /// Optional `policy NAME` line (the CLI flag wins).
    pub policy: Option<String>,
    /// `uffd async`: every process's userfaultfd has UFFD_FEATURE_WP_ASYNC.
    pub uffd_async: bool,
    /// `override CALLER=STRATEGY` lines, applied on top of the policy.
    pub overrides: Vec<String>,
    pub faults: FaultPlan,
    pub ops: Vec<OpLine>,
    /// Optional `expect` line, checked by `cargo test` and `splitfuzz run`.
    pub expect: Option<Expect>,
    /// `expect op N RESULT` lines: op N (0-based) returns RESULT (`ok`, an
    /// errno name such as `ENOMEM`, `oom-loop`, `no-mm`).
    pub expect_results: Vec<(usize, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_from_the_issue_parses() {
        let t = "policy lazy-v3\nfail pte_alloc nth=2\nmmap 0 8M thp\ntouch 0 4M write\nfork\npin 2M 4K\n\
                 mprotect 1M 4K r mm=1\nmadvise 6M 8K dontneed\nmremap 0 2M 10M\nreclaim 2M\nmigrate 4M\n\
                 uffd-register 0 8M\nmunmap 0 8M\nexpect violation no-silent-skip zap_pmd_range # c\n";
        let p = Program::parse(t).unwrap();
        assert_eq!(p.ops.len(), 11);
        assert_eq!(p.ops[4].mm, 1);
        assert_eq!(Program::parse(&p.to_text()).unwrap(), p);
    }

    #[test]
    fn errors_name_the_line() {
        let e = Program::parse("mmap 0 8M\ntouch 0 4M sideways\n").unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
        assert!(Program::parse("mmap 0 64M").is_err());
        assert!(Program::parse("fail pte_alloc nth=0").is_err());
        assert!(Program::parse("mmap 3 4K").is_err());
        assert!(Program::parse("frobnicate").is_err());
        assert!(Program::parse("touch 0 4K write mm=9").is_err());
    }

    #[test]
    fn any_bytes_decode_and_roundtrip_through_text() {
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for n in 0..2000 {
            let bytes: Vec<u8> = (0..(n % 200))
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let p = Program::decode(&bytes);
            let back = Program::parse(&p.to_text()).unwrap();
            assert_eq!(back, p, "{}", p.to_text());
            let bytes = encode(&p).unwrap();
            assert_eq!(Program::decode(&bytes), p);
        }
    }

    #[test]
    fn op_scoped_plans_parse_print_and_stay_out_of_the_byte_format() {
        for (text, plan) in [
            (
                "op=2:nth=3",
                Plan::InOp {
                    op: 2,
                    nth: Some(3),
                },
            ),
            ("op=0:all", Plan::InOp { op: 0, nth: None }),
            ("from-op=4", Plan::FromOp(4)),
        ] {
            let p = Program::parse(&format!("fail pte_alloc {text}\nmmap 0 2M\n")).unwrap();
            assert_eq!(p.faults.pte_alloc, plan);
            assert_eq!(plan.to_string(), text);
            assert!(plan.is_op_scoped());
            assert!(Program::parse(&p.to_text()).unwrap().faults == p.faults);
            assert!(encode(&p).unwrap_err().contains("outside the byte format"));
        }
        for bad in ["op=2", "op=x:all", "op=1:nth=0", "op=1:some", "from-op=y"] {
            assert!(
                Program::parse(&format!("fail thp {bad}\nmmap 0 2M\n")).is_err(),
                "{bad}"
            );
        }
        // Armed in the kernel's counting for the op it covers.
        let inop = Plan::InOp {
            op: 2,
            nth: Some(3),
        };
        assert_eq!(inop.armed_in_op(2), Some((Plan::Nth(3), false)));
        assert_eq!(inop.armed_in_op(3), None);
        assert_eq!(Plan::FromOp(1).armed_in_op(4), Some((Plan::From(1), true)));
        assert_eq!(Plan::FromOp(1).armed_in_op(0), None);
    }
}
