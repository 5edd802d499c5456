//! Model coverage by name. The model records a branch with the `cov!` macro
//! (src/mm/mod.rs), which hashes the branch's name into a bitmap of
//! `COV_BITS` counters. build.rs collects every name used with the macro, so a
//! bitmap can be read back as a table: kernel function, branch, executions that
//! reached it, and the branches never reached.

use crate::model::mm::{fnv, COV_BITS};
use serde::{Deserialize, Serialize};

/// Every coverage point of the model, sorted (collected by build.rs).
pub const NAMES: &[&str] = include!(concat!(env!("OUT_DIR"), "/cov_names.rs"));

/// The bitmap slot of a coverage point.
pub fn slot(name: &str) -> usize {
    fnv(name) as usize % COV_BITS
}

/// The kernel function a coverage point belongs to: the part before the first
/// `:` (`zap_pmd_range:skip` → `zap_pmd_range`).
pub fn function_of(name: &str) -> &str {
    name.split(':').next().unwrap_or(name)
}

/// The names that share one bitmap slot (hash collisions); empty when every
/// name has a slot of its own.
pub fn collisions() -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    for (i, a) in NAMES.iter().enumerate() {
        for b in &NAMES[i + 1..] {
            if slot(a) == slot(b) {
                out.push((*a, *b));
            }
        }
    }
    out
}

/// Slots that are hit but belong to no known name (should be none: a test
/// checks it, so a coverage point build.rs failed to see is caught).
pub fn unnamed_slots(hits: &[u64]) -> Vec<usize> {
    let known: std::collections::BTreeSet<usize> = NAMES.iter().map(|n| slot(n)).collect();
    hits.iter()
        .enumerate()
        .filter(|(i, h)| **h > 0 && !known.contains(i))
        .map(|(i, _)| i)
        .collect()
}

/// One coverage point and how many executions reached it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Branch {
    pub name: String,
    pub hits: u64,
    /// Other names hashed to the same bitmap slot: the hits are those of the
    /// slot, so of any of them (the table says so instead of guessing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shares_slot_with: Vec<String>,
}

/// The named coverage of a campaign, in `NAMES` order.
pub fn table(hits: &[u64]) -> Vec<Branch> {
    NAMES
        .iter()
        .map(|n| Branch {
            name: n.to_string(),
            hits: hits.get(slot(n)).copied().unwrap_or(0),
            shares_slot_with: NAMES
                .iter()
                .filter(|m| *m != n && slot(m) == slot(n))
                .map(|m| m.to_string())
                .collect(),
        })
        .collect()
}

/// Per kernel function, sorted by name: (function, branches reached, branches,
/// sum of its branches' hits).
pub fn by_function(branches: &[Branch]) -> Vec<(String, usize, usize, u64)> {
    let mut m: std::collections::BTreeMap<&str, (usize, usize, u64)> = Default::default();
    for b in branches {
        let e = m.entry(function_of(&b.name)).or_default();
        e.0 += (b.hits > 0) as usize;
        e.1 += 1;
        e.2 += b.hits;
    }
    m.into_iter()
        .map(|(f, (r, n, h))| (f.to_string(), r, n, h))
        .collect()
}

/// Add one execution's bitmap to per-slot execution counts.
pub fn accumulate(hits: &mut [u64], cov: &[u8]) {
    for (h, c) in hits.iter_mut().zip(cov) {
        *h += (*c != 0) as u64;
    }
}
