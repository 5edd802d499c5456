//! `splitfuzz report`: the HTML page of a `fuzz` run directory, or with
//! `--mail` a finding as plain text for the list (src/mail/).

use anyhow::{anyhow, Context, Result};
use splitfuzz::say;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ReportArgs {
    /// A run directory written by `splitfuzz fuzz` (see its --out); with
    /// --mail, a finding file (crashes/*/*.txt or a `vm check` finding).
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Where to write the page (default: DIR/report.html) or the mail
    /// (default: stdout).
    #[arg(short = 'o', long, value_name = "OUT")]
    out: Option<PathBuf>,
    /// Write the finding as plain text ready to paste into a reply on the
    /// list: subject, kernel and series, call chain, the program (ours and
    /// syzkaller's), the kernel's log, memory.events, the C reproducer.
    #[arg(long)]
    mail: bool,
}

pub fn main(a: ReportArgs) -> Result<ExitCode> {
    if a.mail {
        let raw = std::fs::read_to_string(&a.dir)
            .with_context(|| format!("cannot read {}", a.dir.display()))?;
        let m = splitfuzz::mail::mail_report(&a.dir.display().to_string(), &raw)
            .map_err(|e| anyhow!("{e}"))?;
        match &a.out {
            Some(o) => {
                std::fs::write(o, m).with_context(|| format!("cannot write {}", o.display()))?
            }
            None => super::say_text(&m),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let out = a.out.unwrap_or_else(|| a.dir.join("report.html"));
    splitfuzz::fuzz::report::write_report(&a.dir, &out)?;
    say!("report: {}", out.display());
    Ok(ExitCode::SUCCESS)
}
