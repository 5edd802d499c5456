//! The engines' dictionaries, made from the code (never copied by hand):
//!
//! * `fuzz/dict/bytes.dict`: the program byte format (`prog/bytes.rs`), for
//!   the fuzz targets' raw input: each op kind's code byte, each op as the
//!   encoder writes it on whole PMDs, and the fault-plan headers;
//! * `fuzz/dict/text.dict`: the text format's keywords (`prog/text.rs`), as
//!   the printer writes them (op names, advice names, plan kinds, `mm=`, ...).
//!
//! Both are made by decoding byte strings that cover every op code and
//! printing or re-encoding what they decode to, so a change of either format
//! changes them; the test below fails when the files in `fuzz/dict/` are not
//! what the code makes now (it writes the current ones to
//! `target/splitfuzz-dict/` to copy over). libFuzzer takes them with `-dict=`,
//! AFL++ with `-x`, honggfuzz with `-w`.

use crate::base::{GRID, PMD_SIZE};
use crate::prog::{encode, Advice, FaultPlan, Plan, Program};
use std::collections::BTreeSet;
use std::fmt::Write as _;

/// Header bytes of a program with no fault plan and no flags (`never`, `never`, 0).
const NO_PLAN: [u8; 5] = [3, 0, 3, 0, 0];

/// The op code bytes the decoder knows (`kind % N` in `prog/bytes.rs`): every
/// byte value below the first repeat of the whole op table.
fn op_codes() -> Vec<(u8, Program)> {
    let mut out = Vec::new();
    for k in 0..=255u8 {
        // kind, mm 0, start 0, length one PMD (8 grid steps), then flag/arg bytes
        let mut b = NO_PLAN.to_vec();
        b.extend([k, 0, 0, (PMD_SIZE / GRID - 1) as u8, 1, 0]);
        out.push((k, Program::decode(&b)));
    }
    // The table repeats with the decoder's modulus: keep one period.
    let period = (1..out.len())
        .find(|&n| {
            out.iter()
                .zip(out.iter().skip(n))
                .all(|(a, b)| a.1.ops == b.1.ops)
        })
        .unwrap_or(out.len());
    out.truncate(period);
    out
}

/// The first word of an op's text (`uffd-move 0 2M 2M` → `uffd-move`).
fn op_name(text: &str) -> String {
    text.split_whitespace().next().unwrap_or("").to_string()
}

fn escape(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\x{b:02X}")).collect()
}

/// `fuzz/dict/bytes.dict`: the byte format's op codes, whole ops and plans.
pub fn bytes_dict() -> String {
    let mut s = String::from(
        "# The program byte format (src/prog/bytes.rs): made by src/engines/dict.rs, do not edit.\n\
         # op_<name>: the op's code byte, then mm 0; op_<name>_pmd: the whole op on the first PMD;\n\
         # plan_*: the 5-byte header (pte_alloc plan, thp plan, flags).\n",
    );
    let mut names = BTreeSet::new();
    for (k, p) in op_codes() {
        let Some(line) = p.ops.first() else { continue };
        let name = op_name(&line.to_string()).replace('-', "_");
        if !names.insert(name.clone()) {
            continue; // the first code of an op that has several
        }
        let _ = writeln!(s, "op_{name}=\"{}\"", escape(&[k, 0]));
        let one = Program {
            ops: vec![line.clone()],
            ..Program::decode(&NO_PLAN)
        };
        if let Ok(b) = encode(&one) {
            let _ = writeln!(s, "op_{name}_pmd=\"{}\"", escape(&b[NO_PLAN.len()..]));
        }
    }
    let n = || Plan::Never;
    let plans = [
        ("none", n(), n(), n()),
        ("pte_nth1", Plan::Nth(1), n(), n()),
        ("pte_nth2", Plan::Nth(2), n(), n()),
        ("pte_from1", Plan::From(1), n(), n()),
        ("pte_from2", Plan::From(2), n(), n()),
        ("thp_nth1", n(), Plan::Nth(1), n()),
        ("thp_from1", n(), Plan::From(1), n()),
        ("swap_cluster_from1", n(), n(), Plan::From(1)),
    ];
    for (name, pte_alloc, thp, swap_cluster) in plans {
        let p = Program {
            faults: FaultPlan {
                pte_alloc,
                thp,
                swap_cluster,
            },
            ..Program::default()
        };
        if let Ok(b) = encode(&p) {
            let _ = writeln!(s, "plan_{name}=\"{}\"", escape(&b));
        }
    }
    s
}

/// `fuzz/dict/text.dict`: the keywords the text printer writes.
pub fn text_dict() -> String {
    let mut words = BTreeSet::new();
    let mut progs: Vec<Program> = op_codes().into_iter().map(|(_, p)| p).collect();
    // Every advice and value of a flag byte (the byte after the range), another process.
    for a in 0..Advice::ALL.len() as u8 {
        for (k, _) in op_codes() {
            progs.push(Program::decode(&[0u8, 1, 1, 0, 1, k, 4, 0, 7, a, a]));
        }
    }
    for plan in [Plan::Nth(1), Plan::From(1), Plan::At(vec![1, 2])] {
        progs.push(Program {
            faults: FaultPlan {
                pte_alloc: plan.clone(),
                thp: plan.clone(),
                swap_cluster: plan,
            },
            ..Program::default()
        });
    }
    // The lines a program file has beyond what bytes decode to.
    progs.push(Program {
        policy: Some("deposit".into()),
        expect: Some(crate::prog::Expect::Ok),
        ..Program::default()
    });
    for p in &progs {
        for line in p.to_text().lines() {
            for w in line.split_whitespace() {
                // Keywords, not numbers or sizes; `nth=3` → `nth=`.
                if w.starts_with(|c: char| c.is_ascii_alphabetic()) {
                    let w = match w.find('=') {
                        Some(i) => &w[..=i],
                        None => w,
                    };
                    words.insert(w.to_string());
                }
            }
        }
    }
    let mut s = String::from(
        "# The program text format's keywords (src/prog/text.rs): made by src/engines/dict.rs, do not edit.\n",
    );
    for w in words {
        let _ = writeln!(s, "\"{w}\"");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn every_op_kind_has_a_code_and_the_dictionaries_are_current() {
        let names: BTreeSet<String> = op_codes()
            .iter()
            .filter_map(|(_, p)| p.ops.first().map(|l| op_name(&l.to_string())))
            .collect();
        for want in ["mmap", "uffd-move", "pagemap-scan", "fork", "drop-caches"] {
            assert!(names.contains(want), "{want} not in {names:?}");
        }
        let text = text_dict();
        for want in [
            "\"fail\"",
            "\"pte_alloc\"",
            "\"nth=\"",
            "\"mm=\"",
            "\"guard-install\"",
        ] {
            assert!(text.contains(want), "{want} missing:\n{text}");
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = root.join("target/splitfuzz-dict");
        let mut stale = Vec::new();
        for (name, now) in [("bytes.dict", bytes_dict()), ("text.dict", text_dict())] {
            let saved =
                std::fs::read_to_string(root.join("fuzz/dict").join(name)).unwrap_or_default();
            if saved != now {
                std::fs::create_dir_all(&out).unwrap();
                std::fs::write(out.join(name), &now).unwrap();
                stale.push(name);
            }
        }
        assert!(
            stale.is_empty(),
            "fuzz/dict/{stale:?} differ from what the code makes now: cp target/splitfuzz-dict/*.dict fuzz/dict/"
        );
    }
}
