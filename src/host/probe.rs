//! What this kernel can run: THP settings, userfaultfd features, io_uring,
//! NUMA nodes, the fault-plan interface; which ops a program needs.

use super::{faults::*, sys::*};
use crate::prog::{Advice, Op, Program};
use anyhow::Result;
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

pub(crate) fn read_trim(p: &str) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

pub(crate) fn selected(s: &str) -> String {
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

impl Host {
    /// The seeded generator's programs (`prog::generate`) with the ops this
    /// kernel cannot run removed (counted by reason in `skipped`), their
    /// decoded fault plans kept when `faults` (the guest realises them), under
    /// policy `policy`.
    pub fn generate(
        &self,
        n: usize,
        seed: u64,
        faults: bool,
        policy: &str,
        skipped: &mut std::collections::BTreeMap<String, usize>,
    ) -> Vec<Program> {
        crate::prog::generate::generate(n, seed)
            .into_iter()
            .map(|mut p| {
                if !faults {
                    p.faults = Default::default();
                }
                p.ops.retain(|l| match self.unsupported(&l.op) {
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
}
