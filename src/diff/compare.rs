//! Comparing the two sides op by op: the first difference of each class.

use super::side::*;
use super::*;

/// What one program shows.
#[derive(Clone, Debug)]
pub struct ProgramDiff {
    pub diffs: Vec<Diff>,
    /// The kernel sites the fault plan failed, in order of first failure.
    pub deposit_fail_sites: Vec<String>,
    pub policy_fail_sites: Vec<String>,
    pub deposit_reclaim: ReclaimDemand,
    pub policy_reclaim: ReclaimDemand,
    pub deposit_end: String,
    pub policy_end: String,
}

impl ProgramDiff {
    /// The first difference of each class, in op order.
    pub fn firsts(&self) -> Vec<&Diff> {
        let mut m: BTreeMap<Class, &Diff> = BTreeMap::new();
        for d in &self.diffs {
            m.entry(d.class).or_insert(d);
        }
        let mut v: Vec<&Diff> = m.into_values().collect();
        v.sort_by_key(|d| (d.op, d.class));
        v
    }
    pub fn plan_sites_differ(&self) -> bool {
        self.deposit_fail_sites != self.policy_fail_sites
    }
    pub fn has(&self, c: Class) -> bool {
        self.diffs.iter().any(|d| d.class == c)
    }
}

/// The op without its addresses and sizes: `madvise 0 1M dontneed mm=1` →
/// `madvise dontneed`.
pub fn op_kind(line: &OpLine) -> String {
    line.to_string()
        .split_whitespace()
        .filter(|w| parse_size(w).is_err() && !w.starts_with("mm="))
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn res_name(r: Option<OpResult>) -> String {
    match r {
        Some(OpResult::Ok) => "ok".into(),
        Some(OpResult::Err(e)) => format!("{e:?}"),
        Some(OpResult::NoSuchMm) => "no such process".into(),
        Some(OpResult::OomLoop) => "oom-loop".into(),
        None => "violation".into(),
    }
}

pub(super) fn val_name(v: u64) -> String {
    match v {
        0 => "0".into(),
        v if v >> 32 >= 1 => format!("w{}", (v >> 32) - 1),
        v => format!("x{v:x}"),
    }
}

pub(super) fn page_name(p: &RefPage) -> String {
    if !p.mapped {
        return "unmapped".into();
    }
    format!(
        "{}{} {}",
        if p.write { "rw" } else { "r" },
        if p.wp == 1 { " uffd-wp" } else { "" },
        val_name(p.val)
    )
}

/// (MM_ANONPAGES, MM_SWAPENTS).
pub(super) type Rss = (i64, i64);

/// Page differences an op made, per kind.
#[derive(Default)]
pub(super) struct PageDiffs {
    pub(super) contents: usize,
    pub(super) vma: usize,
    pub(super) wp: usize,
    /// (mm, page, deposit's, P's) of the first one.
    pub(super) first: Option<(usize, usize, RefPage, RefPage)>,
    /// Mms that exist in one run only.
    pub(super) process: Vec<usize>,
    /// Mms whose VMA list (with the MADV_HUGEPAGE flag) differs.
    pub(super) vmas: Vec<usize>,
    /// Mms whose (MM_ANONPAGES, MM_SWAPENTS) differ: (mm, deposit's, P's).
    pub(super) rss: Vec<(usize, Rss, Rss)>,
    /// Mms whose THP mapping (AnonHugePages, per-page PMD/PTE/swap) differs.
    pub(super) mapping: Vec<usize>,
}

impl PageDiffs {
    pub(super) fn pages(&self) -> usize {
        self.contents + self.vma + self.wp
    }
    pub(super) fn any(&self) -> bool {
        self.pages() > 0
            || !self.process.is_empty()
            || !self.vmas.is_empty()
            || !self.rss.is_empty()
            || !self.mapping.is_empty()
    }
    pub(super) fn describe(&self, g: Geometry, pname: &str) -> String {
        let mut parts = Vec::new();
        if self.pages() > 0 {
            let mut s = format!(
                "{} page(s) differ (contents {}, mapping/protection {}, uffd-wp {})",
                self.pages(),
                self.contents,
                self.vma,
                self.wp
            );
            if let Some((m, pg, d, p)) = &self.first {
                let _ = write!(
                    s,
                    ", first mm {m} {:#x}: deposit {}, {pname} {}",
                    g.addr_of(*pg),
                    page_name(d),
                    page_name(p)
                );
            }
            parts.push(s);
        }
        for m in &self.process {
            parts.push(format!("process {m} exists in one run only"));
        }
        for m in &self.vmas {
            parts.push(format!("mm {m} VMAs differ"));
        }
        for (m, d, p) in &self.rss {
            parts.push(format!(
                "mm {m} RSS anon/swap deposit {}/{}, {pname} {}/{}",
                d.0, d.1, p.0, p.1
            ));
        }
        for m in &self.mapping {
            parts.push(format!("mm {m} THP mapping differs"));
        }
        parts.join("; ")
    }
}

/// Differences that appear at this op: the item differs after the op, and the
/// op changed the (deposit, P) pair of values.
pub(super) fn state_diffs(dp: &Obs, dn: &Obs, pp: &Obs, pn: &Obs) -> PageDiffs {
    let mut out = PageDiffs::default();
    let n = dn.len().max(pn.len());
    pub(super) fn get(o: &Obs, m: usize) -> Option<&MmObs> {
        o.get(m).and_then(|x| x.as_ref())
    }
    for m in 0..n {
        let (d0, d1, p0, p1) = (get(dp, m), get(dn, m), get(pp, m), get(pn, m));
        let changed = |f: &dyn Fn(Option<&MmObs>) -> Option<String>| {
            let (a1, b1) = (f(d1), f(p1));
            a1 != b1 && (f(d0), f(p0)) != (a1, b1)
        };
        if changed(&|x| x.map(|_| String::new())) {
            out.process.push(m);
            continue;
        }
        let (Some(d1), Some(p1)) = (d1, p1) else {
            continue;
        };
        let blank = RefPage::default();
        for pg in 0..d1.pages.len().min(p1.pages.len()) {
            let (a, b) = (d1.pages[pg], p1.pages[pg]);
            if a == b {
                continue;
            }
            let before = (
                d0.map_or(blank, |x| x.pages[pg]),
                p0.map_or(blank, |x| x.pages[pg]),
            );
            if before == (a, b) {
                continue;
            }
            if a.mapped != b.mapped || a.write != b.write {
                out.vma += 1;
            } else if a.val != b.val {
                out.contents += 1;
            } else {
                out.wp += 1;
            }
            if out.first.is_none() {
                out.first = Some((m, pg, a, b));
            }
        }
        if changed(&|x| x.map(|o| o.field("vmas").to_string())) {
            out.vmas.push(m);
        }
        if changed(&|x| x.map(|o| format!("{:?}", o.rss()))) {
            out.rss.push((m, d1.rss(), p1.rss()));
        }
        if changed(&|x| x.map(|o| format!("{:?}", o.mapping()))) {
            out.mapping.push(m);
        }
    }
    out
}

/// Do the two runs look the same to the processes (pages, VMAs, RSS, THP
/// mapping, which processes exist)? `VmPTE` is left out: deposit counts its
/// deposited tables there by design.
pub(super) fn same_state(a: &Obs, b: &Obs) -> bool {
    let n = a.len().max(b.len());
    (0..n).all(|m| {
        match (
            a.get(m).and_then(|x| x.as_ref()),
            b.get(m).and_then(|x| x.as_ref()),
        ) {
            (None, None) => true,
            (Some(x), Some(y)) => {
                x.pages == y.pages
                    && x.field("vmas") == y.field("vmas")
                    && x.rss() == y.rss()
                    && x.mapping() == y.mapping()
            }
            _ => false,
        }
    })
}

pub(super) fn violation_text(v: &Violation) -> String {
    format!("{} [{}]", v.signature(), v.severity)
}

pub(super) fn end_text(side: &Side, n: usize) -> String {
    if let Some(v) = &side.violation {
        return format!("VIOLATION at op {}: {v}", v.op_index);
    }
    if let Some(i) = side.results.iter().position(|r| *r == OpResult::OomLoop) {
        if i < n {
            return format!("oom-loop at op {i} (the task is killed there)");
        }
    }
    "ok".into()
}

pub(super) fn distinct_sites<'a>(it: impl Iterator<Item = &'a AllocRecord>) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for a in it {
        let s = format!("{} {}", a.kind.name(), a.site);
        if !v.contains(&s) {
            v.push(s);
        }
    }
    v
}

