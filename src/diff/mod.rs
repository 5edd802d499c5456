//! The deposit-vs-lazy differential behind `splitfuzz diff` (its command line
//! is src/cli/diff.rs): what changes for users if the series lands.
//!
//! Every program runs twice through the one op executor (`run::run_on`): under
//! `deposit` (today's kernel) and under a lazy policy P, with the same program
//! text, fault plan included. After every op both runs are observed the way a
//! process sees its memory: per page whether it is mapped, writable, its contents
//! (what a read returns, swapped-out pages included: `oracle::observe`) and
//! its uffd-wp bit; per mm the observation line of the host oracle
//! (`real::model_line`: VMAs, `MM_ANONPAGES`, THP mapping) plus `MM_SWAPENTS`.
//! Every difference is attributed to the op that made it (a page or counter that
//! differs after the op, where the op changed the pair of values) and classified:
//!
//! * `new-error`: P returns an error where deposit succeeded.
//! * `skip`: P reports success but a page differs from deposit's (or P ends in a
//!   data-loss violation, the reference model's word for the same thing).
//! * `loop`: P never returns: the op ends in `OomLoop` (killed in the fault
//!   retry) where deposit did not, or P ends in a `no-livelock` violation.
//! * `crash`: P ends in a crash-severity violation.
//! * `leak`: P ends in a leak-severity violation (tables, folios, RSS counters).
//! * `reclaim-kept`: reclaim cannot free a folio that deposit frees (Hugh
//!   Dickins' objection to v3): deposit frees the folio or unmaps it into swap,
//!   P leaves it mapped because a `pte_alloc_one()` of the rmap walk failed.
//! * `other`: anything else a user can see (a different error, a THP left
//!   PMD-mapped, RSS, a process that exists in one run only, ...).
//!
//! **Fault plans count per policy.** `fail pte_alloc nth=N` fails the N-th
//! `pte_alloc_one()` *that run makes*. Deposit allocates a table at every THP
//! fault, huge-zero fault and fork of a huge PMD; a lazy policy allocates at
//! split time and in the rmap walks instead. So the same plan text usually fails
//! a different kernel site under each policy (e.g. `nth=1` fails
//! `__do_huge_pmd_anonymous_page` under deposit and `__split_huge_pmd` under
//! lazy). The report names the sites each run failed and says when they differ.
//! `--oom-from-op K` adds a policy-independent sustained failure: every
//! `pte_alloc_one()` fails from op K on, in both runs.
//!
//! **Reclaim table demand.** For every `reclaim` op the number of
//! `pte_alloc_one()` calls made by the rmap sites (`try_to_unmap_one`,
//! `try_to_migrate_one`) during the op: the tables reclaim must allocate to free
//! that one folio (deposit: 0). `--maximize reclaim-tables` drives it up.

use crate::base::Geometry;
use crate::check::reference::{op_pages, RefPage};
use crate::check::{Severity, Violation};
use crate::model::alloc::{AllocKind, AllocRecord, FailPolicy, FaultInjector};
use crate::model::mm::{FolioId, Kernel, Pmd, TableState};
use crate::model::policy::{Policy, Preset};
use crate::prog::{parse_size, Advice, Op, OpLine, Program, MAX_MMS};
use crate::run::{self, OpResult, RunConfig};
use rand::{Rng, RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::rc::Rc;

/// The kernel functions whose `pte_alloc_one()` calls are reclaim's table demand.
pub const RMAP_SITES: [&str; 2] = ["try_to_unmap_one", "try_to_migrate_one"];

/// The kind of a user-visible difference, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    NewError,
    Skip,
    Loop,
    Crash,
    Leak,
    ReclaimKept,
    Other,
}

