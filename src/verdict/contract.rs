//! A kernel judged by the contract (check/contract.rs), with no preset: the
//! reference for "full effect" is the `deposit` model of the program with no
//! failure, and the kernel's own observations say what it did.
//!
//! A program with an op-scoped plan at op `i` (`fail KIND op=i:...` or
//! `from-op=i`) is judged so:
//! * ops before `i` must agree with the reference by what processes see
//!   (VmPTE, THP or small pages aside: a kernel that allocates lazily has
//!   fewer tables, one may fall back to small pages): otherwise not judged
//!   (`Contract::Diverged`), since the kernel left the state the contract
//!   starts from before any failure;
//! * op `i` gives the full effect, a clean failure, less for an advisory op,
//!   or an OOM retry for a fault (check/contract.rs);
//! * every later op returns within the bound, and the kernel complains at no
//!   op and at teardown (their state may differ from the reference after a
//!   clean failure: it is not compared).
//!
//! Pages are compared by what a process sees: the VMA's protection, and the
//! data read (an unpopulated page, the zero page and a huge zero PMD all read
//! zero; a swapped-out or migrating page is read as anything). Whether a page
//! is PMD- or PTE-mapped is the kernel's business.

use crate::check::contract::{self, Breach};
use crate::observe::compare::{expand_data, expand_states, fields};
use crate::observe::Transcript;
use crate::prog::{parse_size, Op, Plan, Program, PAGE_SIZE};

/// What the contract says about one program's run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Contract {
    /// Every rule held.
    Held,
    /// A rule broke at `op`.
    Broken {
        breach: Breach,
        op: usize,
        detail: String,
    },
    /// Not judged: the kernel differs from the reference before the failure.
    Diverged { op: usize, detail: String },
    /// No allocation of the program failed on this kernel: nothing to judge.
    NoPlan,
}

/// The kernel side of one program's run, as `vm check` has it.
pub struct KernelRun<'a> {
    pub t: &'a Transcript,
    /// The op that did not return within the bound, and whether its task
    /// survived SIGKILL.
    pub hung: Option<(usize, bool)>,
    /// The op during which the kernel went down.
    pub crashed: Option<usize>,
    /// Kernel log lines with the op they were printed during (`ops.len()`:
    /// teardown).
    pub log: &'a [(Option<usize>, String)],
    pub complaint: &'a dyn Fn(&str) -> bool,
    /// For a hung op: how many page faults its processes completed in 300 ms
    /// of the hang. A fault retrying VM_FAULT_OOM completes none
    /// (mm/memory.c mm_account_fault() does not count VM_FAULT_ERROR; the
    /// process's other threads may complete one); a fault that returns
    /// success and refaults completes thousands.
    pub fault_growth: Option<u64>,
}

/// The first op an op-scoped plan of `p` fails allocations in.
pub fn planned_op(p: &Program) -> Option<usize> {
    [&p.faults.pte_alloc, &p.faults.thp]
        .iter()
        .filter_map(|plan| plan.scoped_op())
        .min()
}

/// The first op during which `p`'s plan fails an allocation on the kernel
/// whose run is `t`: an op-scoped plan's op; for a plan counted over the
/// whole program, the first op whose calls (the kernel's own counts) reach
/// the first failing call.
pub fn failing_op(p: &Program, t: &Transcript) -> Option<usize> {
    if let Some(i) = planned_op(p) {
        return Some(i);
    }
    let first = |plan: &Plan| match plan {
        Plan::Nth(n) | Plan::From(n) => Some(*n),
        Plan::At(v) => v.iter().copied().min(),
        _ => None,
    };
    let reach = |want: Option<u32>, pick: fn((u32, u32)) -> u32| {
        let want = want?;
        t.allocs
            .iter()
            .position(|a| a.is_some_and(|c| pick(c) >= want))
    };
    let pte = reach(first(&p.faults.pte_alloc), |c| c.0);
    let thp = reach(first(&p.faults.thp), |c| c.1);
    let planned = first(&p.faults.pte_alloc).is_some() || first(&p.faults.thp).is_some();
    pte.into_iter()
        .chain(thp)
        .min()
        // An op that never returned reported no counts: it is the one.
        .or_else(|| {
            planned
                .then(|| t.results.iter().position(|r| r.is_none()))
                .flatten()
        })
}

