//! Which override acts on a violation. A violation names the function where
//! the harm appears (e.g. `copy_pmd_range`); the knob a user turns is a split
//! caller's strategy (e.g. `copy_huge_pmd=error`). This tries every single
//! override on the program and reports the ones that remove the violation or
//! change its signature. Runs are cheap (a minimized program has a few ops), and
//! the answer is exact for the program at hand.

use crate::model::policy::{SplitCaller, Strategy};
use crate::prog::Program;
use crate::run::{run, RunConfig};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FixHint {
    /// Overrides (`caller=strategy`) under which the program no longer violates.
    pub removes: Vec<String>,
    /// Overrides under which it violates differently: (override, new signature).
    pub changes: Vec<(String, String)>,
}

impl FixHint {
    /// One line: the first overrides that remove the violation, else the ones
    /// that change it.
    pub fn summary(&self) -> String {
        if !self.removes.is_empty() {
            let mut s = format!("--override {} removes it", self.removes[0]);
            if self.removes.len() > 1 {
                s.push_str(&format!(" (also: {})", self.removes[1..].join(", ")));
            }
            s
        } else if let Some((o, sig)) = self.changes.first() {
            format!("no single override removes it; --override {o} turns it into {sig}")
        } else {
            "no single override changes it (not a split-failure handling bug)".into()
        }
    }

    /// The override to suggest first, if any removes the violation.
    pub fn best(&self) -> Option<&str> {
        self.removes.first().map(|s| s.as_str())
    }
}

/// Try every single caller=strategy override not already in force. The
/// caller the violation's function stands for (`SplitCaller::for_finding`)
/// comes first, then `error` for every other caller, then their other
/// strategies: so the suggestion listed first is the direct fix when there is
/// one.
pub fn hint(prog: &Program, cfg: &RunConfig) -> FixHint {
    let mut h = FixHint::default();
    let Some(v) = run(prog, cfg).violation else {
        return h;
    };
    let sig = v.signature();
    if cfg.policy.deposit {
        // Split never fails under deposit: no caller strategy is consulted.
        return h;
    }
    const ORDER: [Strategy; 4] = [
        Strategy::Error,
        Strategy::Retry,
        Strategy::Skip,
        Strategy::Proceed,
    ];
    let own = SplitCaller::for_finding(&v.function);
    let mut candidates: Vec<(SplitCaller, Strategy)> = Vec::new();
    if let Some(c) = own {
        candidates.extend(ORDER.map(|s| (c, s)));
    }
    for s in ORDER {
        for c in SplitCaller::ALL {
            if Some(c) != own {
                candidates.push((c, s));
            }
        }
    }
    for (c, s) in candidates {
        if cfg.policy.strategy(c) == s {
            continue;
        }
        let mut p = cfg.policy.clone();
        p.set(c, s);
        let out = run(prog, &RunConfig::new(p, cfg.geometry));
        let spec = format!("{}={}", c.name(), s.name());
        match out.signature() {
            None => h.removes.push(spec),
            Some(new) if new != sig => h.changes.push((spec, new)),
            Some(_) => {}
        }
    }
    h
}
