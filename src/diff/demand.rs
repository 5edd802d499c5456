//! Reclaim's page-table demand (Hugh's objection) and `diff --maximize`,
//! which drives it up with the engine's mutations.

use super::side::*;
use super::*;
use crate::prog::Plan;

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
    pub(super) fn of(side: &Side) -> ReclaimDemand {
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
    /// The number `target` names.
    pub fn get(&self, target: MaxTarget) -> u32 {
        match target {
            MaxTarget::ReclaimTables => self.value(),
            MaxTarget::KeptTables => self.consumed_nothing_freed.map_or(0, |x| x.0),
        }
    }
}

/// What `diff --maximize` drives up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaxTarget {
    /// `reclaim-tables`: rmap-walk tables per reclaimed folio.
    ReclaimTables,
    /// `reclaim-kept-tables`: Hugh Dickins' number (v3 00/24, 2026-04-05):
    /// tables a reclaim allocated and still holds when it gives up with
    /// its folio still mapped, nothing freed (pages taken from reserves
    /// under PF_MEMALLOC in the kernel).
    KeptTables,
}

impl MaxTarget {
    pub const ALL: [MaxTarget; 2] = [MaxTarget::ReclaimTables, MaxTarget::KeptTables];
    pub fn name(self) -> &'static str {
        match self {
            MaxTarget::ReclaimTables => "reclaim-tables",
            MaxTarget::KeptTables => "reclaim-kept-tables",
        }
    }
    pub fn parse(s: &str) -> Result<MaxTarget, String> {
        MaxTarget::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown --maximize target '{s}' ({})",
                    MaxTarget::ALL.map(|t| t.name()).join(", ")
                )
            })
    }
}

/// Contiguous swap during a `--maximize` search: as each program's plan
/// says, or forced for every program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwapClusters {
    AsPlanned,
    /// Every `folio_alloc_swap()` of a THP gets its cluster.
    Available,
    /// Every one fails (`fail swap-cluster from=1`).
    Exhausted,
}

impl SwapClusters {
    pub fn parse(s: &str) -> Result<SwapClusters, String> {
        match s {
            "available" => Ok(SwapClusters::Available),
            "exhausted" => Ok(SwapClusters::Exhausted),
            _ => Err(format!(
                "unknown --swap-cluster '{s}' (available, exhausted)"
            )),
        }
    }
    /// Set `prog`'s swap-cluster plan accordingly.
    pub fn apply(self, prog: &mut Program) {
        match self {
            SwapClusters::AsPlanned => {}
            SwapClusters::Available => prog.faults.swap_cluster = Plan::Never,
            SwapClusters::Exhausted => prog.faults.swap_cluster = Plan::From(1),
        }
    }
}

/// The upper bound of reclaim's table demand in this model: one rmap-walk
/// allocation per VMA the walk visits (v2 14 / v3 17: once per
/// `try_to_unmap_one()` call), every VMA linked to the folio's anon_vma whose
/// pgoff range covers part of it; in one mm those VMAs are disjoint in pgoff,
/// so at most one per page of the folio, and a program has at most `MAX_MMS`
/// mms.
pub fn demand_bound(geometry: Geometry) -> u32 {
    (MAX_MMS * geometry.ptrs) as u32
}

/// The upper bound of the tables a reclaim can hold while freeing nothing:
/// a table is kept only where a PMD mapping was split, a folio has at most
/// one PMD mapping per mm, and the walk stops at the first failure, so at
/// most one fewer than `MAX_MMS` (Hugh's "500 of 1000").
pub fn kept_bound() -> u32 {
    MAX_MMS as u32 - 1
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
/// number `target` stays at `best` (the swap-cluster state held).
pub(super) fn shrink_keeping(
    prog: &Program,
    cfg: &RunConfig,
    best: u32,
    target: MaxTarget,
    swap: SwapClusters,
) -> Program {
    let keeps = |p: &Program| {
        let mut q = p.clone();
        swap.apply(&mut q);
        q == *p && reclaim_demand(p, cfg).get(target) >= best
    };
    if best == 0 || !keeps(prog) {
        return prog.clone();
    }
    crate::prog::minimize::shrink(prog, &keeps)
}

/// Mutate programs (the engine's mutation) keeping those that raise the max
/// tables per reclaimed folio. Deterministic for a seed and `runs`.
pub fn maximize(policy: &Policy, geometry: Geometry, runs: u64, seed: u64) -> MaxResult {
    maximize_with(
        policy,
        geometry,
        runs,
        seed,
        MaxTarget::ReclaimTables,
        SwapClusters::AsPlanned,
    )
}

/// [`maximize`] for any target, with the swap-cluster state forced on
/// every program tried.
pub fn maximize_with(
    policy: &Policy,
    geometry: Geometry,
    runs: u64,
    seed: u64,
    target: MaxTarget,
    swap: SwapClusters,
) -> MaxResult {
    let cfg = RunConfig::new(policy.clone(), geometry);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    let mut best = 0u32;
    let mut best_score = (0u32, 0u32);
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
        let mut prog = Program::decode(&input);
        swap.apply(&mut prog);
        let d = reclaim_demand(&prog, &cfg);
        let v = d.get(target);
        // Kept tables are 0 until a plan fails a later rmap allocation of
        // a walk: the rmap calls of any reclaim op give the search a slope
        // (an input is kept when it raises (value, calls)).
        let slope = match target {
            MaxTarget::KeptTables => d.max_calls.map_or(0, |c| c.0),
            MaxTarget::ReclaimTables => 0,
        };
        let score = (v, slope);
        if score > best_score {
            best_score = score;
            corpus.push(input);
            if v > best {
                best = v;
                best_prog = prog;
                found_at = run;
            }
        }
    }
    MaxResult {
        best,
        program: shrink_keeping(&best_prog, &cfg, best, target, swap),
        found_at,
        runs,
        kept: corpus.len(),
    }
}