/// Judge `k`, the kernel's run of `p`, by the contract; `reference` is the
/// deposit model's run of `p` with no failure.
pub fn judge(p: &Program, reference: &Transcript, k: &KernelRun) -> Contract {
    let Some(i) = failing_op(p, k.t) else {
        return Contract::NoPlan;
    };
    let n = p.ops.len();
    // A complaint anywhere is a breach at the op that printed it.
    if let Some((o, l)) = k.log.iter().find(|(_, l)| (k.complaint)(l)) {
        return Contract::Broken {
            breach: Breach::Complaint,
            op: o.unwrap_or(0).min(n),
            detail: l.trim().to_string(),
        };
    }
    if let Some(c) = k.crashed {
        return Contract::Broken {
            breach: Breach::Complaint,
            op: c,
            detail: "the kernel went down".into(),
        };
    }
    for j in 0..i.min(n) {
        if let Some(d) = differs(reference, k.t, j) {
            if k.hung.is_some_and(|(h, _)| h == j) {
                break;
            }
            return Contract::Diverged { op: j, detail: d };
        }
    }
    if let Some((h, stuck)) = k.hung {
        if h < i {
            return Contract::Diverged {
                op: h,
                detail: "did not return before any planned failure".into(),
            };
        }
        let op = &p.ops[h].op;
        // The kernel's own words for the OOM retry are rate-limited, so a
        // fault that completes no fault while it hangs counts too.
        let oom_retry = contract::is_fault(op)
            && (k
                .fault_growth
                .is_some_and(|n| n <= contract::OOM_RETRY_MAX_FAULTS)
                || k.log.iter().any(|(o, l)| {
                    *o == Some(h) && contract::OOM_RETRY_LOG.iter().any(|w| l.contains(w))
                }));
        if !oom_retry {
            return Contract::Broken {
                breach: if stuck {
                    Breach::Unkillable
                } else {
                    Breach::Killable
                },
                op: h,
                detail: format!(
                    "`{}` did not return within the bound{}",
                    p.op_text(h),
                    if stuck {
                        " and its task survived SIGKILL"
                    } else {
                        "; SIGKILL ended it (no VM_FAULT_OOM retry)"
                    }
                ),
            };
        }
        if h == i {
            return Contract::Held;
        }
    }
    if i >= n || k.t.results.get(i).cloned().flatten().is_none() {
        return Contract::Held;
    }
    judge_op(p, reference, k.t, i)
}

/// A run with no failure: where it first differs from the reference by what
/// processes see (an op that hung or a kernel that went down differs), if
/// anywhere. `vm check` judges only programs whose plain run agrees.
pub fn plain_difference(
    p: &Program,
    reference: &Transcript,
    k: &KernelRun,
) -> Option<(usize, String)> {
    if let Some((o, l)) = k.log.iter().find(|(_, l)| (k.complaint)(l)) {
        return Some((o.unwrap_or(0), format!("kernel complaint: {}", l.trim())));
    }
    if let Some((h, _)) = k.hung {
        return Some((
            h,
            format!("`{}` did not return within the bound", p.op_text(h)),
        ));
    }
    if let Some(c) = k.crashed {
        return Some((c, "the kernel went down".into()));
    }
    (0..p.ops.len()).find_map(|j| differs(reference, k.t, j).map(|d| (j, d)))
}

