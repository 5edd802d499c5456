//! Comparison of two transcripts: the first op, mm and field where they differ.

use super::{line::*, model_run::*};
use crate::prog::{fmt_size, PAGE_SIZE};
// ------------------------------------------------------------------ comparison

#[derive(Clone, Debug)]
pub struct Divergence {
    pub op: usize,
    pub mm: Option<usize>,
    pub field: String,
    pub model: String,
    pub kernel: String,
}

impl Divergence {
    /// Where and how `prog`'s runs differ: "op N `OP` mm M field F: model X
    /// kernel Y" (no mm part for a per-op field).
    pub fn describe(&self, prog: &crate::prog::Program) -> String {
        format!(
            "op {} `{}`{} field {}: model {} kernel {}",
            self.op,
            prog.op_text(self.op),
            self.mm.map(|m| format!(" mm {m}")).unwrap_or_default(),
            self.field,
            self.model,
            self.kernel
        )
    }
}

pub fn fields(line: &str) -> Vec<(&str, &str)> {
    let w: Vec<&str> = line.split(' ').collect();
    w.chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| (c[0], c[1]))
        .collect()
}

pub fn expand_states(rle: &str) -> Vec<char> {
    let mut v = Vec::new();
    let mut chars = rle.chars().peekable();
    while let Some(c) = chars.next() {
        let mut n = 0usize;
        while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
            n = n * 10 + d as usize;
            chars.next();
        }
        v.extend(std::iter::repeat_n(c, n));
    }
    v
}

pub fn expand_data(rle: &str) -> Vec<String> {
    let mut v = Vec::new();
    for run in rle.split(',') {
        if let Some((t, n)) = run.rsplit_once('*') {
            let n: usize = n.parse().unwrap_or(0);
            v.extend(std::iter::repeat_n(t.to_string(), n));
        }
    }
    v
}

pub(crate) fn first_diff<T: PartialEq + std::fmt::Display>(
    a: &[T],
    b: &[T],
) -> Option<(usize, String, String)> {
    (0..a.len().max(b.len())).find_map(|i| {
        let x = a.get(i).map(|x| x.to_string()).unwrap_or_default();
        let y = b.get(i).map(|x| x.to_string()).unwrap_or_default();
        (a.get(i) != b.get(i)).then_some((i, x, y))
    })
}

/// Compare one observation line pair; the first differing field.
pub(crate) fn compare_line(model: &str, kernel: &str) -> Option<(String, String, String)> {
    let fm = fields(model);
    let fk = fields(kernel);
    for (i, (k, mv)) in fm.iter().enumerate() {
        let kv = fk.get(i).map(|x| x.1).unwrap_or("");
        if fk.get(i).map(|x| x.0) != Some(k) {
            return Some(("line".into(), model.into(), kernel.into()));
        }
        if mv == &kv {
            continue;
        }
        return Some(match *k {
            "pages" => {
                let (a, b) = (expand_states(mv), expand_states(kv));
                let (pg, x, y) = first_diff(&a, &b).unwrap_or((0, mv.to_string(), kv.to_string()));
                let count = |v: &[char], c: char| v.iter().filter(|x| **x == c).count();
                let summary = |v: &[char]| {
                    format!(
                        "{x} (H {} Z {} p {} z {})",
                        count(v, 'H'),
                        count(v, 'Z'),
                        count(v, 'p'),
                        count(v, 'z')
                    )
                };
                let _ = (&x, &y);
                (
                    format!("pages@{}", fmt_size(pg as u64 * PAGE_SIZE)),
                    summary(&a).replacen(
                        &x,
                        &a.get(pg).map(|c| c.to_string()).unwrap_or_default(),
                        1,
                    ),
                    summary(&b).replacen(
                        &y,
                        &b.get(pg).map(|c| c.to_string()).unwrap_or_default(),
                        1,
                    ),
                )
            }
            "data" => {
                let (a, b) = (expand_data(mv), expand_data(kv));
                let (pg, x, y) = first_diff(&a, &b).unwrap_or((0, mv.to_string(), kv.to_string()));
                (format!("data@{}", fmt_size(pg as u64 * PAGE_SIZE)), x, y)
            }
            _ => (k.to_string(), mv.to_string(), kv.to_string()),
        });
    }
    None
}

pub fn first_divergence(model: &Transcript, kernel: &Transcript) -> Option<Divergence> {
    first_divergence_upto(model, kernel, usize::MAX)
}

/// The first difference in ops `0..=last`: result, allocation counts (where
/// both sides count them), then every live mm's observation line.
pub fn first_divergence_upto(
    model: &Transcript,
    kernel: &Transcript,
    last: usize,
) -> Option<Divergence> {
    for i in 0..model.results.len().min(last.saturating_add(1)) {
        let (mr, kr) = (&model.results[i], &kernel.results[i]);
        if mr != kr {
            return Some(Divergence {
                op: i,
                mm: None,
                field: "res".into(),
                model: mr.clone().unwrap_or_else(|| "not run".into()),
                kernel: kr.clone().unwrap_or_else(|| "not run".into()),
            });
        }
        if let (Some(Some(ma)), Some(Some(ka))) = (model.allocs.get(i), kernel.allocs.get(i)) {
            if ma != ka {
                return Some(Divergence {
                    op: i,
                    mm: None,
                    field: "alloc".into(),
                    model: format!("pte_alloc {} thp {}", ma.0, ma.1),
                    kernel: format!("pte_alloc {} thp {}", ka.0, ka.1),
                });
            }
        }
        let (mo, ko) = (&model.obs[i], &kernel.obs[i]);
        for j in 0..mo.len().max(ko.len()) {
            let (a, b) = (mo.get(j), ko.get(j));
            let (a, b) = match (a, b) {
                (Some(a), Some(b)) => (a, b),
                _ => {
                    return Some(Divergence {
                        op: i,
                        mm: None,
                        field: "live-mms".into(),
                        model: mo.len().to_string(),
                        kernel: ko.len().to_string(),
                    })
                }
            };
            if let Some((field, m, k)) = compare_line(a, b) {
                let mm = fields(a).first().and_then(|x| x.1.parse().ok());
                return Some(Divergence {
                    op: i,
                    mm,
                    field,
                    model: m,
                    kernel: k,
                });
            }
        }
    }
    None
}

/// The first divergence of a model run from a kernel transcript, over the ops
/// the model completed (up to its violation, if any).
pub fn model_divergence(mr: &ModelRun, kernel: &Transcript) -> Option<Divergence> {
    let last = mr.violation_at.map(|v| v.0).unwrap_or(usize::MAX);
    first_divergence_upto(&mr.t, kernel, last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prog::Program;

    #[test]
    fn a_divergence_names_the_op_the_mm_and_the_field() {
        let p = Program::parse("mmap 0 2M thp\ntouch 0 2M write\n").unwrap();
        let mut d = Divergence {
            op: 1,
            mm: Some(0),
            field: "anon".into(),
            model: "2048".into(),
            kernel: "0".into(),
        };
        assert_eq!(
            d.describe(&p),
            format!("op 1 `{}` mm 0 field anon: model 2048 kernel 0", p.ops[1])
        );
        (d.op, d.mm) = (5, None);
        assert_eq!(
            d.describe(&p),
            "op 5 `(teardown)` field anon: model 2048 kernel 0"
        );
    }
}