/// Compare a deposit run `d` with a run `p` of the same program op by op.
pub(super) fn compare(prog: &Program, d: &Side, p: &Side, cfg: &DiffConfig) -> ProgramDiff {
    let n = prog.ops.len();
    let reach = d.reached(n).min(p.reached(n));
    let mut diffs = Vec::new();
    for i in 0..reach {
        diffs.extend(compare_op(prog, d, p, cfg, i));
    }
    // The exit of every mm at the end (check_mm, teardown).
    if reach == n {
        diffs.extend(compare_exit(d, p, n));
    }
    ProgramDiff {
        diffs,
        deposit_fail_sites: distinct_sites(d.failed_allocs()),
        policy_fail_sites: distinct_sites(p.failed_allocs()),
        deposit_reclaim: ReclaimDemand::of(d),
        policy_reclaim: ReclaimDemand::of(p),
        deposit_end: end_text(d, n),
        policy_end: end_text(p, n),
    }
}

/// The differences of op `i`, in the order they are reported: the result,
/// the violations, reclaim that the policy cannot do, the state.
fn compare_op(prog: &Program, d: &Side, p: &Side, cfg: &DiffConfig, i: usize) -> Vec<Diff> {
    let line = &prog.ops[i];
    let before = i.checked_sub(1);
    let mut c = OpDiffs {
        op: i,
        text: line.to_string(),
        okind: op_kind(line),
        after_divergence: !same_state(d.state(before), p.state(before)),
        mine: Vec::new(),
    };
    let (dr, pr) = (d.res(i), p.res(i));
    let pv = p.violation.as_ref().filter(|v| v.op_index == i);
    let dv = d.violation.as_ref().filter(|v| v.op_index == i);
    // 1. The op's result.
    if dr != pr && pr.is_some() {
        let what = format!("{} -> {}", res_name(dr), res_name(pr));
        match (dr, pr) {
            (Some(OpResult::Ok), Some(OpResult::Err(_))) => {
                c.push(Class::NewError, what, String::new())
            }
            (_, Some(OpResult::OomLoop)) => c.push(
                Class::Loop,
                what,
                "the fault retries VM_FAULT_OOM until the task is killed".into(),
            ),
            _ => c.push(Class::Other, what, String::new()),
        }
    }
    // 2. Violations.
    for (class, what, detail) in violation_diffs(dv, pv) {
        c.push(class, what, detail);
    }
    // 3. Reclaim that P cannot do.
    let sd = state_diffs(
        d.state(before),
        d.state(Some(i)),
        p.state(before),
        p.state(Some(i)),
    );
    if let Some(detail) = reclaim_kept(line, &d.ops[i], &p.ops[i], pv.is_some(), &sd) {
        c.push(
            Class::ReclaimKept,
            "folio stays mapped (deposit reclaims it)".into(),
            detail,
        );
    }
    // 4. State (not when both runs ended in the OOM loop here: the task
    // is killed in both and nothing is left to see).
    let both_killed = dr == Some(OpResult::OomLoop) && pr == dr;
    if sd.any() && !both_killed {
        c.state(&sd, sd.describe(cfg.geometry, &cfg.policy.label()), dr, pr);
    }
    c.mine
}

