//! One program's run in the guest, gathered from its data-channel messages
//! and console lines, judged against the model.

use super::console::{is_complaint, split_backtrace};
use super::protocol::{End, Msg};
use crate::check::Invariant;
use crate::host::HostRun;
use crate::model::policy::Policy;
use crate::observe::{self, Divergence};
use crate::prog::Program;
use crate::verdict::{self, Verdict};
use std::fmt::Write as _;

/// One program's run in the guest.
#[derive(Clone, Debug)]
pub struct GuestRun {
    pub hr: HostRun,
    pub end: End,
    /// Kernel log lines of this program, with the op they were printed during
    /// (None: before the first op; `ops.len()`: after the last, the teardown).
    pub log: Vec<(Option<usize>, String)>,
    /// The last op the executor started (from the kernel-log markers).
    pub last_op: Option<usize>,
    /// After a hang: a task of the program survived SIGKILL.
    pub stuck: bool,
    /// After a hang: page faults its processes completed in a moment of it.
    pub fault_growth: Option<u64>,
    /// After a hang: SIGKILL ended the op's task while its failures went on.
    pub killable: Option<bool>,
    /// The guest kernel's version (from its `ready` line).
    pub linux: (u32, u32),
}

impl GuestRun {
    pub fn new(n: usize) -> GuestRun {
        GuestRun {
            hr: HostRun::new(n),
            end: End::Crashed,
            log: Vec::new(),
            last_op: None,
            stuck: false,
            fault_growth: None,
            killable: None,
            linux: crate::model::mm::LINUX_DEFAULT,
        }
    }

    /// Take one of the program's data-channel messages; `cur` is the op the
    /// observation lines belong to (the last `op` message).
    pub fn feed(&mut self, m: &Msg, cur: &mut usize) {
        let n = self.hr.t.results.len();
        let ok = |i: usize| i < n;
        match m {
            Msg::Op { i, res } if ok(*i) => {
                self.hr.t.results[*i] = Some(res.clone());
                *cur = *i;
            }
            Msg::Alloc { i, pte, thp } if ok(*i) => self.hr.t.allocs[*i] = Some((*pte, *thp)),
            Msg::Fallbacks { i, n } if ok(*i) => self.hr.fallbacks[*i] = *n,
            Msg::Memcg { i, events } if ok(*i) => self.hr.memcg_events[*i] = Some(events.clone()),
            Msg::Khugepaged(b) => self.hr.khugepaged = *b,
            Msg::Stuck(b) => self.stuck = *b,
            Msg::Faults(n) => self.fault_growth = Some(*n),
            Msg::Killable(k) => self.killable = Some(*k),
            Msg::Obs(l) if *cur < n => self.hr.t.obs[*cur].push(l.clone()),
            Msg::Cov {
                i,
                failed,
                pcs,
                edges,
            } if ok(*i) => {
                self.hr.cov[*i] = Some(crate::host::kcov::OpCov {
                    pcs: pcs.clone(),
                    edges: edges.clone(),
                    failed: *failed,
                })
            }
            _ => {}
        }
    }

    pub fn complaints(&self) -> Vec<(Option<usize>, &str)> {
        self.log
            .iter()
            .filter(|(_, l)| is_complaint(l))
            .map(|(o, l)| (*o, l.as_str()))
            .collect()
    }
}

fn evidence_lines(g: &GuestRun, op: Option<usize>, max: usize) -> String {
    let mut s = String::new();
    if let Some(ev) = op.and_then(|i| g.hr.memcg_events.get(i).cloned().flatten()) {
        let _ = write!(s, "\n      memory.events after the op: {ev}");
    }
    let (lines, backtrace) = split_backtrace(
        g.log
            .iter()
            .filter(|(o, _)| op.is_none() || *o == op)
            .map(|(_, l)| l.as_str()),
    );
    for (n, l) in lines.iter().enumerate() {
        if n == max {
            s.push_str("\n      ...");
            break;
        }
        let _ = write!(s, "\n      kernel: {}", l.trim());
    }
    if !backtrace.is_empty() {
        let _ = write!(s, "\n      failing allocation: {}", backtrace.join(" < "));
    }
    s
}

/// Does the model explain the kernel's hang at op `i`? The model ends an op
/// with `oom-loop` where the real task retries forever: a user fault whose
/// VM_FAULT_OOM the #PF handler retries (arch/x86/mm/fault.c
/// do_user_addr_fault → mm/oom_kill.c pagefault_out_of_memory(), which only
/// logs), or a uffd handler whose UFFDIO_WRITEPROTECT keeps failing.
fn model_oom_loop(mr: &observe::ModelRun, i: usize) -> bool {
    mr.t.results.get(i).and_then(|r| r.as_deref()) == Some("oom-loop")
}

