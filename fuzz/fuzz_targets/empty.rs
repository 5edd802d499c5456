//! Fuzz target that does nothing with its input: the engine's own overhead,
//! the baseline of scripts/bench-engines.sh (exec/s of a target / exec/s of
//! `empty` with the same engine). Engine: see src/lib.rs.
#![cfg_attr(feature = "libfuzzer", no_main)]

splitfuzz_fuzz::target!(|data| {
    std::hint::black_box(data);
});