/// One op's differences as they are found.
struct OpDiffs {
    op: usize,
    text: String,
    okind: String,
    after_divergence: bool,
    mine: Vec<Diff>,
}

impl OpDiffs {
    fn push(&mut self, class: Class, what: String, detail: String) {
        self.mine.push(Diff {
            class,
            op: self.op,
            op_text: self.text.clone(),
            kind: format!("{}: {what}", self.okind),
            detail,
            after_divergence: self.after_divergence,
        })
    }

    /// A state difference `desc`: a silent skip when both succeeded, else
    /// the detail of the op's first difference, else a difference of its own.
    fn state(&mut self, sd: &PageDiffs, desc: String, dr: Option<OpResult>, pr: Option<OpResult>) {
        let both_ok = dr == Some(OpResult::Ok) && pr == Some(OpResult::Ok);
        let skip_at = self.mine.iter().position(|x| x.class == Class::Skip);
        if let (true, Some(j)) = (both_ok, skip_at) {
            let x = &mut self.mine[j];
            x.detail = format!("{}; {desc}", x.detail);
        } else if both_ok && (sd.pages() > 0 || !sd.process.is_empty()) {
            let what = if sd.contents > 0 {
                "success, contents differ"
            } else if sd.vma > 0 {
                "success, mapping/protection differs"
            } else if sd.wp > 0 {
                "success, uffd-wp differs"
            } else {
                "success, process differs"
            };
            self.push(Class::Skip, what.into(), desc);
        } else if let Some(first) = self.mine.first_mut() {
            if first.detail.is_empty() {
                first.detail = desc;
            } else {
                first.detail = format!("{}; {desc}", first.detail);
            }
        } else {
            let what = if sd.pages() > 0 {
                "pages differ"
            } else if !sd.vmas.is_empty() {
                "VMA flags differ"
            } else if !sd.rss.is_empty() {
                "RSS differs"
            } else if !sd.mapping.is_empty() {
                "THP mapping differs"
            } else {
                "process differs"
            };
            let what = format!("{what} ({} both)", res_name(dr));
            self.push(Class::Other, what, desc);
        }
    }
}

