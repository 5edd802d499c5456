//! Counts over a batch of verdicts, for `real` and `vm run` alike.

use super::Verdict;
use crate::prog::Program;
use std::collections::BTreeMap;

#[derive(Default)]
pub struct Stats {
    pub programs: usize,
    /// Ops of every program counted.
    pub ops: usize,
    /// Ops of the programs that ran (not unsupported).
    pub ops_run: usize,
    pub agreed: usize,
    /// Agreed only after feeding the kernel's own THP failures to the model.
    pub fed: usize,
    /// Divergences by kind (the field, or hang / crash / ...).
    pub diverged: BTreeMap<String, usize>,
    /// Divergences by the kind of op they happened at (`madvise dontneed`, `mremap`, ...).
    pub diverged_at: BTreeMap<String, usize>,
    /// Unsupported programs by reason.
    pub unsupported: BTreeMap<String, usize>,
    /// Violations of the model under deposit (model errors).
    pub model_violations: usize,
    pub reproduced: usize,
    pub not_reproduced: usize,
}

impl Stats {
    pub fn add(&mut self, p: &Program, v: &Verdict) {
        self.programs += 1;
        self.ops += p.ops.len();
        if !matches!(v, Verdict::Unsupported { .. }) {
            self.ops_run += p.ops.len();
        }
        match v {
            Verdict::Agree { thp_fail } => {
                self.agreed += 1;
                self.fed += !thp_fail.is_empty() as usize;
            }
            Verdict::Diverge { kind, op, .. } => {
                *self.diverged.entry(kind.clone()).or_default() += 1;
                *self.diverged_at.entry(p.op_kind(*op)).or_default() += 1;
            }
            Verdict::Unsupported { why, .. } => {
                let key = why.split(':').next().unwrap_or(why).to_string();
                *self.unsupported.entry(key).or_default() += 1
            }
            Verdict::Finding { deposit: true, .. } => self.model_violations += 1,
            Verdict::Finding { reproduced, .. } => {
                if *reproduced {
                    self.reproduced += 1
                } else {
                    self.not_reproduced += 1
                }
            }
        }
    }

    /// A program that expected a finding whose model shows none in the
    /// kernel's setting: counted as not reproduced.
    pub fn add_not_reproduced(&mut self, p: &Program) {
        self.programs += 1;
        self.ops += p.ops.len();
        self.ops_run += p.ops.len();
        self.not_reproduced += 1;
    }

    pub fn diverged_total(&self) -> usize {
        self.diverged.values().sum()
    }

    pub fn unsupported_total(&self) -> usize {
        self.unsupported.values().sum()
    }

    /// Programs that ran.
    pub fn run(&self) -> usize {
        self.programs - self.unsupported_total()
    }

    /// Agreed programs in percent of those that ran.
    pub fn agreed_percent(&self) -> f64 {
        let run = self.run();
        if run == 0 {
            100.0
        } else {
            100.0 * self.agreed as f64 / run as f64
        }
    }
}
