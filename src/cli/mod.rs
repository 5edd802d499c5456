//! The subcommands of the binary (the library has no CLI types). Each file
//! holds one subcommand's arguments (`XxxArgs`) and its `main`:
//!
//! | subcommand | file |
//! | --- | --- |
//! | `run` | run.rs |
//! | `check` | check.rs |
//! | `repro` | repro.rs |
//! | `decode`, `encode` | codec.rs |
//! | `minimize` | minimize.rs |
//! | `policies` | policies.rs |
//! | `real` | real.rs |
//! | `vm build`, `vm run`, `vm exec`, `vm check`, `vm fuzz` | vm.rs, vm_run.rs, vm_check.rs, vm_fuzz.rs |
//! | `emit-c` | emit_c.rs |
//! | `emit-kselftest` | emit_kselftest.rs |
//! | `emit-syz` | emit_syz.rs |
//! | `cmin` | cmin.rs |
//! | `diff` | diff.rs |
//! | `fuzz` | fuzz.rs |
//! | `report` | report.rs |
//! | `engine` | engine.rs |
//! | `continuous` | continuous.rs |
//!
//! The arguments they share, and their checks, are in args.rs; SIGINT and
//! SIGTERM handling of the long ones in stop.rs. Reports go to
//! stdout with `splitfuzz::say!` (or [`say_text`]), warnings to stderr with
//! [`warn`], and an `Err` is one line on stderr and exit 2 (src/main.rs).

pub mod args;
pub mod check;
pub mod cmin;
pub mod codec;
pub mod continuous;
pub mod diff;
pub mod emit_c;
pub mod emit_kselftest;
pub mod emit_syz;
pub mod engine;
pub mod fuzz;
pub mod minimize;
pub mod policies;
pub mod real;
pub mod report;
pub mod repro;
pub mod run;
pub mod stop;
pub mod vm;
pub mod vm_check;
pub mod vm_fuzz;
pub mod vm_run;

use splitfuzz::prog::Expect;
use splitfuzz::say;
use std::process::ExitCode;

/// A warning on stderr; the run goes on.
pub fn warn(msg: impl std::fmt::Display) {
    eprintln!("splitfuzz: warning: {msg}");
}

/// Print a text made of whole lines (a program's text, a table, a C file)
/// with `say!`: the same bytes as `print!` (nothing for an empty text).
pub fn say_text(text: &str) {
    if let Some(body) = text.strip_suffix('\n') {
        say!("{body}");
    } else if !text.is_empty() {
        say!("{text}");
    }
}

/// Exit 1 when something failed (a violation, an expectation that does not
/// hold), else 0.
pub fn status(failed: bool) -> ExitCode {
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// The `expect` line as written (`expect ok`, `expect violation INV FUNC`).
pub fn expect_line(e: &Expect) -> String {
    match e {
        Expect::Ok => "expect ok".into(),
        Expect::Violation { .. } => format!("expect violation {}", e.describe()),
    }
}
