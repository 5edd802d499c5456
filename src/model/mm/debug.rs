//! A readable dump of the model's state (`splitfuzz repro`), as the kernel's
//! mm/debug.c dumps an mm.

use super::*;

/// A readable dump of the whole state (for `repro`).
pub fn dump(k: &Kernel) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let p = k.ptrs();
    for (mi, mm) in k.mms.iter().enumerate() {
        if !mm.alive {
            let _ = writeln!(s, "  mm {mi}: exited");
            continue;
        }
        let _ = writeln!(
            s,
            "  mm {mi}: nr_ptes {} MM_ANONPAGES {} MM_SWAPENTS {} huge_zero {} deposit [{}, {}] pins {}",
            mm.nr_ptes,
            mm.rss_anon,
            mm.rss_swap,
            mm.huge_zero,
            mm.deposit[0].len(),
            mm.deposit[1].len(),
            mm.pins.len()
        );
        for v in &mm.vmas {
            let _ = writeln!(
                s,
                "    vma [{:#x}, {:#x}) {}{} anon_vma {}",
                k.geom.addr_of(v.start),
                k.geom.addr_of(v.end),
                if v.write { "rw" } else { "r-" },
                if v.thp { " thp" } else { "" },
                v.anon_vma
            );
        }
        for (slot, pmd) in mm.pmds.iter().enumerate() {
            let a = k.geom.addr_of(slot * p);
            match *pmd {
                Pmd::None => {}
                Pmd::Table(t) => {
                    let ptes = &k.tables[t as usize].ptes;
                    let count = |f: fn(&Pte) -> bool| ptes.iter().filter(|x| f(x)).count();
                    let _ = writeln!(
                        s,
                        "    pmd {a:#x}: table {t} (present {}, zero {}, swap {}, migration {}, none {})",
                        count(|x| matches!(x, Pte::Present { .. })),
                        count(|x| matches!(x, Pte::Zero)),
                        count(|x| matches!(x, Pte::Swap(_))),
                        count(|x| matches!(x, Pte::Migration { .. })),
                        count(|x| matches!(x, Pte::None)),
                    );
                }
                Pmd::Huge {
                    folio,
                    write,
                    dirty,
                } => {
                    let f = &k.folios[folio as usize];
                    let _ = writeln!(
                        s,
                        "    pmd {a:#x}: huge folio {folio} {}{} (ref {} entire {} large {} pins {} excl {})",
                        if write { "rw" } else { "ro" },
                        if dirty { " dirty" } else { "" },
                        f.refcount,
                        f.entire_mapcount,
                        f.large_mapcount,
                        f.pincount,
                        f.anon_exclusive[0]
                    );
                }
                Pmd::HugeZero => {
                    let _ = writeln!(s, "    pmd {a:#x}: huge zero");
                }
                Pmd::Migration { folio, .. } => {
                    let _ = writeln!(s, "    pmd {a:#x}: migration entry for folio {folio}");
                }
                Pmd::Swap { first } => {
                    let _ = writeln!(
                        s,
                        "    pmd {a:#x}: PMD swap entry, slots {first}..{}",
                        first as usize + p
                    );
                }
            }
        }
    }
    let _ = writeln!(
        s,
        "  tables allocated {} live {}; folios {} live {}; huge_zero_refcount {}; THP_SPLIT_PMD {} THP_SPLIT_PMD_FAILED {}",
        k.tables.len(),
        k.tables.iter().filter(|t| t.state != TableState::Freed).count(),
        k.folios.len(),
        k.folios.iter().filter(|f| !f.freed).count(),
        k.huge_zero_refcount,
        k.stats.thp_split_pmd,
        k.stats.thp_split_pmd_failed
    );
    s
}
