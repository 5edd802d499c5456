//! The reference model: what every page of every process must hold, by the
//! system calls' semantics alone (no page tables, no policy).
//! `Reference::expected` gives an op's effect; `observe` reads the model's
//! state in the same terms; `check_reference` compares them (no-silent-skip).

use super::attribute;
use crate::base::{Geometry, Invariant, Violation};
use crate::model::mm::Kernel;
use crate::prog::{Advice, Op, OpLine};

/// What one page of one process must look like, by the syscall semantics alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RefPage {
    pub mapped: bool,
    pub write: bool,
    pub val: u64,
    /// MADV_FREE'd: may also read as zero until the next write.
    pub maybe_zero: bool,
    /// The value cannot be predicted (a write that uffd-wp may or may not have
    /// blocked); cleared by the next definite write or zap.
    pub any_val: bool,
    /// uffd-wp protected: 0 no, 1 yes, 2 either (the reference cannot tell a
    /// populated zero page from an empty entry, and only populated ones get it).
    pub wp: u8,
    /// A guard marker (MADV_GUARD_INSTALL): access is SIGSEGV.
    pub guard: bool,
}

impl RefPage {
    /// Does the observed page `a` meet this expectation?
    pub fn accepts(&self, a: &RefPage) -> bool {
        if self.mapped != a.mapped {
            return false;
        }
        if !self.mapped {
            return true;
        }
        let wp_ok = self.wp == 2
            || (self.wp == 1) == (a.wp == 1)
            || (self.maybe_zero && a.val == 0 && a.wp == 0);
        let val_ok = self.any_val || a.val == self.val || (self.maybe_zero && a.val == 0);
        self.write == a.write && val_ok && wp_ok && self.guard == a.guard
    }
}

/// The flat reference model: pages of each process, no page tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    pub mms: Vec<Option<Vec<RefPage>>>,
}

/// The page range an op works on (for mremap: the old range).
pub fn op_pages(op: &Op, g: Geometry) -> (usize, usize) {
    match *op {
        Op::Mmap { start, len, .. }
        | Op::Munmap { start, len }
        | Op::Mprotect { start, len, .. }
        | Op::Touch { start, len, .. }
        | Op::Madvise { start, len, .. }
        | Op::Pin { start, len }
        | Op::Unpin { start, len }
        | Op::UffdWp { start, len, .. }
        | Op::UffdRegister { start, len }
        | Op::UffdUnregister { start, len }
        | Op::PagemapScan { start, len }
        | Op::Mlock { start, len }
        | Op::Munlock { start, len }
        | Op::Mbind { start, len, .. } => g.pages(start, len),
        Op::Mremap { old, len, .. } => g.pages(old, len),
        Op::UffdMove { src, len, .. } => g.pages(src, len),
        Op::Reclaim { addr } | Op::Migrate { addr } => {
            let p = g.page_of(addr, false);
            (p, p + 1)
        }
        Op::Fork | Op::Exit | Op::DropCaches => (0, 0),
    }
}

/// The value a write by op `op` stores in `page`.
pub fn tag(op: usize, page: usize) -> u64 {
    ((op as u64 + 1) << 32) | (page as u64 + 1)
}

pub struct Expected {
    pub success: Reference,
    /// Another acceptable end state when the op fails (mremap: target unmapped).
    pub alt: Option<Reference>,
}

impl Reference {
    pub fn new(pages: usize) -> Reference {
        Reference {
            mms: vec![Some(vec![RefPage::default(); pages])],
        }
    }

    /// The op's effect on success.
    pub fn expected(&self, line: &OpLine, op_index: usize, geom: Geometry) -> Expected {
        let (lo, hi) = op_pages(&line.op, geom);
        let mut s = self.clone();
        let mm = line.mm;
        let Some(Some(pages)) = s.mms.get_mut(mm) else {
            return Expected {
                success: s,
                alt: None,
            };
        };
        let op = &line.op;
        // The pages of `mm` in the other acceptable end state, if any.
        let alt_pages = match op {
            Op::Mmap { .. } | Op::Munmap { .. } | Op::Mprotect { .. } | Op::Mremap { .. } => {
                mapping(pages, op, lo, hi, geom)
            }
            Op::Madvise { advice, .. } => madvise(pages, *advice, lo, hi),
            Op::Touch { .. } | Op::Pin { .. } | Op::Mlock { .. } => {
                fault(pages, op, lo, hi, op_index);
                None
            }
            Op::Fork | Op::Exit => {
                process(&mut s, mm, op);
                None
            }
            Op::UffdWp { .. }
            | Op::UffdUnregister { .. }
            | Op::UffdMove { .. }
            | Op::PagemapScan { .. } => {
                uffd(pages, op, lo, hi, geom);
                None
            }
            Op::Unpin { .. }
            | Op::Reclaim { .. }
            | Op::Migrate { .. }
            | Op::UffdRegister { .. }
            | Op::Munlock { .. }
            | Op::Mbind { .. }
            | Op::DropCaches => None,
        };
        let alt = alt_pages.map(|a| {
            let mut r = self.clone();
            r.mms[mm] = Some(a);
            r
        });
        Expected { success: s, alt }
    }
}

