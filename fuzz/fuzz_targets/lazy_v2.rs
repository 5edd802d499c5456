//! Fuzz target: raw bytes → program, run under the LazyV2 policy preset; a
//! violation panics with its message. Engine: see src/lib.rs.
#![cfg_attr(feature = "libfuzzer", no_main)]

splitfuzz_fuzz::target!(|data| splitfuzz_fuzz::check(splitfuzz_fuzz::Preset::LazyV2, data));
