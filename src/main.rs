//! The `splitfuzz` command line: the subcommands and what each does. Their
//! arguments and code are in src/cli/, one file each (see src/cli/mod.rs).

mod cli;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "splitfuzz",
    version,
    about = "Fault-injection fuzzing of THP PMD split-failure handling",
    long_about = "Fault-injection fuzzing of THP PMD split-failure handling: an executable model of the kernel's \
anonymous-THP page-table paths runs programs of user-level operations under a split policy \
(deposit, lazy-v1, lazy-v2, lazy-v3, lazy-fixed, lazy-v4-proposed) with allocation failures injected from the program, \
and checks invariants after every step.",
    arg_required_else_help = true,
    after_help = "The main job: splitfuzz fuzz --policy lazy-v1,lazy-v3 --time 60s (60 s in total, 30 s per policy).\n\
Exit status: 0 no violation, 1 a violation (or an expectation that does not hold, for `check`), 2 bad input or an I/O error."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run programs: exit 1 if one violates an invariant, 0 if none does.
    ///
    /// For each program: one line with the outcome, then the policy used and where it came
    /// from, for a violation the function where the harm appears and the override that
    /// removes it, and whether its `expect` line held. A fix tried with --override exits 0.
    Run(cli::run::RunArgs),
    /// Check `expect` lines: exit 0 when every one holds, 1 otherwise.
    ///
    /// A program without an `expect` line does not pass. With --fixed, a program passes when
    /// it no longer violates anything: confirm a fix tried with --override on saved findings.
    Check(cli::check::CheckArgs),
    /// Run one program with a full trace (RUST_LOG filters; default trace level).
    Repro(cli::repro::ReproArgs),
    /// Decode raw fuzzer bytes into the text form.
    Decode(cli::codec::DecodeArgs),
    /// Encode a text program as bytes that decode back to it.
    Encode(cli::codec::EncodeArgs),
    /// Shrink a violating program keeping its signature; prints the text.
    Minimize(cli::minimize::MinimizeArgs),
    /// Print each preset's per-caller table.
    Policies,
    /// Run programs on the host kernel (deposit, kernel geometry) and compare
    /// with the model after every op.
    Real(cli::real::RealArgs),
    /// The real kernel in a VM: build a guest kernel, run programs on it.
    Vm {
        #[command(subcommand)]
        cmd: cli::vm::VmCmd,
    },
    /// Print a standalone C reproducer (libc only) for a program.
    EmitC(cli::emit_c::EmitCArgs),
    /// Print a kselftest file (kselftest_harness.h) with one test per program and trigger.
    ///
    /// Tests named memcg.* make the planned allocations fail with a memory-cgroup limit (no
    /// kernel patch); inject.* use our fault-plan interface and are skipped where it is absent.
    /// Each asserts the contract of its ops (returns in time, MADV_DONTNEED zeroes, mremap
    /// unmaps the source). Build with -I LINUX/tools/testing/selftests.
    EmitKselftest(cli::emit_kselftest::EmitKselftestArgs),
    /// Print programs in syzkaller's text format (a reproducer with fail_nth, or --seed).
    ///
    /// Addresses are in syzkaller's data area; each call's comment names our op. A reproducer
    /// marks the call holding the planned failure with `(fail_nth: N)`; a seed has none.
    EmitSyz(cli::emit_syz::EmitSyzArgs),
    /// Minimize a corpus folder with the model's own coverage (-o OUT or --in-place).
    ///
    /// Keeps the smallest inputs that add a model branch, hit-count bucket or violation
    /// signature. It needs -o OUT (copy the kept inputs there) or --in-place (delete the
    /// others from DIR).
    Cmin(cli::cmin::CminArgs),
    /// Run programs under deposit and under --policy P and report every
    /// user-visible difference (see src/diff.rs); or --maximize reclaim-tables.
    Diff(cli::diff::DiffArgs),
    /// The built-in engine; --time is the budget of the whole run.
    ///
    /// Generation + mutation guided by model coverage. Policies run in turn; --time is the
    /// budget of the whole run, shared equally among them. Progress goes to stderr: a bar on a
    /// terminal, else a line every --log-every; a line per new finding. SIGINT or SIGTERM ends
    /// the run cleanly (findings tables, corpus, run directory); a second one kills it.
    /// Exit 1 when a violation was found, 0 when none, 2 on bad options or a write error.
    Fuzz(cli::fuzz::FuzzArgs),
    /// Make the HTML report of a `fuzz` run directory, or with --mail a finding for the list.
    ///
    /// One self-contained page: coverage, findings and exec/s over time per policy, the
    /// policy x signature matrix, and the model coverage table by kernel function.
    Report(cli::report::ReportArgs),
    /// One bounded run of one engine on one target, then its crash files, triaged.
    ///
    /// Builds the engine's fuzz targets, runs it for --time on the work dir's shared corpus of
    /// TARGET, and replays every crash file it wrote to name its signature (a new one is
    /// minimized into the work dir's findings/). Exit 1 when it wrote a crash file, 0 when
    /// none, 2 on a usage or build error.
    Engine(cli::engine::EngineArgs),
    /// Rotate engines and targets in slices sharing one corpus per target; triage every crash.
    ///
    /// Minimizes the shared corpora every --cmin-every; SIGINT or SIGTERM ends it cleanly with
    /// its summary table. Exit 1 when a crash was found, 0 when none, 2 on bad options.
    Continuous(cli::continuous::ContinuousArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            // clap's whole message: the error, the usage and the hint (or the help).
            let _ = e.print();
            return if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    if !matches!(cli.cmd, Cmd::Real(_)) {
        // Die quietly on a closed stdout (`splitfuzz ... | head`) like other
        // CLI tools instead of panicking in println!. `real` keeps SIGPIPE
        // ignored: it writes to pipes of its mm processes and handles EPIPE.
        use nix::sys::signal::{signal, SigHandler, Signal};
        // SAFETY: set once at start-up, before any thread exists.
        let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    }
    match dispatch(cli.cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("splitfuzz: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Run the subcommand: Ok(exit status), or Err for bad input or an I/O error
/// (one line on stderr, exit 2).
fn dispatch(cmd: Cmd) -> anyhow::Result<ExitCode> {
    match cmd {
        Cmd::Run(a) => cli::run::main(a),
        Cmd::Check(a) => cli::check::main(a),
        Cmd::Repro(a) => cli::repro::main(a),
        Cmd::Decode(a) => cli::codec::decode(a),
        Cmd::Encode(a) => cli::codec::encode(a),
        Cmd::Minimize(a) => cli::minimize::main(a),
        Cmd::Policies => cli::policies::main(),
        Cmd::Real(a) => cli::real::main(a),
        Cmd::Vm { cmd } => cli::vm::main(cmd),
        Cmd::EmitC(a) => cli::emit_c::main(a),
        Cmd::EmitKselftest(a) => cli::emit_kselftest::main(a),
        Cmd::EmitSyz(a) => cli::emit_syz::main(a),
        Cmd::Cmin(a) => cli::cmin::main(a),
        Cmd::Diff(a) => cli::diff::main(a),
        Cmd::Fuzz(a) => cli::fuzz::main(a),
        Cmd::Report(a) => cli::report::main(a),
        Cmd::Engine(a) => cli::engine::main(a),
        Cmd::Continuous(a) => cli::continuous::main(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_argument_has_help() {
        Cli::command().debug_assert();
        let mut missing = Vec::new();
        for sub in Cli::command().get_subcommands() {
            assert!(sub.get_about().is_some(), "{} has no help", sub.get_name());
            for a in sub.get_arguments() {
                let id = a.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{} {id}", sub.get_name()));
                }
            }
        }
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }
}
