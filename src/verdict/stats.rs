//! Counts over a batch of verdicts.

use super::*;
use crate::prog::{Op, Program};
use std::time::Duration;

#[derive(Default)]
pub struct Stats {
    pub programs: usize,
    pub ops: usize,
    pub agreed: usize,
    pub diverged: usize,
    pub unsupported: usize,
    pub violations: usize,
    pub fed_fallbacks: usize,
    pub by_field: std::collections::BTreeMap<String, usize>,
    pub by_op: std::collections::BTreeMap<String, usize>,
}

impl Stats {
    pub fn add(&mut self, c: &Checked, p: &Program) {
        self.programs += 1;
        match &c.verdict {
            Verdict::Agree { thp_fail } => {
                self.agreed += 1;
                self.ops += p.ops.len();
                self.fed_fallbacks += !thp_fail.is_empty() as usize;
            }
            Verdict::Diverge { d, .. } => {
                self.diverged += 1;
                self.ops += p.ops.len();
                let f = d.field.split('@').next().unwrap_or(&d.field).to_string();
                *self.by_field.entry(f).or_default() += 1;
                let op = p.op_text(d.op);
                let kind = op.split(' ').next().unwrap_or("").to_string();
                let kind = match &p.ops[d.op].op {
                    Op::Madvise { advice, .. } => format!("madvise {}", advice.name()),
                    _ => kind,
                };
                *self.by_op.entry(kind).or_default() += 1;
            }
            Verdict::Unsupported(_) => self.unsupported += 1,
            Verdict::ModelViolation(_) => {
                self.violations += 1;
                self.ops += p.ops.len();
            }
        }
    }

    pub fn print(&self, t: Duration, skipped: &std::collections::BTreeMap<String, usize>) {
        let run = self.programs - self.unsupported;
        say!(
            "real: {} programs ({} run, {} unsupported), {} ops; agreed {} ({:.1}%), diverged {}, model violations {}; {} agreed only after feeding host THP fallbacks; {:.1}s",
            self.programs,
            run,
            self.unsupported,
            self.ops,
            self.agreed,
            if run == 0 { 100.0 } else { 100.0 * self.agreed as f64 / run as f64 },
            self.diverged,
            self.violations,
            self.fed_fallbacks,
            t.as_secs_f64()
        );
        for (f, n) in &self.by_field {
            say!("  divergences in field {f}: {n}");
        }
        for (o, n) in &self.by_op {
            say!("  divergences at op {o}: {n}");
        }
        for (why, n) in skipped {
            say!("  generator skipped {n} unsupported op(s): {why}");
        }
    }
}
