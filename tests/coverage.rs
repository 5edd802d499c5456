//! Named model coverage: build.rs finds every coverage point, each has a slot
//! of its own, and a campaign's bitmap reads back as a table by function.

use rand::{Rng, RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use splitfuzz::model::coverage::{self, NAMES};
use splitfuzz::model::mm::COV_BITS;
use splitfuzz::run::{run_program, RunConfig};
use splitfuzz::{Geometry, Policy, Preset};

#[test]
fn names_are_collected_and_shared_slots_are_marked() {
    assert!(NAMES.len() > 50, "{} names", NAMES.len());
    for n in [
        "zap_pmd_range:skip",
        "copy_huge_pmd:pinned",
        "pte_alloc_one:fail",
    ] {
        assert!(NAMES.contains(&n), "{n} missing");
    }
    // Names that share a bitmap slot are marked in the table (their hits are
    // the slot's); every pair `collisions` finds is marked both ways.
    let table = coverage::table(&vec![0; COV_BITS]);
    for (a, b) in coverage::collisions() {
        let row = |n: &str| table.iter().find(|r| r.name == n).unwrap().clone();
        assert!(row(a).shares_slot_with.contains(&b.to_string()), "{a} {b}");
        assert!(row(b).shares_slot_with.contains(&a.to_string()), "{a} {b}");
    }
    let marked = table
        .iter()
        .filter(|r| !r.shares_slot_with.is_empty())
        .count();
    assert_eq!(marked, 2 * coverage::collisions().len());
    // Every coverage point has a slot of its own: a new name that lands on an
    // existing one's slot must be renamed (the engine could not tell them apart).
    assert!(
        coverage::collisions().is_empty(),
        "{:?} share a bitmap slot: rename one",
        coverage::collisions()
    );
    assert_eq!(coverage::function_of("zap_pmd_range:skip"), "zap_pmd_range");
    assert_eq!(coverage::function_of("move_huge_pmd"), "move_huge_pmd");
}

#[test]
fn every_slot_a_run_hits_has_a_name() {
    let mut hits = vec![0u64; COV_BITS];
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
    for p in Preset::ALL {
        let cfg = RunConfig::new(Policy::preset(p), Geometry::SMALL);
        for _ in 0..3000 {
            let mut b = vec![0u8; rng.gen_range(8..200)];
            rng.fill_bytes(&mut b);
            coverage::accumulate(&mut hits, &run_program(&b, &cfg).cov);
        }
    }
    assert_eq!(
        coverage::unnamed_slots(&hits),
        Vec::<usize>::new(),
        "a coverage point build.rs did not see"
    );
    let table = coverage::table(&hits);
    assert_eq!(table.len(), NAMES.len());
    let reached = table.iter().filter(|b| b.hits > 0).count();
    assert!(reached > NAMES.len() / 2, "{reached} of {}", NAMES.len());
    // By function: sums of the branches' hits.
    let by = coverage::by_function(&table);
    let zap = by.iter().find(|f| f.0 == "zap_pmd_range").unwrap();
    let sum: u64 = table
        .iter()
        .filter(|b| coverage::function_of(&b.name) == "zap_pmd_range")
        .map(|b| b.hits)
        .sum();
    assert_eq!(zap.3, sum);
    assert!(zap.2 >= 2);
    // A slot nobody names is reported.
    let mut bogus = vec![0u64; COV_BITS];
    let free = (0..COV_BITS)
        .find(|i| NAMES.iter().all(|n| coverage::slot(n) != *i))
        .unwrap();
    bogus[free] = 1;
    assert_eq!(coverage::unnamed_slots(&bogus), vec![free]);
}
