//! Geometry: page and PMD sizes, the arena every program addresses, and the
//! PTEs per table of the model (the kernel's 512, or a small 8 for fuzzing).
//! Imports nothing of the crate.

pub const PAGE_SIZE: u64 = 4096;
pub const PMD_SIZE: u64 = 2 << 20;
/// PMD slots in the arena. The arena straddles a 1 GiB boundary in its middle,
/// so it spans two PMD tables (slots 0-7 and 8-15) and `move_huge_pmd` can move a
/// deposit between PMD tables.
pub const ARENA_PMDS: usize = 16;
pub const ARENA_SIZE: u64 = ARENA_PMDS as u64 * PMD_SIZE;
/// Grid of decoded addresses: one eighth of a PMD.
pub const GRID: u64 = PMD_SIZE / 8;
/// 4 KiB pages in the arena.
pub const NPAGES: usize = (ARENA_SIZE / PAGE_SIZE) as usize;
/// Processes (mms) a program can have: the initial one plus forks.
pub const MAX_MMS: usize = 4;

/// PTEs per page table. `KERNEL` is x86-64/arm64-4K (`PTRS_PER_PTE`, `HPAGE_PMD_NR`);
/// `SMALL` keeps every structure identical but 64x cheaper to fuzz.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub ptrs: usize,
}

impl Geometry {
    pub const KERNEL: Geometry = Geometry { ptrs: 512 };
    pub const SMALL: Geometry = Geometry { ptrs: 8 };

    pub fn from_name(s: &str) -> Option<Geometry> {
        match s {
            "kernel" | "512" => Some(Geometry::KERNEL),
            "small" | "8" => Some(Geometry::SMALL),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        if self.ptrs == 512 {
            "kernel"
        } else {
            "small"
        }
    }
    /// Bytes of the kernel geometry covered by one model page.
    pub fn page_bytes(self) -> u64 {
        PMD_SIZE / self.ptrs as u64
    }
    /// Arena byte address → model page (rounding down, or up for range ends).
    pub fn page_of(self, addr: u64, round_up: bool) -> usize {
        let pb = self.page_bytes();
        let p = if round_up {
            addr.div_ceil(pb)
        } else {
            addr / pb
        };
        p as usize
    }
    /// Byte range → page range; a non-empty range never maps to an empty one.
    pub fn pages(self, start: u64, len: u64) -> (usize, usize) {
        let s = self.page_of(start, false);
        let e = self.page_of(start + len, true).max(s + 1);
        (s, e)
    }
    pub fn addr_of(self, page: usize) -> u64 {
        page as u64 * self.page_bytes()
    }
    pub fn slot_of(self, page: usize) -> usize {
        page / self.ptrs
    }
    pub fn slot_start(self, slot: usize) -> usize {
        slot * self.ptrs
    }
    /// Arena PMD slots per modelled PMD table: the arena straddles a 1 GiB boundary.
    pub fn pmd_table_of(self, slot: usize) -> usize {
        slot / 8
    }
    pub fn is_kernel(self) -> bool {
        self.page_bytes() == PAGE_SIZE
    }
}
