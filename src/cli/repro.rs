//! `splitfuzz repro`: one program with a full trace, its allocations and, on a
//! violation, the state before and after the failing op.

use super::args::{load, FormatArg, PolicyArgs};
use super::{say_text, status};
use anyhow::Result;
use splitfuzz::model::mm::dump;
use splitfuzz::run;
use splitfuzz::say;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ReproArgs {
    /// The program (text or raw fuzzer bytes).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    #[command(flatten)]
    p: PolicyArgs,
    #[command(flatten)]
    f: FormatArg,
}

/// Exit 1 on a violation, else 0.
pub fn main(a: ReproArgs) -> Result<ExitCode> {
    let prog = load(&a.file, a.f.format)?;
    let (cfg, source) = a.p.resolve(&prog, Some(&a.file))?;
    init_tracing("splitfuzz=trace");
    say!(
        "# policy {} (from {source}) geometry {}",
        cfg.policy,
        cfg.geometry.name()
    );
    say_text(&prog.to_text());
    let mut k = run::build(&prog, &cfg);
    k.alloc.record = true;
    let mut results = Vec::new();
    let mut last = String::new();
    let v = run::run_on(
        &mut k,
        &prog,
        &mut results,
        &mut |k, i, phase| {
            if phase == 0 {
                last = dump(k);
            } else {
                tracing::trace!(target: "splitfuzz::state", "after op #{i}:\n{}", dump(k));
            }
        },
        true,
    );
    say!("# allocations:");
    for r in &k.alloc.log {
        say!(
            "#   {} #{} from {}{}",
            r.kind.name(),
            r.call,
            r.site,
            if r.failed { " FAILED (injected)" } else { "" }
        );
    }
    match &v {
        Some(v) => {
            say!("# state before the failing op:\n{last}");
            say!("# state after:\n{}", dump(&k));
            say!("{v}");
            say!(
                "# the harm appears in {}; {}",
                v.function,
                splitfuzz::fuzz::fixes::hint(&prog, &cfg).summary()
            );
        }
        None => say!("ok: no violation ({} ops)", prog.ops.len()),
    }
    Ok(status(v.is_some()))
}

/// The trace goes to stdout with the report (RUST_LOG filters, else `default`).
fn init_tracing(default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .without_time()
        .with_ansi(false)
        .with_target(false)
        .with_writer(std::io::stdout)
        .try_init();
}
