//! `vm fuzz`'s executor in the guest: coverage per op through KCOV, and the
//! failure flag. Needs the kernel `splitfuzz vm build` makes with no
//! arguments (with CONFIG_KCOV, kernel/config.fragment) in the cache;
//! otherwise SKIPPED.

use splitfuzz::prog::Program;
use splitfuzz::vm::fuzz::run_programs;
use splitfuzz::vm::kcov_map::SymbolMap;
use splitfuzz::vm::qemu::VmOptions;
use std::path::PathBuf;

fn options() -> Option<VmOptions> {
    let Some(kernel) = splitfuzz::vm::build::default_kernel() else {
        println!("SKIPPED: no kernel in cache (run splitfuzz vm build)");
        return None;
    };
    if splitfuzz::vm::qemu::qemu_binary().is_err() {
        println!("SKIPPED: no qemu-system-x86_64 (scripts/vm-deps.sh)");
        return None;
    }
    Some(VmOptions {
        kernel,
        exe: PathBuf::from(env!("CARGO_BIN_EXE_splitfuzz")),
        timeout: 10,
        smp: 2,
        memory: "2G".into(),
        kvm: false,
        verbose: false,
        keep: None,
    })
}

/// The functions holding an op's PCs.
fn functions(map: &SymbolMap, pcs: &[u32]) -> Vec<String> {
    let mut f: Vec<String> = pcs
        .iter()
        .filter_map(|p| map.function(*p))
        .map(String::from)
        .collect();
    f.sort();
    f.dedup();
    f
}

#[test]
fn ops_report_the_kernel_code_they_ran_and_their_failures() {
    let Some(o) = options() else { return };
    let map = SymbolMap::beside(&o.kernel).expect("System.map beside the cached bzImage");
    // MADV_DONTNEED of part of a THP splits its PMD in zap_pmd_range; the
    // second program fails the THP allocation of its touch (the fault falls
    // back to small pages).
    let split =
        Program::parse("mmap 0 2M thp\ntouch 0 2M write\nmadvise 0 256K dontneed\n").unwrap();
    let failing = Program::parse("fail thp op=1:nth=1\nmmap 0 2M thp\ntouch 0 2M write\n").unwrap();
    let (runs, boots) = run_programs(&o, &[split, failing]).unwrap();
    assert_eq!(boots, 1, "one boot for both programs");
    let zap = runs[0].hr.cov[2].as_ref().expect("coverage of op 2");
    let f = functions(&map, &zap.pcs);
    // zap_pmd_range() is static inline: its PCs are its callers' (7.2.13
    // tinyconfig: zap_vma_range_batched(), unmap_vmas()).
    assert!(
        f.iter()
            .any(|x| x == "zap_pmd_range" || x.starts_with("zap_vma_range") || x == "unmap_vmas"),
        "{f:?}"
    );
    assert!(f.iter().any(|x| x == "__split_huge_pmd"), "{f:?}");
    assert!(!zap.edges.is_empty() && !zap.failed);
    // Only mm/, task_mmu.c and pgtable.c are instrumented.
    assert!(
        f.iter()
            .all(|x| !x.starts_with("tty_") && !x.starts_with("pipe_")),
        "{f:?}"
    );
    let t = runs[1].hr.cov[1]
        .as_ref()
        .expect("coverage of the failing touch");
    assert!(t.failed, "the planned THP allocation failed during op 1");
    assert!(!runs[1].hr.cov[0].as_ref().unwrap().failed);
}
