//! Kernel PCs to functions, through the kernel's System.map (`vm build` keeps
//! it beside the bzImage; the guest boots with `nokaslr`, so a PC is the
//! address System.map gives), and `vm fuzz`'s coverage by kernel function.

use crate::model::coverage::{self, Branch};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;

/// Text symbols, sorted by address (low 32 bits; the kernel's text is below 4 GiB
/// of 0xffffffff00000000).
pub struct SymbolMap {
    syms: Vec<(u32, String)>,
}

impl SymbolMap {
    /// Parse System.map's `ADDRESS TYPE NAME` lines (text symbols: t, T, w, W).
    pub fn parse(text: &str) -> SymbolMap {
        let mut syms: Vec<(u32, String)> = text
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let a = u64::from_str_radix(w.next()?, 16).ok()?;
                let t = w.next()?;
                let n = w.next()?;
                (matches!(t, "t" | "T" | "w" | "W") && a >> 32 == 0xffff_ffff)
                    .then(|| (a as u32, n.to_string()))
            })
            .collect();
        syms.sort();
        SymbolMap { syms }
    }

    /// The System.map beside a bzImage, if there is one.
    pub fn beside(bzimage: &Path) -> Option<SymbolMap> {
        let p = bzimage.parent()?.join("System.map");
        std::fs::read_to_string(p).ok().map(|t| Self::parse(&t))
    }

    /// Whether the kernel has a text symbol of this name (a static function
    /// the compiler inlined everywhere has none: its PCs are its callers').
    pub fn has(&self, name: &str) -> bool {
        self.syms.iter().any(|s| s.1 == name)
    }

    /// The function holding `pc`.
    pub fn function(&self, pc: u32) -> Option<&str> {
        let i = self.syms.partition_point(|s| s.0 <= pc);
        (i > 0).then(|| self.syms[i - 1].1.as_str())
    }
}

/// One kernel function's coverage in a campaign.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FunctionCov {
    pub name: String,
    /// Distinct PCs reached in any op, and in ops with an allocation failing.
    pub pcs: usize,
    pub fail_pcs: usize,
    /// A function the model has (the split's callers and error paths it
    /// models, by the kernel's names).
    pub modelled: bool,
    /// It has a symbol in System.map (else inlined, or not in this kernel).
    pub symbol: bool,
}

/// Coverage by function: every function reached, and every function the
/// model names (reached or not), sorted by name.
pub fn by_function(map: &SymbolMap, pcs: &HashSet<u32>, fail: &HashSet<u32>) -> Vec<FunctionCov> {
    let modelled: BTreeSet<&str> = coverage::NAMES
        .iter()
        .map(|n| coverage::function_of(n))
        .collect();
    let mut m: BTreeMap<String, FunctionCov> = BTreeMap::new();
    for f in &modelled {
        m.insert(
            f.to_string(),
            FunctionCov {
                name: f.to_string(),
                modelled: true,
                symbol: map.has(f),
                ..Default::default()
            },
        );
    }
    for (set, failing) in [(pcs, false), (fail, true)] {
        for pc in set {
            let Some(f) = map.function(*pc) else { continue };
            let e = m.entry(f.to_string()).or_insert_with(|| FunctionCov {
                name: f.to_string(),
                symbol: true,
                ..Default::default()
            });
            if failing {
                e.fail_pcs += 1;
            } else {
                e.pcs += 1;
            }
        }
    }
    m.into_values().collect()
}

/// The table as text: the model's functions first (reached with a failure,
/// reached, never), then the other functions reached.
pub fn table(fs: &[FunctionCov]) -> String {
    let mut s = String::new();
    s.push_str("# kernel coverage by function (PCs reached in any op / in ops with an allocation failing)\n");
    s.push_str("# functions the model has (split callers and their error paths, kernel names):\n");
    let mut modelled: Vec<&FunctionCov> = fs.iter().filter(|f| f.modelled).collect();
    modelled.sort_by_key(|f| (f.fail_pcs == 0, f.pcs == 0, f.name.clone()));
    for f in &modelled {
        let how = if f.fail_pcs > 0 {
            "reached with an allocation failing"
        } else if f.pcs > 0 {
            "reached, never with an allocation failing"
        } else if !f.symbol {
            "no symbol: inlined into its callers, or not in this kernel"
        } else {
            "never reached"
        };
        s.push_str(&format!(
            "{:<40} {:>5} {:>5}  {how}\n",
            f.name, f.pcs, f.fail_pcs
        ));
    }
    s.push_str("# other functions reached:\n");
    let mut other: Vec<&FunctionCov> = fs.iter().filter(|f| !f.modelled).collect();
    other.sort_by_key(|f| {
        (
            std::cmp::Reverse(f.fail_pcs),
            std::cmp::Reverse(f.pcs),
            f.name.clone(),
        )
    });
    for f in other {
        s.push_str(&format!("{:<40} {:>5} {:>5}\n", f.name, f.pcs, f.fail_pcs));
    }
    s
}

/// The coverage as the campaign report's branches (`fuzz::report`): one
/// branch per function, its hits the PCs reached; `failing` takes those
/// reached with an allocation failing.
pub fn branches(fs: &[FunctionCov], failing: bool) -> Vec<Branch> {
    fs.iter()
        .map(|f| Branch {
            name: format!("{}:pcs", f.name),
            hits: if failing { f.fail_pcs } else { f.pcs } as u64,
            shares_slot_with: Vec::new(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcs_map_to_their_functions() {
        let map = SymbolMap::parse(
            "ffffffff81001000 T zap_pmd_range\nffffffff81001400 t helper\nffffffff82000000 D some_data\nffffffff81002000 T change_pmd_range\n",
        );
        assert_eq!(map.function(0x8100_1000), Some("zap_pmd_range"));
        assert_eq!(map.function(0x8100_13ff), Some("zap_pmd_range"));
        assert_eq!(map.function(0x8100_1404), Some("helper"));
        assert_eq!(map.function(0x8100_2010), Some("change_pmd_range"));
        assert_eq!(map.function(0x8000_0000), None);
        let pcs: HashSet<u32> = [0x8100_1004, 0x8100_1008, 0x8100_1404].into();
        let fail: HashSet<u32> = [0x8100_1004].into();
        let fs = by_function(&map, &pcs, &fail);
        let z = fs.iter().find(|f| f.name == "zap_pmd_range").unwrap();
        assert_eq!((z.pcs, z.fail_pcs), (2, 1));
        // A function the model has but the campaign never reached is listed.
        let c = fs.iter().find(|f| f.name == "change_pmd_range").unwrap();
        assert!(c.modelled && c.pcs == 0);
        assert!(table(&fs).contains("never reached"));
        // One the kernel does not have as a symbol (inlined) says so.
        let t = table(&fs);
        let line = t.lines().find(|l| l.starts_with("copy_huge_pmd ")).unwrap();
        assert!(line.contains("no symbol"), "{line}");
    }
}