/// Judge one program's guest run against the model under `policy`.
pub fn judge(p: &Program, policy: &Policy, g: &GuestRun) -> Verdict {
    judge_with(p, policy, g, &|f| {
        crate::observe::model_run_with(p, policy, g.linux, f)
    })
}

/// `judge` against any model run: `model(thp_fail)` (the memcg trigger's
/// realised plan: `memcg.rs`).
pub fn judge_with(
    p: &Program,
    policy: &Policy,
    g: &GuestRun,
    model: &dyn Fn(&[u32]) -> observe::ModelRun,
) -> Verdict {
    let (mr, thp_fail, d) = verdict::fit_model_by(&g.hr, model);
    match (mr.violation_at, &mr.violation) {
        (Some((k, inv)), Some(text)) => {
            let (reproduced, evidence) = judge_finding(p, g, &mr, d.as_ref(), k, inv);
            Verdict::Finding {
                invariant: inv,
                text: text.clone(),
                op: k,
                reproduced,
                evidence,
                deposit: policy.deposit,
            }
        }
        _ => judge_run(p, g, &mr, thp_fail, d),
    }
}

/// The first difference between the model and the kernel in the ops before `k`.
fn divergence_before(mr: &observe::ModelRun, g: &GuestRun, k: usize) -> Option<Divergence> {
    if k == 0 {
        None
    } else {
        observe::compare::first_divergence_upto(&mr.t, &g.hr.t, k - 1)
    }
}

/// How op `i` hung, with what the model says it returns.
fn hung_text(mr: &observe::ModelRun, i: usize) -> String {
    format!(
        "did not return within the bound (the model: {})",
        mr.t.results.get(i).cloned().flatten().unwrap_or_default()
    )
}

/// What op `k` returned in the guest.
fn guest_result(g: &GuestRun, k: usize) -> String {
    g.hr.t
        .results
        .get(k)
        .cloned()
        .flatten()
        .unwrap_or_else(|| "nothing".into())
}

/// Judge a finding, the model violating `inv` at op `k` (`d`: the model's
/// first difference with the kernel): was it reproduced, and the evidence.
fn judge_finding(
    p: &Program,
    g: &GuestRun,
    mr: &observe::ModelRun,
    d: Option<&Divergence>,
    k: usize,
    inv: Invariant,
) -> (bool, String) {
    let pre = divergence_before(mr, g, k);
    let stopped_early = match &g.end {
        End::Hung(i) | End::Unsupported(i, _) | End::Broken(i, _) if *i < k => Some(*i),
        End::Crashed | End::Stalled => g.last_op.filter(|&i| i < k),
        _ => None,
    };
    // A difference before the stop explains more than the stop.
    let stop_first = stopped_early.filter(|&i| pre.as_ref().is_none_or(|d| d.op >= i));
    if let Some(i) = stop_first {
        let how = match &g.end {
            End::Hung(_) => hung_text(mr, i),
            End::Unsupported(_, why) => format!("cannot run here: {why}"),
            End::Broken(_, why) => format!("broke: {why}"),
            End::Crashed => "took the kernel down".into(),
            _ => "and the guest stopped answering".into(),
        };
        let evidence = format!(
            "the kernel stopped before the violating op {k}: op {i} `{}` {how}{}",
            p.op_text(i),
            evidence_lines(g, Some(i), 12)
        );
        return (false, evidence);
    }
    if let Some(dv) = &pre {
        let evidence = format!(
            "the kernel differs before the violating op: {}",
            dv.describe(p)
        );
        return (false, evidence);
    }
    judge_finding_at(p, g, d, k, inv)
}

