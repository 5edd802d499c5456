//! `splitfuzz policies`: each preset's per-caller table.

use anyhow::Result;
use splitfuzz::model::policy::{Policy, Preset};
use splitfuzz::say;
use std::process::ExitCode;

pub fn main() -> Result<ExitCode> {
    for p in Preset::ALL {
        say!("{}", Policy::preset(p).table());
    }
    Ok(ExitCode::SUCCESS)
}