/// mmap, munmap, mprotect, mremap on the pages `lo..hi` of one process.
/// Returns the pages of the other acceptable end state (mremap's failure).
fn mapping(
    pages: &mut [RefPage],
    op: &Op,
    lo: usize,
    hi: usize,
    geom: Geometry,
) -> Option<Vec<RefPage>> {
    match op {
        Op::Mmap { .. } => pages[lo..hi].iter_mut().for_each(|p| {
            *p = RefPage {
                mapped: true,
                write: true,
                ..RefPage::default()
            }
        }),
        Op::Munmap { .. } => pages[lo..hi]
            .iter_mut()
            .for_each(|p| *p = RefPage::default()),
        Op::Mprotect { write, .. } => {
            // With a hole the call fails (-ENOMEM) after changing the VMAs
            // before it: each mapped page may then be old or new.
            pages[lo..hi]
                .iter_mut()
                .filter(|p| p.mapped)
                .for_each(|p| p.write = *write);
        }
        Op::Mremap { new, .. } => return mremap(pages, lo, geom.page_of(*new, false), hi - lo),
        _ => unreachable!("not a mapping op: {op:?}"),
    }
    None
}

/// mremap of `len` pages from `old` to `new`; returns the failure's pages.
fn mremap(pages: &mut [RefPage], old: usize, new: usize, len: usize) -> Option<Vec<RefPage>> {
    // remap_move(): each VMA piece of the source moves to the same
    // offset at `new`; gaps stay gaps (their destination untouched).
    let overlap = old < new + len && new < old + len;
    if overlap || len == 0 || !pages[old].mapped {
        return None;
    }
    // Failure: a piece's destination is unmapped and its source
    // kept; entries moved and moved back lose their uffd-wp bit
    // (no UFFD_FEATURE_EVENT_REMAP).
    let mut a = pages.to_vec();
    for i in 0..len {
        if pages[old + i].mapped {
            a[new + i] = RefPage::default();
            if a[old + i].wp == 1 {
                a[old + i].wp = 2;
            }
            pages[new + i] = RefPage {
                wp: 0,
                ..pages[old + i]
            };
            pages[old + i] = RefPage::default();
        }
    }
    Some(a)
}

/// madvise(`advice`) on the pages `lo..hi` of one process. Returns the pages
/// of the other acceptable end state (MADV_GUARD_INSTALL's failure).
fn madvise(pages: &mut [RefPage], advice: Advice, lo: usize, hi: usize) -> Option<Vec<RefPage>> {
    match advice {
        Advice::Dontneed => {
            for p in pages[lo..hi].iter_mut().filter(|p| p.mapped && !p.guard) {
                p.val = 0;
                p.maybe_zero = false;
                p.any_val = false;
                p.wp = 0;
            }
        }
        Advice::Free => {
            for p in pages[lo..hi].iter_mut().filter(|p| p.mapped) {
                // A discarded lazyfree page (or a freed swap entry) reads zero
                // and loses its uffd-wp bit with its entry.
                if p.val != 0 {
                    p.maybe_zero = true;
                } else if p.wp == 1 {
                    p.wp = 2;
                }
            }
        }
        Advice::GuardInstall => {
            // Success: every page a guard marker. A failure (-ENOMEM from the
            // walk's table allocation) may leave pages zapped but not yet
            // guarded: that is the alternative.
            let mut a = pages.to_vec();
            for (p, q) in pages[lo..hi].iter_mut().zip(a[lo..hi].iter_mut()) {
                if p.mapped {
                    *p = RefPage {
                        mapped: true,
                        write: p.write,
                        guard: true,
                        ..RefPage::default()
                    };
                    if !q.guard {
                        *q = RefPage {
                            mapped: true,
                            write: q.write,
                            ..RefPage::default()
                        };
                    }
                }
            }
            return Some(a);
        }
        Advice::GuardRemove => {
            for p in pages[lo..hi].iter_mut().filter(|p| p.guard) {
                p.guard = false;
                p.val = 0;
            }
        }
        Advice::Cold | Advice::Pageout | Advice::Collapse => {}
    }
    None
}