/// Judge a finding whose op `k` the kernel reached as the model did: does the
/// kernel show the violation of `inv` there?
fn judge_finding_at(
    p: &Program,
    g: &GuestRun,
    d: Option<&Divergence>,
    k: usize,
    inv: Invariant,
) -> (bool, String) {
    let n = p.ops.len();
    let complaints = g.complaints();
    let complained_at = |op: usize| complaints.iter().any(|(o, _)| *o == Some(op));
    match inv {
        Invariant::NoLivelock => match &g.end {
            End::Hung(i) if *i == k => (
                true,
                format!(
                    "op {k} `{}` did not return within the bound; {}{}",
                    p.op_text(k),
                    if g.stuck {
                        "its task survived SIGKILL after the failures stopped (kernel backtraces below)"
                    } else {
                        "its task ended once the failures stopped"
                    },
                    evidence_lines(g, Some(k), 30)
                ),
            ),
            _ => (
                false,
                format!(
                    "op {k} `{}` returned {}{}",
                    p.op_text(k),
                    guest_result(g, k),
                    evidence_lines(g, Some(k), 6)
                ),
            ),
        },
        Invariant::KernelAssertion => {
            let crashed = g.end == End::Crashed && g.last_op == Some(k);
            if crashed || complained_at(k) {
                let lines = evidence_lines(g, Some(k), 20);
                (true, format!("op {k} `{}`: kernel complaint{lines}", p.op_text(k)))
            } else {
                let res = guest_result(g, k);
                let what = format!("no kernel complaint, the op returned {res}");
                (false, format!("op {k} `{}`: {what}", p.op_text(k)))
            }
        }
        _ if k >= n => {
            if complained_at(n) {
                let lines = evidence_lines(g, Some(n), 12);
                (true, format!("kernel complaints at teardown{lines}"))
            } else {
                (false, "no kernel complaint at teardown".into())
            }
        }
        _ => match d {
            None if g.hr.t.results.get(k).is_some_and(|r| r.is_some()) => (
                true,
                format!(
                    "op {k} `{}`: the kernel's result and state match the model's (the violating state){}",
                    p.op_text(k),
                    evidence_lines(g, Some(k), 6)
                ),
            ),
            None => (
                false,
                format!("op {k} `{}` did not complete ({:?})", p.op_text(k), g.end),
            ),
            Some(dv) => (false, format!("the kernel differs: {}", dv.describe(p))),
        },
    }
}

