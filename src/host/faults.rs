//! Our fault-plan interface (kernel/patches/): arm and disarm the plans of
//! /sys/kernel/debug/splitfuzz and read its call counters.

use super::{probe::*, sys::*};
use crate::prog::{Plan, Program, ARENA_SIZE};
use anyhow::{anyhow, Result};
/// Our kernel patch's fault-plan interface (kernel/patches/).
pub const SF_DEBUGFS: &str = "/sys/kernel/debug/splitfuzz";

// ------------------------------------------------------------------ kernel interfaces
pub(crate) fn sf_file(rel: &str) -> String {
    format!("{SF_DEBUGFS}/{rel}")
}

/// Calls counted so far by our kernel patch: (pte_alloc_one, THP, THP failed).
pub(crate) fn sf_counts() -> Result<(u32, u32, u32)> {
    let rd = |f: &str| -> Result<u32> {
        let p = sf_file(f);
        read_trim(&p)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("cannot read {p}"))
    };
    Ok((rd("pte_alloc/calls")?, rd("thp/calls")?, rd("thp/failed")?))
}

/// Allocations failed by plan so far (pte_alloc_one() and THP), 0 where
/// the interface cannot be read.
pub(crate) fn failed_calls() -> u64 {
    ["pte_alloc/failed", "thp/failed"]
        .iter()
        .filter_map(|f| read_trim(&sf_file(f)).and_then(|s| s.parse::<u64>().ok()))
        .sum()
}

/// A plan as our interface reads it: op-scoped plans are armed per op by
/// `Armed`, so at the start they are "never".
fn interface_plan(p: &Plan) -> String {
    if p.is_op_scoped() {
        "never".into()
    } else {
        p.to_string()
    }
}

/// Arm the fault plans (resets the counters), or disarm them (`None`).
pub fn sf_set_plans(prog: Option<&Program>) -> Result<()> {
    let (pte, thp) = match prog {
        Some(p) => (
            interface_plan(&p.faults.pte_alloc),
            interface_plan(&p.faults.thp),
        ),
        None => ("never".into(), "never".into()),
    };
    write_file(
        &sf_file("window"),
        &format!("{:x} {:x}", ARENA_BASE, ARENA_BASE + ARENA_SIZE),
    )
    .map_err(|e| anyhow!(e))?;
    write_file(&sf_file("pte_alloc/plan"), &pte).map_err(|e| anyhow!(e))?;
    write_file(&sf_file("thp/plan"), &thp).map_err(|e| anyhow!(e))?;
    // The stack of the first failure after each plan write, for the
    // evidence (a kernel whose interface predates the switch has no file).
    if std::path::Path::new(&sf_file("backtrace")).exists() {
        write_file(
            &sf_file("backtrace"),
            if prog.is_some() { "1" } else { "0" },
        )
        .map_err(|e| anyhow!(e))?;
    }
    Ok(())
}

/// A program's plans while it runs: op-scoped plans (`fail pte_alloc
/// op=I:nth=K`, `op=I:all`, `from-op=I`) are armed before their op and
/// disarmed after it. Arming resets the interface's counters, so the counts
/// of the calls before are kept here: `counts` is the program's total.
#[derive(Default)]
pub struct Armed {
    /// Calls counted before the last re-arming: pte_alloc, THP, THP failed.
    base: (u32, u32, u32),
    /// The kinds armed for the op running (to disarm after it).
    armed_now: (bool, bool),
}

impl Armed {
    /// Before op `i`: arm each op-scoped plan that covers it.
    pub fn before_op(&mut self, prog: &Program, i: usize) -> Result<()> {
        self.armed_now = (false, false);
        for (pte, plan) in [(true, &prog.faults.pte_alloc), (false, &prog.faults.thp)] {
            let Some((armed, sticky)) = plan.armed_in_op(i) else {
                continue;
            };
            // A `from-op` plan armed at an earlier op stays as it is.
            if sticky && Some(i) > plan.scoped_op() {
                continue;
            }
            self.rearm(pte, &armed.to_string())?;
            if !sticky {
                if pte {
                    self.armed_now.0 = true;
                } else {
                    self.armed_now.1 = true;
                }
            }
        }
        Ok(())
    }

    /// After op `i`: disarm the plans scoped to it.
    pub fn after_op(&mut self) -> Result<()> {
        if self.armed_now.0 {
            self.rearm(true, "never")?;
        }
        if self.armed_now.1 {
            self.rearm(false, "never")?;
        }
        self.armed_now = (false, false);
        Ok(())
    }

    /// Write one kind's plan, keeping the calls counted so far.
    fn rearm(&mut self, pte: bool, plan: &str) -> Result<()> {
        let (p, t, f) = sf_counts()?;
        let kind = if pte {
            self.base.0 += p;
            "pte_alloc"
        } else {
            self.base.1 += t;
            self.base.2 += f;
            "thp"
        };
        write_file(&sf_file(&format!("{kind}/plan")), plan).map_err(|e| anyhow!(e))
    }

    /// The calls counted since the program started: (pte_alloc_one, THP,
    /// THP failed).
    pub fn counts(&self) -> Result<(u32, u32, u32)> {
        let (p, t, f) = sf_counts()?;
        Ok((self.base.0 + p, self.base.1 + t, self.base.2 + f))
    }
}
