//! Fuzzing around `run_program`: the built-in engine, the fix hints a finding
//! carries, and the campaign report.

pub mod engine;
pub mod findings;
pub mod fixes;
pub mod report;
pub mod stats;

pub use findings::{Curated, Finding};
pub use stats::{Report, StatsRow};