/// Judge a run without a finding: the kernel stopped (hang, crash, ...),
/// differs from the model, complained, or agrees.
fn judge_run(
    p: &Program,
    g: &GuestRun,
    mr: &observe::ModelRun,
    thp_fail: Vec<u32>,
    d: Option<Divergence>,
) -> Verdict {
    let stop = match &g.end {
        End::Ok => None,
        End::Hung(i) => Some((*i, "hang")),
        End::Unsupported(i, _) => Some((*i, "unsupported")),
        End::Broken(i, _) => Some((*i, "broken")),
        End::Crashed => Some((g.last_op.unwrap_or(0), "crash")),
        End::Stalled => Some((g.last_op.unwrap_or(0), "stall")),
    };
    if let Some((i, kind)) = stop {
        // When the kernel went down, what the data channel had not yet
        // carried is lost, not different: the crash is at the op that raised
        // it (the console's markers), with its BUG line.
        let lost = |dv: &Divergence| {
            matches!(g.end, End::Crashed | End::Stalled)
                && dv.field == "res"
                && dv.kernel == "not run"
        };
        if let Some(dv) = divergence_before(mr, g, i).filter(|dv| !lost(dv)) {
            return Verdict::diverge(p, &dv, thp_fail, g.hr.khugepaged);
        }
        return match (&g.end, kind) {
            (End::Unsupported(_, why), _) => Verdict::Unsupported {
                op: Some(i),
                why: why.clone(),
            },
            (End::Hung(_), _) if model_oom_loop(mr, i) => Verdict::Agree { thp_fail },
            (_, kind) => Verdict::Diverge {
                kind: kind.to_string(),
                op: i,
                detail: format!(
                    "op {i} `{}`: {}{}",
                    p.op_text(i),
                    match &g.end {
                        End::Hung(_) => hung_text(mr, i),
                        End::Broken(_, why) => format!("executor: {why}"),
                        End::Crashed => "the kernel went down".into(),
                        _ => "the guest stopped answering".into(),
                    },
                    evidence_lines(g, Some(i), 20)
                ),
                thp_fail,
                khugepaged: g.hr.khugepaged,
            },
        };
    }
    if let Some(dv) = d {
        return Verdict::diverge(p, &dv, thp_fail, g.hr.khugepaged);
    }
    if let Some((o, l)) = g.complaints().first() {
        let op = o.unwrap_or(0);
        return Verdict::Diverge {
            kind: "complaint".into(),
            op,
            detail: format!(
                "{}: {}{}",
                o.map(|i| format!("op {i} `{}`", p.op_text(i)))
                    .unwrap_or_else(|| "before the first op".into()),
                l.trim(),
                evidence_lines(g, *o, 20)
            ),
            thp_fail,
            khugepaged: g.hr.khugepaged,
        };
    }
    Verdict::Agree { thp_fail }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::policy::Preset;
    use crate::observe::Transcript;

    fn guest_run(p: &Program, t: Transcript) -> GuestRun {
        let mut g = GuestRun::new(p.ops.len());
        g.hr.t = t;
        g.end = End::Ok;
        g
    }

    #[test]
    fn judge_agrees_with_the_model_and_catches_each_kind_of_difference() {
        let p = Program::parse(
            "fail pte_alloc nth=2\nmmap 0 2M thp\ntouch 0 2M write\nmadvise 0 256K dontneed\n",
        )
        .unwrap();
        let pol = Policy::preset(Preset::Deposit);
        let m = crate::observe::model_run_with(&p, &pol, (7, 2), &[]);
        assert!(m.violation.is_none());
        // The model's own transcript agrees.
        let g = guest_run(&p, m.t.clone());
        assert!(matches!(judge(&p, &pol, &g), Verdict::Agree { .. }));
        // A different allocation count is a divergence in `alloc`.
        let mut t = m.t.clone();
        let a = t.allocs[1].unwrap();
        t.allocs[1] = Some((a.0 + 1, a.1));
        match judge(&p, &pol, &guest_run(&p, t)) {
            Verdict::Diverge { kind, op, .. } => assert_eq!((kind.as_str(), op), ("alloc", 1)),
            v => panic!("{v:?}"),
        }
        // A hang where the model returns is a divergence.
        let mut g = guest_run(&p, m.t.clone());
        g.hr.t.results[2] = None;
        g.end = End::Hung(2);
        match judge(&p, &pol, &g) {
            Verdict::Diverge { kind, op, .. } => assert_eq!((kind.as_str(), op), ("hang", 2)),
            v => panic!("{v:?}"),
        }
        // A kernel complaint is a divergence even when every line agrees.
        let mut g = guest_run(&p, m.t.clone());
        g.log
            .push((Some(1), "[ 3.0] BUG: Bad page state in process x".into()));
        match judge(&p, &pol, &g) {
            Verdict::Diverge { kind, op, .. } => {
                assert_eq!((kind.as_str(), op), ("complaint", 1))
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn judge_findings_reproduce_only_with_the_kernel_evidence() {
        // lazy-v3 livelock: every pte_alloc_one() fails during a split retry loop.
        let p = Program::parse(
            "policy lazy-v3\nfail pte_alloc from=1\nmmap 0 4M thp\ntouch 0 2M write\nuffd-register 0 4M\nuffd-wp 0 1M on\n",
        )
        .unwrap();
        let pol = Policy::preset(Preset::LazyV3);
        let m = crate::observe::model_run_with(&p, &pol, (7, 2), &[]);
        let (k, inv) = m.violation_at.expect("the finding still violates");
        assert_eq!(inv, Invariant::NoLivelock);
        let mut g = guest_run(&p, m.t.clone());
        g.hr.t.results[k] = None;
        g.end = End::Hung(k);
        assert!(matches!(
            judge(&p, &pol, &g),
            Verdict::Finding {
                reproduced: true,
                ..
            }
        ));
        // The op returned: not reproduced.
        let mut g = guest_run(&p, m.t.clone());
        g.hr.t.results[k] = Some("ok".into());
        assert!(matches!(
            judge(&p, &pol, &g),
            Verdict::Finding {
                reproduced: false,
                ..
            }
        ));
    }

    #[test]
    fn a_crash_is_at_the_op_that_raised_it_even_with_its_data_lost() {
        let p = Program::parse("mmap 0 4M thp\ntouch 0 2M write\nmprotect 0 1M r\n").unwrap();
        let pol = Policy::preset(Preset::Deposit);
        // The data channel carried nothing before the kernel went down during
        // op 2; the console has the markers and the BUG line.
        let mut g = GuestRun::new(p.ops.len());
        g.end = End::Crashed;
        g.last_op = Some(2);
        g.log.push((
            Some(2),
            "[ 3.0] kernel BUG at mm/huge_memory.c:3100!".into(),
        ));
        match judge(&p, &pol, &g) {
            Verdict::Diverge {
                kind, op, detail, ..
            } => {
                assert_eq!((kind.as_str(), op), ("crash", 2), "{detail}");
                assert!(
                    detail.contains("kernel BUG at mm/huge_memory.c"),
                    "{detail}"
                );
                assert!(detail.contains("mprotect"), "{detail}");
            }
            v => panic!("{v:?}"),
        }
    }
}
