//! `splitfuzz report`: the HTML page of a `fuzz` run directory.

use anyhow::Result;
use splitfuzz::say;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ReportArgs {
    /// A run directory written by `splitfuzz fuzz` (see its --out).
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Where to write the page (default: DIR/report.html).
    #[arg(short = 'o', long, value_name = "OUT")]
    out: Option<PathBuf>,
}

pub fn main(a: ReportArgs) -> Result<ExitCode> {
    let out = a.out.unwrap_or_else(|| a.dir.join("report.html"));
    splitfuzz::fuzz::report::write_report(&a.dir, &out)?;
    say!("report: {}", out.display());
    Ok(ExitCode::SUCCESS)
}
