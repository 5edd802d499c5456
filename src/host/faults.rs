//! Our fault-plan interface (kernel/patches/): arm and disarm the plans of
//! /sys/kernel/debug/splitfuzz and read its call counters.

use super::{probe::*, sys::*};
use crate::prog::{Program, ARENA_SIZE};
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

/// Arm the fault plans (resets the counters), or disarm them (`None`).
pub fn sf_set_plans(prog: Option<&Program>) -> Result<()> {
    let (pte, thp) = match prog {
        Some(p) => (p.faults.pte_alloc.to_string(), p.faults.thp.to_string()),
        None => ("never".into(), "never".into()),
    };
    write_file(
        &sf_file("window"),
        &format!("{:x} {:x}", ARENA_BASE, ARENA_BASE + ARENA_SIZE),
    )
    .map_err(|e| anyhow!(e))?;
    write_file(&sf_file("pte_alloc/plan"), &pte).map_err(|e| anyhow!(e))?;
    write_file(&sf_file("thp/plan"), &thp).map_err(|e| anyhow!(e))?;
    Ok(())
}