/// Faults on the pages `lo..hi` of one process: touch, and GUP (pin, mlock).
fn fault(pages: &mut [RefPage], op: &Op, lo: usize, hi: usize, op_index: usize) {
    match op {
        Op::Touch { write: true, .. } => {
            // A write lands: a uffd-wp protected page is resolved first (by
            // the handler, or by the kernel with WP_ASYNC).
            for (i, p) in pages[lo..hi].iter_mut().enumerate() {
                if p.mapped && p.write && !p.guard {
                    *p = RefPage {
                        val: tag(op_index, lo + i),
                        maybe_zero: false,
                        any_val: false,
                        wp: 0,
                        ..*p
                    }
                }
            }
        }
        Op::Touch { write: false, .. } => {}
        Op::Pin { .. } | Op::Mlock { .. } => {
            // GUP with FOLL_WRITE on a writable VMA (pin, and mlock's
            // populate): a write fault that stores what is there, so a
            // uffd-wp protected page is resolved.
            for p in pages[lo..hi]
                .iter_mut()
                .filter(|p| p.mapped && p.write && !p.guard)
            {
                p.wp = 0;
            }
        }
        _ => unreachable!("not a fault: {op:?}"),
    }
}

/// fork and exit of the live process `mm`: one more process (within
/// `MAX_MMS`), or one less.
fn process(s: &mut Reference, mm: usize, op: &Op) {
    match op {
        Op::Fork => {
            if let Some(pages) = &s.mms[mm] {
                let mut copy = pages.clone();
                copy.iter_mut().for_each(|p| p.wp = 0);
                if s.mms.len() < crate::prog::MAX_MMS {
                    s.mms.push(Some(copy));
                }
            }
        }
        Op::Exit => s.mms[mm] = None,
        _ => unreachable!("not fork or exit: {op:?}"),
    }
}

/// userfaultfd ops on the pages `lo..hi` of one process (UFFDIO_WRITEPROTECT,
/// unregister, UFFDIO_MOVE), and PAGEMAP_SCAN's write-protect.
fn uffd(pages: &mut [RefPage], op: &Op, lo: usize, hi: usize, geom: Geometry) {
    match op {
        Op::UffdWp { on, .. } => {
            // Holes are passed over; a VMA not registered stops the call
            // with -ENOENT (each page then old or new).
            for p in pages[lo..hi].iter_mut().filter(|p| p.mapped && !p.guard) {
                p.wp = match (on, p.val != 0 && !p.maybe_zero) {
                    (false, _) => 0,
                    (true, true) => 1,
                    (true, false) => 2,
                };
            }
        }
        Op::UffdUnregister { .. } => {
            for p in pages[lo..hi].iter_mut().filter(|p| p.mapped) {
                p.wp = 0;
            }
        }
        Op::UffdMove { dst, .. } => uffd_move(pages, lo, hi, geom.page_of(*dst, false)),
        Op::PagemapScan { .. } => {
            // Every page ends write-protected (a none PTE gets a marker,
            // which the model's observation cannot see: "either").
            for p in pages[lo..hi].iter_mut().filter(|p| p.mapped && !p.guard) {
                p.wp = if p.val != 0 && !p.maybe_zero { 1 } else { 2 };
            }
        }
        _ => unreachable!("not a uffd op: {op:?}"),
    }
}

/// UFFDIO_MOVE of the pages `lo..hi` to the pages from `d` on.
fn uffd_move(pages: &mut [RefPage], lo: usize, hi: usize, d: usize) {
    let len = hi - lo;
    // Each page moves; the source reads zero (an empty entry). A
    // short move leaves each page old or new.
    let src: Vec<RefPage> = pages[lo..hi].to_vec();
    for (i, sp) in src.iter().enumerate() {
        if sp.mapped && d + i < pages.len() && pages[d + i].mapped {
            pages[d + i] = RefPage {
                wp: 0,
                write: pages[d + i].write,
                ..*sp
            };
        }
    }
    for (i, p) in pages[lo..hi].iter_mut().enumerate() {
        if p.mapped && !(lo + i >= d && lo + i < d + len) {
            p.val = 0;
            p.maybe_zero = false;
            p.any_val = false;
            p.wp = 0;
        }
    }
}