impl Class {
    pub const ALL: [Class; 7] = [
        Class::NewError,
        Class::Skip,
        Class::Loop,
        Class::Crash,
        Class::Leak,
        Class::ReclaimKept,
        Class::Other,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Class::NewError => "new-error",
            Class::Skip => "skip",
            Class::Loop => "loop",
            Class::Crash => "crash",
            Class::Leak => "leak",
            Class::ReclaimKept => "reclaim-kept",
            Class::Other => "other",
        }
    }
    /// The class of a violation P ends in.
    pub fn of_severity(s: Severity) -> Class {
        match s {
            Severity::Crash => Class::Crash,
            Severity::DataLoss => Class::Skip,
            Severity::UnkillableLoop | Severity::KillableLoop => Class::Loop,
            Severity::Leak => Class::Leak,
            Severity::WrongErrno => Class::Other,
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One user-visible difference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diff {
    pub class: Class,
    /// Op index (== number of ops for the exit of every mm at the end).
    pub op: usize,
    pub op_text: String,
    /// Short, program-independent description (the summary's "kind of change").
    pub kind: String,
    /// Addresses, values, counts.
    pub detail: String,
    /// The runs already looked different before this op (the difference may
    /// be a consequence of an earlier one).
    pub after_divergence: bool,
}

// ------------------------------------------------------------------ one run

/// What a process can see of one mm.
#[derive(Clone, Debug, PartialEq, Eq)]
struct MmObs {
    pages: Vec<RefPage>,
    /// `real::model_line`: `mm M pte N anon N thp N vmas ... pages ... data ...`.
    line: String,
    swap: i64,
}

impl MmObs {
    fn field(&self, key: &str) -> &str {
        let mut w = self.line.split_whitespace();
        while let Some(x) = w.next() {
            if x == key {
                return w.next().unwrap_or("");
            }
        }
        ""
    }
    fn rss(&self) -> (i64, i64) {
        (self.field("anon").parse().unwrap_or(0), self.swap)
    }
    fn mapping(&self) -> (&str, &str) {
        (self.field("thp"), self.field("pages"))
    }
}

type Obs = Vec<Option<MmObs>>;

fn observe(k: &Kernel) -> Obs {
    crate::check::reference::observe(k)
        .mms
        .into_iter()
        .enumerate()
        .map(|(m, pages)| {
            pages.map(|pages| MmObs {
                pages,
                line: crate::observe::model_line(k, m),
                swap: k.mms[m].rss_swap,
            })
        })
        .collect()
}

/// The folio a `reclaim` op works on, before and after.
#[derive(Clone, Copy, Debug, Default)]
struct ReclaimRec {
    /// Mms mapping it by PMD before the op.
    pmd_maps: usize,
    /// Mapped in any mm after the op (not freed, not unmapped into swap).
    mapped_after: bool,
}

#[derive(Clone, Debug, Default)]
struct OpRec {
    /// The hook saw the op run (false: its mm did not exist, or the run ended).
    ran: bool,
    obs: Option<Obs>,
    allocs: Vec<AllocRecord>,
    reclaim: Option<ReclaimRec>,
    /// After the op, every future `pte_alloc_one()` fails.
    pte_forever: bool,
    /// Tables the rmap sites allocated during the op that are still allocated
    /// after it (installed by a split), not freed as an unused preallocation.
    rmap_kept_tables: u32,
}

impl OpRec {
    fn rmap_calls(&self) -> (u32, u32) {
        let rm = self
            .allocs
            .iter()
            .filter(|a| a.kind == AllocKind::PteTable && RMAP_SITES.contains(&a.site));
        let (mut calls, mut failed) = (0, 0);
        for a in rm {
            calls += 1;
            failed += a.failed as u32;
        }
        (calls, failed)
    }
}

/// One program under one policy, op by op.
struct Side {
    init: Obs,
    ops: Vec<OpRec>,
    results: Vec<OpResult>,
    violation: Option<Violation>,
}

impl Side {
    /// Ops this run got to (the op it ended in included).
    fn reached(&self, n: usize) -> usize {
        if let Some(v) = &self.violation {
            if v.op_index < n {
                return v.op_index + 1;
            }
        }
        if let Some(i) = self.results.iter().position(|r| *r == OpResult::OomLoop) {
            return i + 1;
        }
        n
    }
    /// The result of op `i`; None: the run hit a violation inside it.
    fn res(&self, i: usize) -> Option<OpResult> {
        self.results.get(i).copied()
    }
    /// The state after op `i` (`None`: before op 0).
    fn state(&self, i: Option<usize>) -> &Obs {
        let Some(i) = i else { return &self.init };
        (0..=i.min(self.ops.len().saturating_sub(1)))
            .rev()
            .find_map(|j| self.ops[j].obs.as_ref())
            .unwrap_or(&self.init)
    }
    fn failed_allocs(&self) -> impl Iterator<Item = &AllocRecord> {
        self.ops
            .iter()
            .flat_map(|o| o.allocs.iter())
            .filter(|a| a.failed)
    }
}

/// Fails whatever `inner` fails, and everything once `on` is set (by the hook,
/// from op K on): a sustained failure at the same point of both runs.
struct FromOp {
    inner: Box<dyn FailPolicy>,
    on: Rc<Cell<bool>>,
}

impl FailPolicy for FromOp {
    fn should_fail(&self, call: u32) -> bool {
        self.on.get() || self.inner.should_fail(call)
    }
    fn fails_forever_from(&self, call: u32) -> bool {
        self.on.get() || self.inner.fails_forever_from(call)
    }
}

fn run_side(prog: &Program, cfg: &RunConfig, oom_from_op: Option<usize>, watch: bool) -> Side {
    let on = Rc::new(Cell::new(false));
    let mut k = run::build(prog, cfg);
    if oom_from_op.is_some() {
        let pte = FromOp {
            inner: prog.faults.pte_alloc.policy(),
            on: on.clone(),
        };
        k.alloc = FaultInjector::new(Box::new(pte), prog.faults.thp.policy());
    }
    k.alloc.record = true;
    let init = if watch { observe(&k) } else { Vec::new() };
    let n = prog.ops.len();
    let mut ops: Vec<OpRec> = vec![OpRec::default(); n];
    let mut results = Vec::with_capacity(n);
    let mut start = 0usize;
    let mut tstart = 0usize;
    let mut folio: Option<FolioId> = None;
    let violation = run::run_on(
        &mut k,
        prog,
        &mut results,
        &mut |k, i, phase| {
            let line = &prog.ops[i];
            if phase == 0 {
                on.set(oom_from_op.is_some_and(|o| i >= o));
                start = k.alloc.log.len();
                tstart = k.tables.len();
                folio = None;
                if let Op::Reclaim { .. } = line.op {
                    let (lo, _) = op_pages(&line.op, k.geom);
                    folio = k.folio_at(line.mm, lo);
                    if let Some(f) = folio {
                        let pmd_maps = (0..k.mms.len())
                            .filter(|&m| {
                                k.mms[m].alive
                                    && k.mms[m].pmds.iter().any(
                                        |p| matches!(*p, Pmd::Huge { folio, .. } if folio == f),
                                    )
                            })
                            .count();
                        ops[i].reclaim = Some(ReclaimRec {
                            pmd_maps,
                            mapped_after: true,
                        });
                    }
                }
                return;
            }
            let r = &mut ops[i];
            r.ran = true;
            r.allocs = k.alloc.log[start.min(k.alloc.log.len())..].to_vec();
            r.pte_forever = k.alloc.pte_fails_forever();
            r.rmap_kept_tables = k.tables[tstart.min(k.tables.len())..]
                .iter()
                .filter(|t| RMAP_SITES.contains(&t.site) && t.state != TableState::Freed)
                .count() as u32;
            if watch {
                r.obs = Some(observe(k));
            }
            if let (Some(f), Some(rec)) = (folio, r.reclaim.as_mut()) {
                rec.mapped_after = (0..k.mms.len()).any(|m| k.mms[m].alive && k.maps_folio(m, f));
            }
        },
        true,
    );
    Side {
        init,
        ops,
        results,
        violation,
    }
}

// ------------------------------------------------------------------ reclaim demand

/// Reclaim's table demand in one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReclaimDemand {
    /// Max `pte_alloc_one()` calls of the rmap sites in one `reclaim` op that
    /// freed its folio or unmapped it into swap, and that op.
    pub per_reclaimed_folio: Option<(u32, usize)>,
    /// Max calls in any `reclaim` op (reclaimed or not), and that op.
    pub max_calls: Option<(u32, usize)>,
    /// PMD mappings (over all mms) of the folio of the `per_reclaimed_folio` op.
    pub pmd_maps: usize,
    /// Tables a `reclaim` op allocated and still holds (splits in the mms it
    /// got through) while its folio stays mapped (the first such op): Hugh's
    /// "k tables consumed from reserves, nothing freed".
    pub consumed_nothing_freed: Option<(u32, usize)>,
}

impl ReclaimDemand {
    fn of(side: &Side) -> ReclaimDemand {
        let mut d = ReclaimDemand::default();
        for (i, r) in side.ops.iter().enumerate() {
            let Some(rec) = r.reclaim else { continue };
            if !r.ran {
                continue;
            }
            let (calls, _) = r.rmap_calls();
            if d.max_calls.is_none_or(|(c, _)| calls > c) {
                d.max_calls = Some((calls, i));
            }
            if !rec.mapped_after {
                if d.per_reclaimed_folio.is_none_or(|(c, _)| calls > c) {
                    d.per_reclaimed_folio = Some((calls, i));
                    d.pmd_maps = rec.pmd_maps;
                }
            } else if r.rmap_kept_tables > 0 && d.consumed_nothing_freed.is_none() {
                d.consumed_nothing_freed = Some((r.rmap_kept_tables, i));
            }
        }
        d
    }
    pub fn value(&self) -> u32 {
        self.per_reclaimed_folio.map_or(0, |x| x.0)
    }
}

// ------------------------------------------------------------------ comparing

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

fn res_name(r: Option<OpResult>) -> String {
    match r {
        Some(OpResult::Ok) => "ok".into(),
        Some(OpResult::Err(e)) => format!("{e:?}"),
        Some(OpResult::NoSuchMm) => "no such process".into(),
        Some(OpResult::OomLoop) => "oom-loop".into(),
        None => "violation".into(),
    }
}

fn val_name(v: u64) -> String {
    match v {
        0 => "0".into(),
        v if v >> 32 >= 1 => format!("w{}", (v >> 32) - 1),
        v => format!("x{v:x}"),
    }
}

fn page_name(p: &RefPage) -> String {
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
type Rss = (i64, i64);

/// Page differences an op made, per kind.
#[derive(Default)]
struct PageDiffs {
    contents: usize,
    vma: usize,
    wp: usize,
    /// (mm, page, deposit's, P's) of the first one.
    first: Option<(usize, usize, RefPage, RefPage)>,
    /// Mms that exist in one run only.
    process: Vec<usize>,
    /// Mms whose VMA list (with the MADV_HUGEPAGE flag) differs.
    vmas: Vec<usize>,
    /// Mms whose (MM_ANONPAGES, MM_SWAPENTS) differ: (mm, deposit's, P's).
    rss: Vec<(usize, Rss, Rss)>,
    /// Mms whose THP mapping (AnonHugePages, per-page PMD/PTE/swap) differs.
    mapping: Vec<usize>,
}

impl PageDiffs {
    fn pages(&self) -> usize {
        self.contents + self.vma + self.wp
    }
    fn any(&self) -> bool {
        self.pages() > 0
            || !self.process.is_empty()
            || !self.vmas.is_empty()
            || !self.rss.is_empty()
            || !self.mapping.is_empty()
    }
    fn describe(&self, g: Geometry, pname: &str) -> String {
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
fn state_diffs(dp: &Obs, dn: &Obs, pp: &Obs, pn: &Obs) -> PageDiffs {
    let mut out = PageDiffs::default();
    let n = dn.len().max(pn.len());
    fn get(o: &Obs, m: usize) -> Option<&MmObs> {
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
fn same_state(a: &Obs, b: &Obs) -> bool {
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

fn violation_text(v: &Violation) -> String {
    format!("{} [{}]", v.signature(), v.severity)
}

fn end_text(side: &Side, n: usize) -> String {
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

fn distinct_sites<'a>(it: impl Iterator<Item = &'a AllocRecord>) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for a in it {
        let s = format!("{} {}", a.kind.name(), a.site);
        if !v.contains(&s) {
            v.push(s);
        }
    }
    v
}

/// Options of one differential run.
#[derive(Clone, Debug)]
pub struct DiffConfig {
    pub policy: Policy,
    pub geometry: Geometry,
    /// Every `pte_alloc_one()` fails from this op on, in both runs.
    pub oom_from_op: Option<usize>,
}

/// Run `prog` under deposit and under `cfg.policy` and compare them op by op.
pub fn diff_program(prog: &Program, cfg: &DiffConfig) -> ProgramDiff {
    let dcfg = RunConfig::new(Policy::preset(Preset::Deposit), cfg.geometry);
    let pcfg = RunConfig::new(cfg.policy.clone(), cfg.geometry);
    let d = run_side(prog, &dcfg, cfg.oom_from_op, true);
    let p = run_side(prog, &pcfg, cfg.oom_from_op, true);
    compare(prog, &d, &p, cfg)
}

/// Compare a deposit run `d` with a run `p` of the same program op by op.
fn compare(prog: &Program, d: &Side, p: &Side, cfg: &DiffConfig) -> ProgramDiff {
    let pname = cfg.policy.label();
    let n = prog.ops.len();
    let g = cfg.geometry;
    let mut diffs = Vec::new();
    let reach = d.reached(n).min(p.reached(n));
    for i in 0..reach {
        let line = &prog.ops[i];
        let text = line.to_string();
        let okind = op_kind(line);
        let mut mine: Vec<Diff> = Vec::new();
        let before = i.checked_sub(1);
        let after_divergence = !same_state(d.state(before), p.state(before));
        let push = |mine: &mut Vec<Diff>, class: Class, what: String, detail: String| {
            mine.push(Diff {
                class,
                op: i,
                op_text: text.clone(),
                kind: format!("{okind}: {what}"),
                detail,
                after_divergence,
            })
        };
        let (dr, pr) = (d.res(i), p.res(i));
        let pv = p.violation.as_ref().filter(|v| v.op_index == i);
        let dv = d.violation.as_ref().filter(|v| v.op_index == i);
        // 1. The op's result.
        if dr != pr && pr.is_some() {
            let what = format!("{} -> {}", res_name(dr), res_name(pr));
            match (dr, pr) {
                (Some(OpResult::Ok), Some(OpResult::Err(_))) => {
                    push(&mut mine, Class::NewError, what, String::new())
                }
                (_, Some(OpResult::OomLoop)) => push(
                    &mut mine,
                    Class::Loop,
                    what,
                    "the fault retries VM_FAULT_OOM until the task is killed".into(),
                ),
                _ => push(&mut mine, Class::Other, what, String::new()),
            }
        }
        // 2. Violations.
        if let Some(v) = pv {
            if dv.map(|x| x.signature()) != Some(v.signature()) {
                push(
                    &mut mine,
                    Class::of_severity(v.severity),
                    violation_text(v),
                    v.message.clone(),
                );
            }
        }
        if let Some(v) = dv {
            if pv.map(|x| x.signature()) != Some(v.signature()) {
                push(
                    &mut mine,
                    Class::Other,
                    format!("deposit itself: {}", violation_text(v)),
                    v.message.clone(),
                );
            }
        }
        // 3. Reclaim that P cannot do.
        let (dop, pop) = (&d.ops[i], &p.ops[i]);
        let (pcalls, pfailed) = pop.rmap_calls();
        let kept = match line.op {
            Op::Reclaim { .. } => {
                let dfreed = dop.reclaim.is_some_and(|r| !r.mapped_after);
                let pkept = pop.reclaim.is_some_and(|r| r.mapped_after);
                dfreed && pkept && pfailed > 0 && pv.is_none()
            }
            _ => false,
        };
        let sd = state_diffs(
            d.state(before),
            d.state(Some(i)),
            p.state(before),
            p.state(Some(i)),
        );
        let pageout_kept = matches!(
            line.op,
            Op::Madvise {
                advice: Advice::Pageout,
                ..
            }
        ) && pfailed > 0
            && pv.is_none()
            && sd.rss.iter().any(|(_, dd, pp)| pp.0 > dd.0);
        if kept || pageout_kept {
            let sustained = if pop.pte_forever {
                "sustained failure: every later pte_alloc_one() fails too"
            } else {
                "transient failure"
            };
            let folio = pop
                .reclaim
                .map(|r| format!(", folio PMD-mapped in {} mm(s)", r.pmd_maps))
                .unwrap_or_default();
            push(&mut mine,
                Class::ReclaimKept,
                "folio stays mapped (deposit reclaims it)".into(),
                format!(
                    "{pcalls} pte_alloc_one() call(s) from the rmap walk, {pfailed} failed ({sustained}){folio}; deposit allocated {} table(s) and unmapped it",
                    dop.rmap_calls().0
                ),
            );
        }
        // 4. State (not when both runs ended in the OOM loop here: the task
        // is killed in both and nothing is left to see).
        let both_killed = dr == Some(OpResult::OomLoop) && pr == dr;
        if sd.any() && !both_killed {
            let desc = sd.describe(g, &pname);
            let both_ok = dr == Some(OpResult::Ok) && pr == Some(OpResult::Ok);
            let skip_at = mine.iter().position(|x| x.class == Class::Skip);
            if let (true, Some(j)) = (both_ok, skip_at) {
                let x = &mut mine[j];
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
                push(&mut mine, Class::Skip, what.into(), desc);
            } else if let Some(first) = mine.first_mut() {
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
                push(&mut mine, Class::Other, what, desc);
            }
        }
        diffs.extend(mine);
    }
    // The exit of every mm at the end (check_mm, teardown).
    if reach == n {
        let pv = p.violation.as_ref().filter(|v| v.op_index >= n);
        let dv = d.violation.as_ref().filter(|v| v.op_index >= n);
        let after_divergence = !same_state(d.state(n.checked_sub(1)), p.state(n.checked_sub(1)));
        let mk = |class, what: String, detail: String| Diff {
            class,
            op: n,
            op_text: "(exit of every mm)".into(),
            kind: format!("exit: {what}"),
            detail,
            after_divergence,
        };
        if let Some(v) = pv {
            if dv.map(|x| x.signature()) != Some(v.signature()) {
                diffs.push(mk(
                    Class::of_severity(v.severity),
                    violation_text(v),
                    v.message.clone(),
                ));
            }
        }
        if let Some(v) = dv {
            if pv.map(|x| x.signature()) != Some(v.signature()) {
                diffs.push(mk(
                    Class::Other,
                    format!("deposit itself: {}", violation_text(v)),
                    v.message.clone(),
                ));
            }
        }
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

/// The block `diff` prints for one program.
pub fn program_report(name: &str, prog: &Program, pd: &ProgramDiff, cfg: &DiffConfig) -> String {
    let pname = cfg.policy.label();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{name}: {} difference(s) under {pname} vs deposit ({} ops)",
        pd.diffs.len(),
        prog.ops.len()
    );
    let plan = match cfg.oom_from_op {
        Some(k) => format!("every pte_alloc_one() fails from op {k} (both runs)"),
        None => String::new(),
    };
    let text_plan = [
        (!prog.faults.pte_alloc.is_never())
            .then(|| format!("fail pte_alloc {}", prog.faults.pte_alloc)),
        (!prog.faults.thp.is_never()).then(|| format!("fail thp {}", prog.faults.thp)),
        (!plan.is_empty()).then_some(plan),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>();
    if !text_plan.is_empty() {
        let sites = |v: &[String]| {
            if v.is_empty() {
                "nothing".to_string()
            } else {
                v.join(", ")
            }
        };
        let _ = writeln!(
            s,
            "  fault plan {}: under deposit it fails {}; under {pname} {}{}",
            text_plan.join("; "),
            sites(&pd.deposit_fail_sites),
            sites(&pd.policy_fail_sites),
            match (pd.plan_sites_differ(), cfg.oom_from_op.is_none()) {
                (true, true) => " (different kernel sites: each policy counts its own allocations)",
                (true, false) => " (different kernel sites)",
                _ => "",
            }
        );
    }
    for d in pd.firsts() {
        let _ = writeln!(
            s,
            "  {:<12} op {} `{}`: {}{}",
            d.class.name(),
            d.op,
            d.op_text,
            d.kind,
            if d.after_divergence {
                " (after the runs diverged)"
            } else {
                ""
            }
        );
        if !d.detail.is_empty() {
            let _ = writeln!(s, "  {:<12}   {}", "", d.detail);
        }
    }
    let dem = |r: &ReclaimDemand| match (r.per_reclaimed_folio, r.max_calls) {
        (Some((c, i)), _) => format!("{c} (op {i}, folio PMD-mapped in {} mm(s))", r.pmd_maps),
        (None, Some((c, i))) => format!("none reclaimed ({c} call(s) in op {i})"),
        (None, None) => "-".into(),
    };
    if pd.deposit_reclaim.max_calls.is_some() || pd.policy_reclaim.max_calls.is_some() {
        let _ = write!(
            s,
            "  reclaim tables per reclaimed folio: deposit {}, {pname} {}",
            dem(&pd.deposit_reclaim),
            dem(&pd.policy_reclaim)
        );
        if let Some((c, i)) = pd.policy_reclaim.consumed_nothing_freed {
            let _ = write!(
                s,
                "; op {i}: {pname} holds {c} table(s) its reclaim allocated and freed nothing"
            );
        }
        s.push('\n');
    }
    let _ = writeln!(
        s,
        "  end: deposit {}; {pname} {}",
        pd.deposit_end, pd.policy_end
    );
    s
}

// ------------------------------------------------------------------ summary

#[derive(Clone, Debug, Default)]
pub struct ClassCount {
    /// Programs with at least one difference of the class.
    pub programs: u64,
    /// Programs whose first difference is of the class.
    pub first: u64,
    /// Differences (ops) of the class.
    pub ops: u64,
    /// Of those, at an op before which both runs looked the same.
    pub root: u64,
}

/// Counts over many programs.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub programs: u64,
    pub differing: u64,
    pub classes: BTreeMap<Class, ClassCount>,
    /// (class, kind) → (programs, ops), over differences before divergence.
    pub kinds: BTreeMap<(Class, String), (u64, u64)>,
    pub plan_sites_differ: u64,
    pub with_plan: u64,
    /// Programs in which the plan failed at least one allocation, per run.
    pub plan_failed_deposit: u64,
    pub plan_failed_policy: u64,
    /// Reclaim table demand: value → programs (programs with a reclaimed folio).
    pub demand: BTreeMap<u32, u64>,
    /// Worst demand and the program's name.
    pub worst: Option<(u32, String)>,
    pub deposit_demand_max: u32,
    /// reclaim-kept under a sustained / transient failure.
    pub reclaim_kept_sustained: u64,
    pub reclaim_kept_transient: u64,
    pub consumed_nothing_freed: u64,
}

impl Summary {
    pub fn add(&mut self, name: &str, prog: &Program, pd: &ProgramDiff) {
        self.programs += 1;
        if !pd.diffs.is_empty() {
            self.differing += 1;
        }
        if !prog.faults.pte_alloc.is_never() || !prog.faults.thp.is_never() {
            self.with_plan += 1;
            self.plan_sites_differ += pd.plan_sites_differ() as u64;
            self.plan_failed_deposit += !pd.deposit_fail_sites.is_empty() as u64;
            self.plan_failed_policy += !pd.policy_fail_sites.is_empty() as u64;
        }
        let mut seen = std::collections::BTreeSet::new();
        for (j, d) in pd.diffs.iter().enumerate() {
            let c = self.classes.entry(d.class).or_default();
            c.ops += 1;
            c.root += !d.after_divergence as u64;
            if j == 0 {
                c.first += 1;
            }
            if seen.insert(d.class) {
                c.programs += 1;
            }
            if !d.after_divergence {
                self.kinds.entry((d.class, d.kind.clone())).or_default().1 += 1;
            }
        }
        let mut kinds_seen = std::collections::BTreeSet::new();
        for d in &pd.diffs {
            if !d.after_divergence && kinds_seen.insert((d.class, d.kind.clone())) {
                self.kinds.entry((d.class, d.kind.clone())).or_default().0 += 1;
            }
            if d.class == Class::ReclaimKept {
                if d.detail.contains("sustained") {
                    self.reclaim_kept_sustained += 1;
                } else {
                    self.reclaim_kept_transient += 1;
                }
            }
        }
        if let Some((v, _)) = pd.policy_reclaim.per_reclaimed_folio {
            *self.demand.entry(v).or_default() += 1;
            if self.worst.as_ref().is_none_or(|(w, _)| v > *w) {
                self.worst = Some((v, name.to_string()));
            }
        }
        self.deposit_demand_max = self
            .deposit_demand_max
            .max(pd.deposit_reclaim.max_calls.map_or(0, |x| x.0));
        self.consumed_nothing_freed += pd.policy_reclaim.consumed_nothing_freed.is_some() as u64;
    }

    pub fn table(&self, cfg: &DiffConfig) -> String {
        let pname = cfg.policy.label();
        let mut s = String::new();
        let _ = writeln!(
            s,
            "== diff {pname} vs deposit ({} geometry): {} program(s), {} with a user-visible difference, {} identical",
            cfg.geometry.name(),
            self.programs,
            self.differing,
            self.programs - self.differing
        );
        let _ = writeln!(
            s,
            "   {:<13} {:>9} {:>7} {:>7} {:>7}",
            "class", "programs", "first", "root", "all"
        );
        for c in Class::ALL {
            let x = self.classes.get(&c).cloned().unwrap_or_default();
            let _ = writeln!(
                s,
                "   {:<13} {:>9} {:>7} {:>7} {:>7}",
                c.name(),
                x.programs,
                x.first,
                x.root,
                x.ops
            );
        }
        let _ = writeln!(
            s,
            "   (programs: with a difference of the class; first: whose first difference it is; root: differences at an op before which both runs looked the same; all: every difference, consequences of earlier ones included)"
        );
        if !self.kinds.is_empty() {
            let _ = writeln!(
                s,
                "   kinds of change, root differences only (programs, ops):"
            );
            for ((c, k), (progs, ops)) in &self.kinds {
                let _ = writeln!(s, "   {:<13} {:>6} {:>6}  {k}", c.name(), progs, ops);
            }
        }
        let _ = writeln!(
            s,
            "   fault plans: {} program(s) with one; it failed an allocation in {} under deposit and {} under {pname}; it failed different kernel sites in {}",
            self.with_plan, self.plan_failed_deposit, self.plan_failed_policy, self.plan_sites_differ
        );
        let _ = writeln!(
            s,
            "   reclaim-kept: {} under sustained failure, {} under a transient one; {} program(s) where {pname}'s reclaim allocated tables and freed nothing",
            self.reclaim_kept_sustained, self.reclaim_kept_transient, self.consumed_nothing_freed
        );
        let dist = self
            .demand
            .iter()
            .map(|(v, n)| format!("{v}: {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            s,
            "   reclaim tables per reclaimed folio: deposit max {}; {pname} max {} (programs by value: {})",
            self.deposit_demand_max,
            self.worst
                .as_ref()
                .map_or("-".to_string(), |(v, n)| format!("{v} in {n}")),
            if dist.is_empty() { "-".into() } else { dist }
        );
        s
    }
}

// ------------------------------------------------------------------ maximize

/// The upper bound of reclaim's table demand in this model: one rmap-walk
/// allocation per VMA the walk visits (v2 14 / v3 17: once per
/// `try_to_unmap_one()` call), every VMA linked to the folio's anon_vma whose
/// pgoff range covers part of it; in one mm those VMAs are disjoint in pgoff,
/// so at most one per page of the folio, and a program has at most `MAX_MMS`
/// mms.
pub fn demand_bound(geometry: Geometry) -> u32 {
    (MAX_MMS * geometry.ptrs) as u32
}

#[derive(Clone, Debug)]
pub struct MaxResult {
    pub best: u32,
    pub program: Program,
    /// The run that first reached `best` (0-based).
    pub found_at: u64,
    pub runs: u64,
    /// Inputs kept (each raised the best).
    pub kept: usize,
}

/// Reclaim's table demand of one program under `cfg` (max tables per
/// reclaimed folio).
pub fn reclaim_demand(prog: &Program, cfg: &RunConfig) -> ReclaimDemand {
    ReclaimDemand::of(&run_side(prog, cfg, None, false))
}

/// Drop fault plans and ops (greedily, last op first) while the program's
/// reclaim table demand stays at `best`.
fn shrink_keeping(prog: &Program, cfg: &RunConfig, best: u32) -> Program {
    let keeps = |p: &Program| reclaim_demand(p, cfg).value() >= best;
    if best == 0 || !keeps(prog) {
        return prog.clone();
    }
    crate::prog::minimize::shrink(prog, &keeps)
}

/// Mutate programs (the engine's mutation) keeping those that raise the max
/// tables per reclaimed folio. Deterministic for a seed and `runs`.
pub fn maximize(policy: &Policy, geometry: Geometry, runs: u64, seed: u64) -> MaxResult {
    let cfg = RunConfig::new(policy.clone(), geometry);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    let mut best = 0u32;
    let mut best_prog = Program::default();
    let mut found_at = 0;
    for run in 0..runs {
        let input = if corpus.is_empty() || rng.gen_ratio(1, 8) {
            let len = rng.gen_range(4..160);
            let mut b = vec![0u8; len];
            rng.fill_bytes(&mut b);
            b
        } else {
            // Mostly from the best input so far, sometimes from an older one.
            let a = if rng.gen_ratio(3, 4) {
                corpus.len() - 1
            } else {
                rng.gen_range(0..corpus.len())
            };
            let b = rng.gen_range(0..corpus.len());
            crate::prog::mutate::mutate(&mut rng, &corpus[a], &corpus[b])
        };
        let prog = Program::decode(&input);
        let v = reclaim_demand(&prog, &cfg).value();
        if v > best {
            best = v;
            best_prog = prog;
            found_at = run;
            corpus.push(input);
        }
    }
    MaxResult {
        best,
        program: shrink_keeping(&best_prog, &cfg, best),
        found_at,
        runs,
        kept: corpus.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No preset leaks in the model today, so no program can show the `leak`
    /// class end to end: this checks the classifier on a real pair of runs
    /// where P's teardown is given a leak-severity violation, and the mapping
    /// of every severity.
    #[test]
    fn a_leak_violation_of_p_is_a_leak() {
        let prog = Program::parse("mmap 0 2M thp\ntouch 0 2M write\n").unwrap();
        let cfg = DiffConfig {
            policy: Policy::preset(Preset::LazyV3),
            geometry: Geometry::SMALL,
            oom_from_op: None,
        };
        let dcfg = RunConfig::new(Policy::preset(Preset::Deposit), cfg.geometry);
        let pcfg = RunConfig::new(cfg.policy.clone(), cfg.geometry);
        let d = run_side(&prog, &dcfg, None, true);
        let mut p = run_side(&prog, &pcfg, None, true);
        assert!(compare(&prog, &d, &p, &cfg).diffs.is_empty());
        p.violation = Some(Violation {
            invariant: crate::check::Invariant::NrPtes,
            severity: Severity::Leak,
            function: "exit_mmap".into(),
            op_index: prog.ops.len(),
            mm: 0,
            addr: 0,
            message: "test".into(),
        });
        let pd = compare(&prog, &d, &p, &cfg);
        assert_eq!(pd.diffs.len(), 1, "{:?}", pd.diffs);
        assert_eq!(pd.diffs[0].class, Class::Leak);
        assert_eq!(pd.diffs[0].op, prog.ops.len());
        let want = [
            (Severity::Crash, Class::Crash),
            (Severity::DataLoss, Class::Skip),
            (Severity::UnkillableLoop, Class::Loop),
            (Severity::KillableLoop, Class::Loop),
            (Severity::Leak, Class::Leak),
            (Severity::WrongErrno, Class::Other),
        ];
        for (s, c) in want {
            assert_eq!(Class::of_severity(s), c);
        }
    }
}
