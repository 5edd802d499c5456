//! `splitfuzz decode` and `splitfuzz encode`: fuzzer bytes to the text form
//! and back.

use super::args::{content, load, Content, FormatArg};
use super::{say_text, warn};
use anyhow::{anyhow, Context, Result};
use splitfuzz::prog::Program;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct DecodeArgs {
    /// Raw fuzzer input (a text program here is decoded as bytes, with a warning).
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

/// Print the text form of FILE's bytes.
pub fn decode(a: DecodeArgs) -> Result<ExitCode> {
    let file = &a.file;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    if content(&bytes) == Content::Program {
        warn(format!(
            "{} looks like a text program; decode reads any file as fuzzer bytes, so this is not that program (run or repro read text)",
            file.display()
        ));
    }
    let prog = Program::decode(&bytes);
    if prog.ops.is_empty() {
        warn(format!("{}: empty program (no ops)", file.display()));
    }
    say_text(&prog.to_text());
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct EncodeArgs {
    /// The text program.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Where to write the bytes.
    #[arg(short = 'o', long, value_name = "OUT")]
    out: PathBuf,
    #[command(flatten)]
    f: FormatArg,
}

/// Write bytes that decode back to FILE's program.
pub fn encode(a: EncodeArgs) -> Result<ExitCode> {
    let prog = load(&a.file, a.f.format)?;
    let bytes = splitfuzz::prog::encode(&prog).map_err(|e| anyhow!("{}: {e}", a.file.display()))?;
    std::fs::write(&a.out, bytes).with_context(|| format!("cannot write {}", a.out.display()))?;
    Ok(ExitCode::SUCCESS)
}