/// What the model's page tables and VMAs say each page is.
pub fn observe(k: &Kernel) -> Reference {
    let n = k.pages();
    Reference {
        mms: k
            .mms
            .iter()
            .enumerate()
            .map(|(mi, mm)| {
                mm.alive.then(|| {
                    let mut pages = vec![RefPage::default(); n];
                    for vma in &mm.vmas {
                        for (page, rp) in pages.iter_mut().enumerate().take(vma.end).skip(vma.start)
                        {
                            let guard = k.is_guard(mi, page);
                            let wp = (mm.uffd_wp[page] && k.populated(mi, page) && !guard) as u8;
                            *rp = RefPage {
                                mapped: true,
                                write: vma.write,
                                val: k.page_value(mi, page),
                                maybe_zero: false,
                                any_val: false,
                                wp,
                                guard,
                            };
                        }
                    }
                    pages
                })
            })
            .collect(),
    }
}

/// no-silent-skip: compare the model with the reference. A successful op must
/// have its whole effect; a failed one leaves each page old or new (or `alt`).
/// Returns the reference to carry on with.
pub fn check_reference(
    k: &Kernel,
    before: &Reference,
    exp: &Expected,
    ok: bool,
    func: &'static str,
    what: &str,
) -> Result<Reference, Violation> {
    let actual = observe(k);
    let nmm = actual.mms.len();
    let mut next = actual.clone();
    for mi in 0..nmm {
        let Some(a) = &actual.mms[mi] else { continue };
        let get = |r: &Reference| r.mms.get(mi).cloned().flatten();
        let cands: Vec<Vec<RefPage>> = if ok {
            get(&exp.success).into_iter().collect()
        } else {
            [
                get(before),
                get(&exp.success),
                exp.alt.as_ref().and_then(get),
            ]
            .into_iter()
            .flatten()
            .collect()
        };
        if cands.is_empty() {
            continue;
        }
        for (page, ap) in a.iter().enumerate() {
            // Fast path: a candidate is exactly what the model shows and no
            // candidate carries an "either" flag here, so the slow path would
            // leave `next` (a copy of `actual`) as it is.
            let plain = |c: &Vec<RefPage>| {
                let x = &c[page];
                !x.maybe_zero && !x.any_val && x.wp != 2
            };
            if cands[0][page] == *ap && cands.iter().all(plain) {
                continue;
            }
            let Some(_) = cands.iter().find(|c| c[page].accepts(ap)) else {
                let want = cands[0][page];
                let blame = attribute(k, mi, page, func);
                let msg = if ok {
                    format!(
                        "{what} returned success but the page {} (expected {})",
                        describe(ap),
                        describe(&want)
                    )
                } else {
                    format!(
                        "{what} failed and left the page {}, neither its old nor its new state",
                        describe(ap)
                    )
                };
                let mut viol = k.violation(Invariant::NoSilentSkip, blame, mi, page, msg);
                if ap.mapped && ap.val == 0 && !ap.any_val && cands.iter().any(|c| !c[page].mapped)
                {
                    // A range that should be unmapped (after success, or in
                    // the state a failure may leave) stays mapped, empty: no
                    // data is lost or kept (it moved or was zapped), the VMA
                    // and its address range leak, and an access that must
                    // fault reads zero (mremap's unmap_source_vma(), also on
                    // the new range after a failed move).
                    viol.severity = super::contract::Breach::LeftMapped.severity();
                    viol.message.push_str(
                        ": the range stays mapped and empty (a leaked VMA, no data lost)",
                    );
                }
                return Err(viol);
            };
            if let Some(n) = next.mms[mi].as_mut() {
                // Every acceptable state that allowed zero keeps allowing it.
                let mz = cands
                    .iter()
                    .any(|c| c[page].accepts(ap) && c[page].maybe_zero);
                n[page].maybe_zero = mz && ap.val != 0;
                n[page].any_val = cands.iter().any(|c| c[page].accepts(ap) && c[page].any_val);
                // Likewise an undecidable uffd-wp bit stays undecided (a lazyfree
                // page may still be discarded, dropping its bit).
                if cands.iter().any(|c| c[page].accepts(ap) && c[page].wp == 2) {
                    n[page].wp = 2;
                }
            }
        }
    }
    Ok(next)
}

fn describe(p: &RefPage) -> String {
    if !p.mapped {
        "is unmapped".into()
    } else {
        format!(
            "{} reads {:#x}{}{}",
            if p.write { "rw" } else { "ro" },
            p.val,
            if p.any_val {
                " (any value)"
            } else if p.maybe_zero {
                " (or 0)"
            } else {
                ""
            },
            match p.wp {
                1 => ", uffd-wp",
                2 => ", maybe uffd-wp",
                _ => "",
            }
        )
    }
}
