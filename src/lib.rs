//! splitfuzz: a fault-injection fuzzing harness for the Linux kernel's THP PMD
//! split-failure handling ("mm: thp: allocate PTE page tables lazily at split
//! time"). See README.md.
//!
//! * [`program`]: the input format (bytes via `arbitrary`, and text).
//! * [`mm`]: the mm state machine, one module per kernel path.
//! * [`policy`]: deposit / lazy-v1 / lazy-v3 / lazy-fixed and per-caller overrides.
//! * [`alloc`]: allocator fault injection.
//! * [`invariants`]: every invariant and check.
//! * [`oracle`]: the flat reference model of what every page must hold.
//! * [`exec`]: `run_program(bytes, cfg)`, the one entry point of every engine.
//! * [`engine`], [`minimize`]: the built-in fuzzer and the minimizer.

// `x % n == 0` reads like the kernel code it mirrors (IS_ALIGNED).
#![allow(clippy::manual_is_multiple_of)]

pub mod alloc;
pub mod coverage;
pub mod diff;
pub mod emit_c;
pub mod engine;
pub mod exec;
pub mod fixes;
pub mod invariants;
pub mod memcg;
pub mod minimize;
pub mod mm;
pub mod oracle;
pub mod policy;
pub mod program;
pub mod real;
pub mod report;
pub mod vm;

pub use exec::{run, run_program, Outcome, RunConfig};
pub use invariants::{Invariant, Violation};
pub use mm::Geometry;
pub use policy::{Policy, Preset};
pub use program::Program;
