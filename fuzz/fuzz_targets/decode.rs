//! Fuzz target: the byte and text formats round-trip (decode → to_text →
//! parse, and encode → decode). Engine: see src/lib.rs.
#![cfg_attr(feature = "libfuzzer", no_main)]

splitfuzz_fuzz::target!(|data| splitfuzz_fuzz::check_decode(data));