/// The contract of op `i`, which ran with its allocations failing.
fn judge_op(p: &Program, reference: &Transcript, t: &Transcript, i: usize) -> Contract {
    let op = &p.ops[i].op;
    let kr = t.results[i].clone().unwrap_or_default();
    let mr = reference
        .results
        .get(i)
        .cloned()
        .flatten()
        .unwrap_or_default();
    let full = kr == mr && differs(reference, t, i).is_none();
    if full {
        return Contract::Held;
    }
    let clean_errno = kr != "ok" && kr != mr;
    if clean_errno && !contract::allows(op, &kr) {
        return Contract::Broken {
            breach: Breach::Errno,
            op: i,
            detail: format!(
                "`{}` returned {kr} (deposit: {mr}); after a failed allocation it may return {:?}",
                p.op_text(i),
                contract::may_fail_with(op)
            ),
        };
    }
    // Success with less done (advisory), or a failure (an allowed errno,
    // even deposit's own: the op may have failed earlier, at its split):
    // every page old or new.
    let old_or_new = kr != "ok" || contract::advisory(op);
    let discarded = kr != "ok" && contract::may_discard_on_failure(op);
    let unmapped = (kr != "ok")
        .then(|| contract::may_unmap_on_failure(op))
        .flatten();
    match page_breach(p, reference, t, i, old_or_new, discarded, unmapped) {
        None => Contract::Held,
        Some((breach, detail)) => Contract::Broken {
            breach,
            op: i,
            detail: format!("`{}` returned {kr} (deposit: {mr}): {detail}", p.op_text(i)),
        },
    }
}

/// What a process sees of one page.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Unmapped,
    Guard,
    /// Mapped with this protection, reading this (None: any, unread).
    Mapped {
        write: bool,
        data: Option<String>,
    },
}

impl Seen {
    fn matches(&self, o: &Seen) -> bool {
        match (self, o) {
            (Seen::Mapped { write: a, data: x }, Seen::Mapped { write: b, data: y }) => {
                a == b && (x.is_none() || y.is_none() || x == y)
            }
            (a, b) => a == b,
        }
    }
}

/// Every page of one observation line (`mm M pte .. vmas .. pages .. data ..`).
fn seen(line: &str) -> Vec<Seen> {
    let f = fields(line);
    let get = |k: &str| f.iter().find(|x| x.0 == k).map(|x| x.1).unwrap_or("");
    let states = expand_states(get("pages"));
    let data = expand_data(get("data"));
    let mut write: Vec<Option<bool>> = vec![None; states.len()];
    for v in get("vmas").split(',').filter(|v| *v != "none") {
        let Some((range, prot)) = v.split_once(':') else {
            continue;
        };
        let Some((s, e)) = range.split_once('-') else {
            continue;
        };
        let (Ok(s), Ok(e)) = (parse_size(s), parse_size(e)) else {
            continue;
        };
        let w = prot.starts_with("rw");
        for slot in write
            .iter_mut()
            .take((e / PAGE_SIZE) as usize)
            .skip((s / PAGE_SIZE) as usize)
        {
            *slot = Some(w);
        }
    }
    states
        .iter()
        .enumerate()
        .map(|(pg, &c)| match (c, write[pg]) {
            ('g', _) => Seen::Guard,
            (_, None) => Seen::Unmapped,
            (c, Some(write)) => Seen::Mapped {
                write,
                data: match c {
                    '.' | 'z' | 'Z' => Some("0".into()),
                    'p' | 'H' => data.get(pg).cloned(),
                    _ => None,
                },
            },
        })
        .collect()
}

/// The observation line of mm `m` after op `i` (None before op 0, or when
/// the mm is not live).
fn line_of(t: &Transcript, i: Option<usize>, m: usize) -> Option<&str> {
    let obs = &t.obs[i?];
    obs.iter()
        .find(|l| l.split(' ').nth(1).and_then(|x| x.parse().ok()) == Some(m))
        .map(String::as_str)
}

