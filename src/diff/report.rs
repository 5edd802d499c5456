//! What `diff` prints: one program's report and the summary over a batch.

use super::*;

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