/// Violations of one side that the other does not have: (class, what, detail).
fn violation_diffs(dv: Option<&Violation>, pv: Option<&Violation>) -> Vec<(Class, String, String)> {
    let mut out = Vec::new();
    if let Some(v) = pv {
        if dv.map(|x| x.signature()) != Some(v.signature()) {
            out.push((
                Class::of_severity(v.severity),
                violation_text(v),
                v.message.clone(),
            ));
        }
    }
    if let Some(v) = dv {
        if pv.map(|x| x.signature()) != Some(v.signature()) {
            out.push((
                Class::Other,
                format!("deposit itself: {}", violation_text(v)),
                v.message.clone(),
            ));
        }
    }
    out
}

/// A folio deposit reclaims and the policy keeps mapped (reclaim, or
/// MADV_PAGEOUT that freed fewer pages) because the rmap walk's table
/// allocation failed: the detail, if so.
fn reclaim_kept(
    line: &OpLine,
    dop: &OpRec,
    pop: &OpRec,
    p_violated: bool,
    sd: &PageDiffs,
) -> Option<String> {
    let (pcalls, pfailed) = pop.rmap_calls();
    let kept = match line.op {
        Op::Reclaim { .. } => {
            let dfreed = dop.reclaim.is_some_and(|r| !r.mapped_after);
            let pkept = pop.reclaim.is_some_and(|r| r.mapped_after);
            dfreed && pkept && pfailed > 0 && !p_violated
        }
        _ => false,
    };
    let pageout_kept = matches!(
        line.op,
        Op::Madvise {
            advice: Advice::Pageout,
            ..
        }
    ) && pfailed > 0
        && !p_violated
        && sd.rss.iter().any(|(_, dd, pp)| pp.0 > dd.0);
    if !(kept || pageout_kept) {
        return None;
    }
    let sustained = if pop.pte_forever {
        "sustained failure: every later pte_alloc_one() fails too"
    } else {
        "transient failure"
    };
    let folio = pop
        .reclaim
        .map(|r| format!(", folio PMD-mapped in {} mm(s)", r.pmd_maps))
        .unwrap_or_default();
    Some(format!(
        "{pcalls} pte_alloc_one() call(s) from the rmap walk, {pfailed} failed ({sustained}){folio}; deposit allocated {} table(s) and unmapped it",
        dop.rmap_calls().0
    ))
}

/// The exit of every mm at the end: violations only one side has.
fn compare_exit(d: &Side, p: &Side, n: usize) -> Vec<Diff> {
    let pv = p.violation.as_ref().filter(|v| v.op_index >= n);
    let dv = d.violation.as_ref().filter(|v| v.op_index >= n);
    let after_divergence = !same_state(d.state(n.checked_sub(1)), p.state(n.checked_sub(1)));
    violation_diffs(dv, pv)
        .into_iter()
        .map(|(class, what, detail)| Diff {
            class,
            op: n,
            op_text: "(exit of every mm)".into(),
            kind: format!("exit: {what}"),
            detail,
            after_divergence,
        })
        .collect()
}