/// The mms with a line after op `i` in either transcript.
fn mms(a: &Transcript, b: &Transcript, i: usize) -> Vec<usize> {
    let mut v: Vec<usize> = [a, b]
        .iter()
        .flat_map(|t| t.obs.get(i).into_iter().flatten())
        .filter_map(|l| l.split(' ').nth(1).and_then(|x| x.parse().ok()))
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The first difference at op `i` between the reference and the kernel by
/// what processes see: the result, then every page.
fn differs(reference: &Transcript, t: &Transcript, i: usize) -> Option<String> {
    let (mr, kr) = (
        reference.results.get(i).cloned().flatten(),
        t.results.get(i).cloned().flatten(),
    );
    if mr != kr {
        return Some(format!(
            "result: deposit {} kernel {}",
            mr.unwrap_or_else(|| "not run".into()),
            kr.unwrap_or_else(|| "not run".into())
        ));
    }
    for m in mms(reference, t, i) {
        let (a, b) = (line_of(reference, Some(i), m), line_of(t, Some(i), m));
        let (Some(a), Some(b)) = (a, b) else {
            return Some(format!("mm {m} is live on one side only"));
        };
        let (sa, sb) = (seen(a), seen(b));
        if let Some(pg) = (0..sa.len().max(sb.len())).find(|&pg| {
            !sa.get(pg)
                .zip(sb.get(pg))
                .is_some_and(|(x, y)| x.matches(y))
        }) {
            return Some(format!(
                "mm {m} page {:#x}: deposit {:?} kernel {:?}",
                pg as u64 * PAGE_SIZE,
                sa.get(pg),
                sb.get(pg)
            ));
        }
    }
    None
}

/// With `old_or_new`, a page of op `i` that is neither the reference's before
/// nor after the op; without, one that is not the reference's after. With
/// `discarded`, a page the op was to guard may also read zero
/// ([`contract::may_discard_on_failure`]). A page in `unmapped` may be
/// unmapped ([`contract::may_unmap_on_failure`]).
fn page_breach(
    p: &Program,
    reference: &Transcript,
    t: &Transcript,
    i: usize,
    old_or_new: bool,
    discarded: bool,
    unmapped: Option<(u64, u64)>,
) -> Option<(Breach, String)> {
    // The state before op `i`: after the last op that ran (an op of an mm
    // that is not live runs nowhere and observes nothing).
    let before = (0..i).rev().find(|&j| !reference.obs[j].is_empty());
    for m in mms(reference, t, i) {
        let after = line_of(reference, Some(i), m).map(seen);
        let old = match before {
            Some(b) => line_of(reference, Some(b), m).map(seen),
            // Before op 0 nothing is mapped.
            None => after.as_ref().map(|a| vec![Seen::Unmapped; a.len()]),
        };
        let Some(kernel) = line_of(t, Some(i), m).map(seen) else {
            // The kernel's mm is gone: fine if it was gone in the reference
            // before or after the op.
            if after.is_none() || (old_or_new && old.is_none()) {
                continue;
            }
            return Some((Breach::Page, format!("mm {m} is gone")));
        };
        for (pg, k) in kernel.iter().enumerate() {
            let new = after.as_ref().and_then(|a| a.get(pg));
            let was = old.as_ref().and_then(|o| o.get(pg));
            let ok = new.is_some_and(|n| n.matches(k))
                || (old_or_new && was.is_some_and(|w| w.matches(k)))
                || (discarded
                    && matches!(new, Some(Seen::Guard))
                    && matches!(k, Seen::Mapped { data: Some(d), .. } if d == "0"))
                || (*k == Seen::Unmapped
                    && unmapped.is_some_and(|(a, b)| (a..b).contains(&(pg as u64 * PAGE_SIZE))));
            if ok {
                continue;
            }
            let left_mapped = matches!(new, Some(Seen::Unmapped) | None)
                && matches!(k, Seen::Mapped { data: Some(d), .. } if d == "0")
                && matches!(p.ops[i].op, Op::Munmap { .. } | Op::Mremap { .. });
            return Some((
                if left_mapped {
                    Breach::LeftMapped
                } else {
                    Breach::Page
                },
                format!(
                    "mm {m} page {:#x} is {k:?}; deposit has it {:?} after the op{}",
                    pg as u64 * PAGE_SIZE,
                    new,
                    if old_or_new {
                        format!(" and {was:?} before")
                    } else {
                        String::new()
                    }
                ),
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(results: &[&str], obs: &[&str]) -> Transcript {
        Transcript {
            results: results.iter().map(|r| Some(r.to_string())).collect(),
            obs: obs.iter().map(|o| vec![o.to_string()]).collect(),
            allocs: vec![None; results.len()],
        }
    }

    const MAPPED: &str =
        "mm 0 pte 1 anon 512 thp 1 vmas 0-4M:rw+h pages H512.512 data w1*512,-*512";
    const ZAPPED: &str =
        "mm 0 pte 1 anon 448 thp 0 vmas 0-4M:rw+h pages .64p448.512 data -*64,w1*448,-*512";

    fn prog() -> Program {
        Program::parse(
            "fail pte_alloc op=2:nth=1\nmmap 0 4M thp\ntouch 0 2M write\nmadvise 0 256K dontneed\n",
        )
        .unwrap()
    }

    fn kernel<'a>(t: &'a Transcript, hung: Option<(usize, bool)>) -> KernelRun<'a> {
        KernelRun {
            t,
            hung,
            crashed: None,
            log: &[],
            complaint: &|l| l.contains("BUG"),
            fault_growth: None,
        }
    }

    #[test]
    fn a_skipped_dontneed_is_data_loss_and_the_full_effect_holds() {
        let p = prog();
        let empty = "mm 0 pte 0 anon 0 thp 0 vmas 0-4M:rw+h pages .1024 data -*1024";
        let reference = t(&["ok", "ok", "ok"], &[empty, MAPPED, ZAPPED]);
        // The kernel zapped as deposit does (with a lazily allocated table).
        let lazy = t(
            &["ok", "ok", "ok"],
            &[empty, &MAPPED.replace("pte 1", "pte 0"), ZAPPED],
        );
        assert_eq!(judge(&p, &reference, &kernel(&lazy, None)), Contract::Held);
        // It returned 0 and kept the data: the planted skip.
        let skip = t(&["ok", "ok", "ok"], &[empty, MAPPED, MAPPED]);
        match judge(&p, &reference, &kernel(&skip, None)) {
            Contract::Broken { breach, op, .. } => assert_eq!((breach, op), (Breach::Page, 2)),
            c => panic!("{c:?}"),
        }
        // ENOMEM with nothing done: a clean failure.
        let enomem = t(&["ok", "ok", "ENOMEM"], &[empty, MAPPED, MAPPED]);
        assert_eq!(
            judge(&p, &reference, &kernel(&enomem, None)),
            Contract::Held
        );
        // EINVAL is outside madvise's contract for a failed allocation.
        let einval = t(&["ok", "ok", "EINVAL"], &[empty, MAPPED, MAPPED]);
        match judge(&p, &reference, &kernel(&einval, None)) {
            Contract::Broken { breach, .. } => assert_eq!(breach, Breach::Errno),
            c => panic!("{c:?}"),
        }
        // A hang that SIGKILL did not end is an unkillable loop.
        let mut hang = t(&["ok", "ok"], &[empty, MAPPED]);
        hang.results.push(None);
        hang.obs.push(vec![]);
        match judge(&p, &reference, &kernel(&hang, Some((2, true)))) {
            Contract::Broken { breach, .. } => assert_eq!(breach, Breach::Unkillable),
            c => panic!("{c:?}"),
        }
        // An op of an mm that is not live observes nothing: "before" is the
        // op before it.
        let p4 = Program::parse(
            "fail pte_alloc op=3:nth=1\nmmap 0 4M thp\ntouch 0 2M write\ntouch 0 4K write mm=2\nmadvise 0 256K dontneed\n",
        )
        .unwrap();
        let mut reference4 = t(&["ok", "ok"], &[empty, MAPPED]);
        reference4.results.push(None);
        reference4.obs.push(vec![]);
        reference4.results.push(Some("ok".into()));
        reference4.obs.push(vec![ZAPPED.into()]);
        let mut enomem4 = t(&["ok", "ok"], &[empty, MAPPED]);
        enomem4.results.push(None);
        enomem4.obs.push(vec![]);
        enomem4.results.push(Some("ENOMEM".into()));
        enomem4.obs.push(vec![MAPPED.into()]);
        assert_eq!(
            judge(&p4, &reference4, &kernel(&enomem4, None)),
            Contract::Held
        );
        // A difference before the planned op is not the contract's business.
        let early = t(&["ok", "ENOMEM", "ok"], &[empty, empty, empty]);
        assert!(matches!(
            judge(&p, &reference, &kernel(&early, None)),
            Contract::Diverged { op: 1, .. }
        ));
        // A kernel complaint is a breach whatever else happened.
        let log = [(Some(2), "BUG: Bad rss-counter state".to_string())];
        let k = KernelRun {
            log: &log,
            ..kernel(&lazy, None)
        };
        match judge(&p, &reference, &k) {
            Contract::Broken { breach, op, .. } => {
                assert_eq!((breach, op), (Breach::Complaint, 2))
            }
            c => panic!("{c:?}"),
        }
    }

    #[test]
    fn a_failed_guard_install_may_leave_its_range_zapped_and_unguarded() {
        // 7.2 madvise_guard_install(): zap, then the install walk's table
        // allocation fails: ENOMEM with the THP gone and no guard.
        let p = Program::parse(
            "fail pte_alloc op=2:nth=1\nmmap 0 4M thp\ntouch 0 2M write\nmadvise 0 2M guard-install\n",
        )
        .unwrap();
        let empty = "mm 0 pte 0 anon 0 thp 0 vmas 0-4M:rw+h pages .1024 data -*1024";
        let guarded = "mm 0 pte 1 anon 0 thp 0 vmas 0-4M:rw+h pages g512.512 data -*1024";
        let reference = t(&["ok", "ok", "ok"], &[empty, MAPPED, guarded]);
        let zapped = t(&["ok", "ok", "ENOMEM"], &[empty, MAPPED, empty]);
        assert_eq!(
            judge(&p, &reference, &kernel(&zapped, None)),
            Contract::Held
        );
        // Success with the range zapped and unguarded is not the effect.
        let ok_zapped = t(&["ok", "ok", "ok"], &[empty, MAPPED, empty]);
        assert!(matches!(
            judge(&p, &reference, &kernel(&ok_zapped, None)),
            Contract::Broken {
                breach: Breach::Page,
                ..
            }
        ));
        // A failed DONTNEED has no such allowance for a page that is
        // neither old nor new (a data value it never held).
        let dn = prog();
        let dn_ref = t(&["ok", "ok", "ok"], &[empty, MAPPED, ZAPPED]);
        let odd = t(
            &["ok", "ok", "ENOMEM"],
            &[empty, MAPPED, &MAPPED.replace("w1*512", "w9*512")],
        );
        assert!(matches!(
            judge(&dn, &dn_ref, &kernel(&odd, None)),
            Contract::Broken {
                breach: Breach::Page,
                ..
            }
        ));
    }

    #[test]
    fn a_failed_mremap_may_leave_its_destination_unmapped_and_nothing_else() {
        // 7.2 mremap_to(): the destination is unmapped first; a failure in
        // move_vma() after that returns ENOMEM with it gone.
        let p = Program::parse(
            "fail pte_alloc op=2:nth=1\nmmap 0 4M thp\nmmap 4M 4M\nmremap 0 2M 4M\n",
        )
        .unwrap();
        let both = "mm 0 pte 0 anon 0 thp 0 vmas 0-8M:rw+h pages .2048 data -*2048";
        let moved = "mm 0 pte 0 anon 0 thp 0 vmas 2M-8M:rw+h pages .2048 data -*2048";
        let dest_gone = "mm 0 pte 0 anon 0 thp 0 vmas 0-4M:rw+h,6M-8M:rw+h pages .2048 data -*2048";
        let reference = t(&["ok", "ok", "ok"], &[both, both, moved]);
        let failed = t(&["ok", "ok", "ENOMEM"], &[both, both, dest_gone]);
        assert_eq!(
            judge(&p, &reference, &kernel(&failed, None)),
            Contract::Held
        );
        // A page past the destination unmapped by a failed mremap is not allowed.
        let past = "mm 0 pte 0 anon 0 thp 0 vmas 0-4M:rw+h pages .2048 data -*2048";
        let lost = t(&["ok", "ok", "ENOMEM"], &[both, both, past]);
        assert!(matches!(
            judge(&p, &reference, &kernel(&lost, None)),
            Contract::Broken {
                breach: Breach::Page,
                ..
            }
        ));
        // Nor the destination gone after a successful one.
        let ok_gone = t(&["ok", "ok", "ok"], &[both, both, dest_gone]);
        assert!(matches!(
            judge(&p, &reference, &kernel(&ok_gone, None)),
            Contract::Broken { .. }
        ));
    }

    #[test]
    fn a_fault_may_retry_oom_and_an_advisory_op_may_do_less() {
        let p =
            Program::parse("fail pte_alloc op=1:all\nmmap 0 4M thp\ntouch 0 2M write\n").unwrap();
        let empty = "mm 0 pte 0 anon 0 thp 0 vmas 0-4M:rw+h pages .1024 data -*1024";
        let reference = t(&["ok", "ok"], &[empty, MAPPED]);
        let mut hang = t(&["ok"], &[empty]);
        hang.results.push(None);
        hang.obs.push(vec![]);
        let log = [(
            Some(1),
            "Huh VM_FAULT_OOM leaked out to the #PF handler. Retrying PF".to_string(),
        )];
        let k = KernelRun {
            log: &log,
            ..kernel(&hang, Some((1, false)))
        };
        assert_eq!(judge(&p, &reference, &k), Contract::Held);
        // No log line (rate-limited), but no fault completed: the OOM retry.
        let quiet = KernelRun {
            fault_growth: Some(0),
            ..kernel(&hang, Some((1, false)))
        };
        assert_eq!(judge(&p, &reference, &quiet), Contract::Held);
        // The same hang with faults completing and no OOM line is a loop.
        let spinning = KernelRun {
            fault_growth: Some(5000),
            ..kernel(&hang, Some((1, false)))
        };
        match judge(&p, &reference, &spinning) {
            Contract::Broken { breach, .. } => assert_eq!(breach, Breach::Killable),
            c => panic!("{c:?}"),
        }
        let cold = Program::parse(
            "fail pte_alloc op=2:all\nmmap 0 4M thp\ntouch 0 2M write\nmadvise 0 256K pageout\n",
        )
        .unwrap();
        let reference = t(&["ok", "ok", "ok"], &[empty, MAPPED, ZAPPED]);
        let less = t(&["ok", "ok", "ok"], &[empty, MAPPED, MAPPED]);
        assert_eq!(
            judge(&cold, &reference, &kernel(&less, None)),
            Contract::Held
        );
    }

    #[test]
    fn an_mremap_that_leaves_its_source_mapped_and_empty_is_a_leak() {
        let p = Program::parse(
            "fail pte_alloc op=2:nth=1\nmmap 0 2M thp\ntouch 0 2M write\nmremap 0 2M 4M\n",
        )
        .unwrap();
        let empty = "mm 0 pte 0 anon 0 thp 0 vmas 0-2M:rw+h pages .1024 data -*1024";
        let mapped = "mm 0 pte 1 anon 512 thp 1 vmas 0-2M:rw+h pages H512.512 data w1*512,-*512";
        // Deposit moves the data to 4M and unmaps the source.
        let moved = "mm 0 pte 1 anon 512 thp 1 vmas 4M-6M:rw+h pages .1024 data -*1024";
        let reference = t(&["ok", "ok", "ok"], &[empty, mapped, moved]);
        // The kernel says ok but the source stays mapped, reading zero.
        let left = "mm 0 pte 1 anon 0 thp 0 vmas 0-2M:rw+h,4M-6M:rw+h pages .1024 data -*1024";
        let k = t(&["ok", "ok", "ok"], &[empty, mapped, left]);
        match judge(&p, &reference, &kernel(&k, None)) {
            Contract::Broken { breach, op, .. } => {
                assert_eq!((breach, op), (Breach::LeftMapped, 2));
                assert_eq!(breach.severity(), crate::base::Severity::Leak);
            }
            c => panic!("{c:?}"),
        }
        // As deposit does it: held.
        let k = t(&["ok", "ok", "ok"], &[empty, mapped, moved]);
        assert_eq!(judge(&p, &reference, &kernel(&k, None)), Contract::Held);
    }
}
