//! splitfuzz: a fault-injection fuzzing harness for the Linux kernel's THP PMD
//! split-failure handling ("mm: thp: allocate PTE page tables lazily at split
//! time"). See README.md and docs/.
//!
//! Data flows one way, from the ground floor up:
//!
//! * [`base`]: the violation vocabulary and the geometry (imports nothing).
//! * [`prog`]: programs: types, text and bytes, fault plans, mutation, the
//!   seeded generator, minimization by predicate.
//! * [`model`]: the mm state machine (`model::mm`, one module per kernel file),
//!   policies, allocator fault injection, model coverage.
//! * [`check`]: the invariants, the reference model of page contents, and
//!   the contract of an op whose allocation fails.
//! * [`run`]: `run_program(bytes, cfg)`, the one entry point of every engine.
//! * [`host`]: the executor of ops as system calls (host oracle, guest, tests).
//! * [`observe`]: observation lines, the model's runs, comparison, memcg plans.
//! * [`verdict`]: a kernel's run judged against the model, or by the contract.
//! * [`vm`]: the guest kernel, QEMU, the guest↔host protocol, the guest side.
//! * [`csource`]: C reproducers and kselftests.
//! * [`syz`]: programs in syzkaller's text format.
//! * [`mail`]: a finding as a plain-text report for the list.
//! * [`diff`]: deposit vs lazy differential.
//! * [`fuzz`]: the built-in engine, fix hints, the campaign report.
//! * [`engines`]: the other engines behind one trait, and crash triage.
//! * [`engines`]: every engine behind one trait (the built-in one, libFuzzer,
//!   AFL++, honggfuzz), the shared corpus, triage of crash files.

// `x % n == 0` reads like the kernel code it mirrors (IS_ALIGNED).
#![allow(clippy::manual_is_multiple_of)]

/// The one way the library and the binary print a report line: println! that
/// ends the run quietly when stdout is closed (`splitfuzz real ... | head`).
/// SIGPIPE stays ignored because the controller writes to its mm processes'
/// pipes and must see EPIPE rather than die.
#[macro_export]
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout(), $($t)*).is_err() {
            std::process::exit(1);
        }
    }};
}

pub mod base;
pub mod check;
pub mod csource;
pub mod diff;
pub mod engines;
pub mod fuzz;
pub mod host;
pub mod mail;
pub mod model;
pub mod observe;
pub mod prog;
pub mod run;
pub mod syz;
pub mod verdict;
pub mod vm;

pub use base::{Geometry, Invariant, Severity, Violation};
pub use model::policy::{Policy, Preset};
pub use prog::Program;
pub use run::{run, run_program, Outcome, RunConfig};
