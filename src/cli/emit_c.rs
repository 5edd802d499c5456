//! `splitfuzz emit-c`: a standalone C reproducer of a program.

use super::args::Trigger;
use super::args::{load, FormatArg};
use super::say_text;
use anyhow::{anyhow, Result};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct EmitCArgs {
    /// The program (text or raw fuzzer bytes).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    #[command(flatten)]
    f: FormatArg,
    /// How the reproducer realises the fault plan: `inject` (our kernel
    /// patch's debugfs interface) or `memcg` (no injection: it creates a
    /// memory cgroup and puts it at its limit during the ops that hold the
    /// planned failures).
    #[arg(long, value_enum, default_value_t = Trigger::Inject)]
    trigger: Trigger,
}

pub fn main(a: EmitCArgs) -> Result<ExitCode> {
    let prog = load(&a.file, a.f.format)?;
    let c = splitfuzz::csource::emit_c_with(&prog, a.trigger == Trigger::Memcg)
        .map_err(|e| anyhow!("{}: {e}", a.file.display()))?;
    say_text(&c);
    Ok(ExitCode::SUCCESS)
}
