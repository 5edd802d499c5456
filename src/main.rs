//! The `splitfuzz` command line.
#![allow(clippy::manual_is_multiple_of)]

mod cli;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use splitfuzz::fuzz::engine::{self, FuzzOptions, Progress};
use splitfuzz::fuzz::report::{CampaignFile, RunFile};
use splitfuzz::model::policy::{Policy, Preset};

use splitfuzz::prog::{Expect, Program};
use splitfuzz::run::{self, OpResult, RunConfig};
use splitfuzz::Geometry;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "splitfuzz",
    version,
    about = "Fault-injection fuzzing of THP PMD split-failure handling",
    long_about = "Fault-injection fuzzing of THP PMD split-failure handling: an executable model of the kernel's \
anonymous-THP page-table paths runs programs of user-level operations under a split policy \
(deposit, lazy-v1, lazy-v2, lazy-v3, lazy-fixed) with allocation failures injected from the program, \
and checks invariants after every step.",
    arg_required_else_help = true,
    after_help = "The main job: splitfuzz fuzz --policy lazy-v1,lazy-v3 --time 60s (60 s in total, 30 s per policy).\n\
Exit status: 0 no violation, 1 a violation (or an expectation that does not hold, for `check`), 2 bad input or an I/O error."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct PolicyArgs {
    /// Policy preset: deposit, lazy-v1, lazy-v2, lazy-v3, lazy-fixed. Default: the program's
    /// `policy` line, else the crashes/<policy>/ folder the file is in, else lazy-v3.
    #[arg(long, value_name = "POLICY")]
    policy: Option<String>,
    /// Change what one split caller does when the split fails: CALLER=STRATEGY, STRATEGY one
    /// of proceed, skip, retry, error (repeatable). CALLER is a split caller (see
    /// `splitfuzz policies`) or a harm site that stands for one (copy_pmd_range = copy_huge_pmd).
    #[arg(long = "override", value_name = "CALLER=STRATEGY")]
    overrides: Vec<String>,
    /// PTEs per table: small (8, fast) or kernel (512, as on x86-64).
    #[arg(long, default_value = "small", value_name = "GEOMETRY")]
    geometry: String,
}

#[derive(clap::Args, Clone, Copy)]
struct FormatArg {
    /// How to read FILE: text (the program format), bytes (raw fuzzer input), or auto:
    /// text when the file is printable UTF-8 with a program line or a `#` comment, else bytes.
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    format: Format,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Auto,
    Text,
    Bytes,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run programs: exit 1 if one violates an invariant, 0 if none does.
    ///
    /// For each program: one line with the outcome, then the policy used and where it came
    /// from, for a violation the function where the harm appears and the override that
    /// removes it, and whether its `expect` line held. A fix tried with --override exits 0.
    Run {
        /// Program files: text or raw fuzzer bytes (see --format).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        #[command(flatten)]
        p: PolicyArgs,
        #[command(flatten)]
        f: FormatArg,
    },
    /// Check `expect` lines: exit 0 when every one holds, 1 otherwise.
    ///
    /// A program without an `expect` line does not pass. With --fixed, a program passes when
    /// it no longer violates anything: confirm a fix tried with --override on saved findings.
    Check {
        /// Program files with an `expect` line (see --format).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Pass when a program no longer violates anything, instead of when it does what its
        /// `expect` line says.
        #[arg(long)]
        fixed: bool,
        #[command(flatten)]
        p: PolicyArgs,
        #[command(flatten)]
        f: FormatArg,
    },
    /// Run one program with a full trace (RUST_LOG filters; default trace level).
    Repro {
        /// The program (text or raw fuzzer bytes).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        p: PolicyArgs,
        #[command(flatten)]
        f: FormatArg,
    },
    /// Decode raw fuzzer bytes into the text form.
    Decode {
        /// Raw fuzzer input (a text program here is decoded as bytes, with a warning).
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Encode a text program as bytes that decode back to it.
    Encode {
        /// The text program.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Where to write the bytes.
        #[arg(short = 'o', long, value_name = "OUT")]
        out: PathBuf,
        #[command(flatten)]
        f: FormatArg,
    },
    /// Shrink a violating program keeping its signature; prints the text.
    Minimize {
        /// The violating program (text or raw fuzzer bytes).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        p: PolicyArgs,
        #[command(flatten)]
        f: FormatArg,
        /// Write the minimized program here instead of stdout.
        #[arg(short = 'o', long, value_name = "OUT")]
        out: Option<PathBuf>,
    },
    /// Print each preset's per-caller table.
    Policies,
    /// Run programs on the host kernel (deposit, kernel geometry) and compare
    /// with the model after every op.
    Real {
        /// Text programs to run on the host.
        #[arg(value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Generate N programs from the model's decoder instead.
        #[arg(long, value_name = "N")]
        generate: Option<usize>,
        /// Seed of the generated programs (with --generate).
        #[arg(long, default_value_t = 0, value_name = "SEED")]
        seed: u64,
        /// Print each program's host observations (and the model's where they differ) and
        /// the text of every diverging program.
        #[arg(short, long)]
        verbose: bool,
    },
    /// The real kernel in a VM: build a guest kernel, run programs on it.
    Vm {
        #[command(subcommand)]
        cmd: splitfuzz::vm::VmCmd,
    },
    /// Print a standalone C reproducer (libc only) for a program.
    EmitC {
        /// The program (text or raw fuzzer bytes).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        f: FormatArg,
        /// How the reproducer realises the fault plan: `inject` (our kernel
        /// patch's debugfs interface) or `memcg` (no injection: it creates a
        /// memory cgroup and puts it at its limit during the ops that hold the
        /// planned failures).
        #[arg(long, value_enum, default_value_t = splitfuzz::vm::Trigger::Inject)]
        trigger: splitfuzz::vm::Trigger,
    },
    /// Minimize a corpus folder with the model's own coverage (-o OUT or --in-place).
    ///
    /// Keeps the smallest inputs that add a model branch, hit-count bucket or violation
    /// signature. It needs -o OUT (copy the kept inputs there) or --in-place (delete the
    /// others from DIR).
    Cmin {
        /// Folder of raw fuzzer inputs.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// Copy the kept inputs to this folder (DIR is left alone).
        #[arg(short = 'o', long, value_name = "OUT", conflicts_with = "in_place")]
        out: Option<PathBuf>,
        /// Rewrite DIR: delete the inputs that are not kept.
        #[arg(long)]
        in_place: bool,
        #[command(flatten)]
        p: PolicyArgs,
    },
    /// Run programs under deposit and under --policy P and report every
    /// user-visible difference (see src/diff.rs); or --maximize reclaim-tables.
    Diff(splitfuzz::diff::DiffArgs),
    /// The built-in engine; --time is the budget of the whole run.
    ///
    /// Generation + mutation guided by model coverage. Policies run in turn; --time is the
    /// budget of the whole run, shared equally among them. Progress goes to stderr: a bar on a
    /// terminal, else a line every --log-every; a line per new finding. SIGINT or SIGTERM ends
    /// the run cleanly (findings tables, corpus, run directory); a second one kills it.
    /// Exit 1 when a violation was found, 0 when none, 2 on bad options or a write error.
    Fuzz {
        /// One or more policies (comma separated or repeated): deposit, lazy-v1, lazy-v2,
        /// lazy-v3, lazy-fixed.
        #[arg(long, value_delimiter = ',', required = true, value_name = "POLICY")]
        policy: Vec<String>,
        /// Change one split caller's strategy in every policy: CALLER=STRATEGY (repeatable;
        /// see `run --help`).
        #[arg(long = "override", value_name = "CALLER=STRATEGY")]
        overrides: Vec<String>,
        /// Wall-clock budget of the whole run, all policies together (each gets an equal share
        /// of what is left when it starts), e.g. 30s, 10m, 1h30m, 1d, 500ms. Default 60s, or
        /// no time limit with --runs.
        #[arg(long, value_name = "DURATION")]
        time: Option<String>,
        /// Stop each policy's campaign after N executions. With one job, a campaign is then
        /// deterministic: same findings, counts and corpus for the same seed.
        #[arg(long, value_name = "N")]
        runs: Option<u64>,
        /// Worker threads per campaign; they share one corpus and one coverage map (at most
        /// 4x the CPUs, and 256).
        #[arg(long, default_value_t = 1, value_name = "N")]
        jobs: usize,
        /// Seed of the random generator (job N uses a seed derived from SEED and N).
        #[arg(long, default_value_t = 0, value_name = "SEED")]
        seed: u64,
        /// PTEs per table: small (8, fast) or kernel (512, as on x86-64).
        #[arg(long, default_value = "small", value_name = "GEOMETRY")]
        geometry: String,
        /// Where minimized reproducers go: DIR/<policy>/<invariant>-<function>.txt (+ .bin).
        #[arg(long, default_value = "crashes", value_name = "DIR")]
        crashes: PathBuf,
        /// Seed the campaign from the inputs in DIR and add its new inputs to DIR.
        #[arg(long, value_name = "DIR")]
        corpus: Option<PathBuf>,
        /// Run directory for stats.csv, run.json and report.html
        /// (default: target/splitfuzz-runs/<UTC date-time>).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Interval of the progress lines printed when stderr is not a terminal.
        #[arg(long, default_value = "10s", value_name = "DURATION")]
        log_every: String,
        /// Interval of the rows written to stats.csv.
        #[arg(long, default_value = "1s", value_name = "DURATION")]
        stats_every: String,
        /// Print nothing on stderr but errors: no progress bar or lines, no finding lines.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Make the HTML report of a `fuzz` run directory.
    ///
    /// One self-contained page: coverage, findings and exec/s over time per policy, the
    /// policy x signature matrix, and the model coverage table by kernel function.
    Report {
        /// A run directory written by `splitfuzz fuzz` (see its --out).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// Where to write the page (default: DIR/report.html).
        #[arg(short = 'o', long, value_name = "OUT")]
        out: Option<PathBuf>,
    },
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
    if !matches!(cli.cmd, Cmd::Real { .. }) {
        // Die quietly on a closed stdout (`splitfuzz ... | head`) like other
        // CLI tools instead of panicking in println!. `real` keeps SIGPIPE
        // ignored: it writes to pipes of its mm processes and handles EPIPE.
        use nix::sys::signal::{signal, SigHandler, Signal};
        // SAFETY: set once at start-up, before any thread exists.
        let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    }
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("splitfuzz: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn warn(msg: impl std::fmt::Display) {
    eprintln!("splitfuzz: warning: {msg}");
}

fn geometry(s: &str) -> Result<Geometry> {
    Geometry::from_name(s).ok_or_else(|| anyhow!("unknown geometry '{s}' (small or kernel)"))
}

fn preset(name: &str) -> Result<Preset> {
    Preset::from_name(name).ok_or_else(|| {
        anyhow!(
            "unknown policy '{name}' ({})",
            Preset::ALL.map(|p| p.name()).join(", ")
        )
    })
}

fn make_policy(name: &str, overrides: &[String]) -> Result<Policy> {
    let mut p = Policy::preset(preset(name)?);
    for o in overrides {
        p.apply_override(o).map_err(|e| anyhow!(e))?;
    }
    Ok(p)
}

/// The first word of every line of the text form (and `#` comments).
const KEYWORDS: [&str; 27] = [
    "policy",
    "uffd",
    "override",
    "fail",
    "expect",
    "mmap",
    "munmap",
    "mprotect",
    "touch",
    "madvise",
    "fork",
    "exit",
    "pin",
    "unpin",
    "uffd-register",
    "uffd-unregister",
    "pagemap-scan",
    "mlock",
    "munlock",
    "uffd-move",
    "mbind",
    "drop-caches",
    // Removed from the format; a file using it is still a text program (and
    // its parse error names the line).
    "walk",
    "uffd-wp",
    "mremap",
    "reclaim",
    "migrate",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Content {
    /// Printable UTF-8 with a line that starts with a keyword or `#`.
    Program,
    /// Printable UTF-8 without any such line.
    OtherText,
    /// Anything else (control bytes, invalid UTF-8, empty).
    Binary,
}

fn content(bytes: &[u8]) -> Content {
    let Ok(s) = std::str::from_utf8(bytes) else {
        return Content::Binary;
    };
    if s.trim().is_empty()
        || s.chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Content::Binary;
    }
    let program_line = s.lines().any(|l| {
        let t = l.trim_start();
        t.starts_with('#')
            || t.split_whitespace()
                .next()
                .is_some_and(|w| KEYWORDS.contains(&w))
    });
    if program_line {
        Content::Program
    } else {
        Content::OtherText
    }
}

/// Load a program. Text and bytes are told apart by content (not by the file
/// name) unless `format` says which; a file that looks like a program but does
/// not parse is an error naming the line, never decoded as bytes.
fn load(path: &Path, format: Format) -> Result<Program> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let kind = content(&bytes);
    let as_text = match format {
        Format::Text => true,
        Format::Bytes => false,
        Format::Auto => kind == Content::Program,
    };
    let named_bin = path.extension().is_some_and(|e| e == "bin");
    let prog = if as_text {
        let text = String::from_utf8(bytes.clone())
            .map_err(|_| anyhow!("{}: not UTF-8 text (--format text)", path.display()))?;
        match Program::parse(&text) {
            Ok(p) => p,
            // A fuzzer input (named .bin by the engines) that happens to look
            // like text: bytes, and said so.
            Err(e) if format == Format::Auto && named_bin => {
                warn(format!(
                    "{}: looks like a text program but does not parse ({e}); named .bin, so decoded as fuzzer bytes (--format text to insist)",
                    path.display()
                ));
                Program::decode(&bytes)
            }
            Err(e) => bail!(
                "{}: {e}{}",
                path.display(),
                if format == Format::Auto {
                    " (read as a text program; --format bytes decodes it as fuzzer bytes)"
                } else {
                    ""
                }
            ),
        }
    } else {
        if format == Format::Auto && kind == Content::OtherText {
            warn(format!(
                "{}: printable text with no program line; decoded as fuzzer bytes (--format text parses it as a program)",
                path.display()
            ));
        }
        if format == Format::Auto
            && kind == Content::Binary
            && path.extension().is_some_and(|e| e == "txt")
        {
            warn(format!(
                "{}: named .txt but not text; decoded as fuzzer bytes",
                path.display()
            ));
        }
        Program::decode(&bytes)
    };
    if prog.ops.is_empty() {
        warn(format!(
            "{}: empty program (no ops){}",
            path.display(),
            if as_text {
                ""
            } else {
                ": the bytes decode to a fault plan only"
            }
        ));
    }
    Ok(prog)
}

/// `crashes/lazy-v1/x.txt` → the policy `lazy-v1`; a folder named after a policy
/// label with overrides (`lazy-v3+zap_pmd_range=error`) gives them too.
fn folder_policy(path: &Path) -> Option<(Preset, Vec<String>, String)> {
    let parent = path.parent()?;
    let name = parent.file_name()?.to_str()?;
    let mut parts = name.split('+');
    let preset = Preset::from_name(parts.next()?)?;
    let overrides: Vec<String> = parts.map(String::from).collect();
    let mut p = Policy::preset(preset);
    for o in &overrides {
        p.apply_override(o).ok()?;
    }
    Some((preset, overrides, parent.display().to_string()))
}

/// The policy a program runs under and where it came from: --policy, else its
/// `policy` line, else its crashes/<policy>/ folder, else lazy-v3; then the
/// folder's, the program's and the command line's overrides.
fn resolve(p: &PolicyArgs, prog: &Program, file: Option<&Path>) -> Result<(RunConfig, String)> {
    let folder = file.and_then(folder_policy);
    let (preset, folder_overrides, mut source) = if let Some(name) = &p.policy {
        (preset(name)?, vec![], "--policy".to_string())
    } else if let Some(name) = &prog.policy {
        (preset(name)?, vec![], "its `policy` line".to_string())
    } else if let Some((pr, ov, dir)) = folder {
        (pr, ov, format!("the folder {dir}/"))
    } else {
        (
            Preset::LazyV3,
            vec![],
            "the default (no --policy, no `policy` line, not in a <policy>/ folder)".to_string(),
        )
    };
    let mut pol = Policy::preset(preset);
    for (list, from) in [
        (&folder_overrides, "the folder name"),
        (&prog.overrides, "its `override` lines"),
        (&p.overrides, "--override"),
    ] {
        for o in list {
            pol.apply_override(o).map_err(|e| anyhow!(e))?;
        }
        if !list.is_empty() {
            source.push_str(&format!("; {} from {from}", list.join(" ")));
        }
    }
    Ok((RunConfig::new(pol, geometry(&p.geometry)?), source))
}

/// Say when an override names a harm site rather than the split caller.
fn note_harm_site_overrides(overrides: &[String]) {
    for o in overrides {
        let name = o.split('=').next().unwrap_or("").trim();
        use splitfuzz::model::policy::SplitCaller;
        if SplitCaller::from_name(name).is_some() {
            continue;
        }
        if let Some(c) = SplitCaller::for_finding(name) {
            warn(format!(
                "--override {o}: {name} is where the harm appears; the split caller it stands for is {}",
                c.name()
            ));
        }
    }
}

/// The `expect` line as written (`expect ok`, `expect violation INV FUNC`).
fn expect_line(e: &Expect) -> String {
    match e {
        Expect::Ok => "expect ok".into(),
        Expect::Violation { .. } => format!("expect violation {}", e.describe()),
    }
}

/// Validate the options of `fuzz` shared by every policy before any campaign.
fn max_jobs() -> usize {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    (4 * cpus).min(256)
}

fn parse_duration(s: &str, what: &str) -> Result<Duration> {
    let d = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        Duration::from_secs(
            s.parse()
                .map_err(|_| anyhow!("{what}: bad duration '{s}'"))?,
        )
    } else {
        humantime::parse_duration(s).map_err(|e| {
            anyhow!("{what}: bad duration '{s}' ({e}; e.g. 500ms, 30s, 10m, 1h30m, 1d)")
        })?
    };
    if d.is_zero() {
        bail!("{what}: the duration must be more than 0");
    }
    Ok(d)
}

static STOP: AtomicBool = AtomicBool::new(false);
static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop_signal(sig: nix::libc::c_int) {
    // Async-signal-safe: two atomic stores. SA_RESETHAND makes a second signal
    // kill the process the default way.
    SIGNAL.store(sig, Ordering::SeqCst);
    STOP.store(true, Ordering::SeqCst);
}

fn install_stop_handler() -> Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let sa = SigAction::new(
        SigHandler::Handler(on_stop_signal),
        SaFlags::SA_RESETHAND | SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for s in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to atomics.
        unsafe { sigaction(s, &sa) }.with_context(|| format!("cannot handle {s}"))?;
    }
    Ok(())
}

/// A directory that can be written: created if missing; an existing file or an
/// unwritable place is an error before the campaign starts.
fn writable_dir(dir: &Path, what: &str) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        bail!("{what} {} exists and is not a directory", dir.display());
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the {what} {}", dir.display()))?;
    let probe = dir.join(format!(".splitfuzz-probe-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .with_context(|| format!("cannot write into the {what} {}", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

fn default_run_dir() -> PathBuf {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let stamp = splitfuzz::fuzz::report::utc(now)
        .replace([' ', ':'], "-")
        .replace("--", "-");
    let base = PathBuf::from("target/splitfuzz-runs");
    let mut dir = base.join(&stamp);
    let mut i = 2;
    while dir.exists() {
        dir = base.join(format!("{stamp}-{i}"));
        i += 1;
    }
    dir
}

fn real_main(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Policies => {
            for p in Preset::ALL {
                println!("{}", Policy::preset(p).table());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run { files, p, f } => {
            note_harm_site_overrides(&p.overrides);
            let progs = files
                .iter()
                .map(|file| load(file, f.format).map(|prog| (file, prog)))
                .collect::<Result<Vec<_>>>()?;
            let mut violated = false;
            for (file, prog) in progs {
                let (cfg, source) = resolve(&p, &prog, Some(file))?;
                let out = run::run(&prog, &cfg);
                let errs = out
                    .results
                    .iter()
                    .filter(|r| matches!(r, OpResult::Err(_)))
                    .count();
                match &out.violation {
                    Some(v) => {
                        violated = true;
                        println!(
                            "{}: {} [{}]: {v}",
                            file.display(),
                            cfg.policy,
                            prog.ops
                                .get(v.op_index)
                                .map(|o| o.to_string())
                                .unwrap_or_else(|| "implicit exit of every mm".into())
                        );
                    }
                    None => println!(
                        "{}: {} ok ({} ops, {} returned errors)",
                        file.display(),
                        cfg.policy,
                        prog.ops.len(),
                        errs
                    ),
                }
                println!(
                    "  policy {}: {} from {source}",
                    cfg.policy,
                    cfg.policy.preset.name()
                );
                if let Some(i) = out.results.iter().position(|r| *r == OpResult::OomLoop) {
                    println!(
                        "  op #{i} never returned (a fault retried after VM_FAULT_OOM while every allocation fails): the task is killed there"
                    );
                }
                if let Some(v) = &out.violation {
                    println!(
                        "  the harm appears in {}; {}",
                        v.function,
                        splitfuzz::fuzz::fixes::hint(&prog, &cfg).summary()
                    );
                }
                if let Some(exp) = &prog.expect {
                    match exp.check(out.violation.as_ref()) {
                        Ok(()) => println!("  {}: held", expect_line(exp)),
                        Err(why) => println!(
                            "  {}: did not hold: {why}{}",
                            expect_line(exp),
                            if out.violation.is_none() {
                                " (fixed under this policy?)"
                            } else {
                                ""
                            }
                        ),
                    }
                }
            }
            Ok(if violated {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Cmd::Check { files, fixed, p, f } => {
            note_harm_site_overrides(&p.overrides);
            let progs = files
                .iter()
                .map(|file| load(file, f.format).map(|prog| (file, prog)))
                .collect::<Result<Vec<_>>>()?;
            let (mut pass, total) = (0, progs.len());
            for (file, prog) in progs {
                let (cfg, _) = resolve(&p, &prog, Some(file))?;
                let out = run::run(&prog, &cfg);
                let line = if fixed {
                    match (&out.violation, &prog.expect) {
                        (None, Some(exp @ Expect::Violation { .. })) => {
                            pass += 1;
                            format!("fixed: the expected {} no longer occurs", exp.describe())
                        }
                        (None, _) => {
                            pass += 1;
                            "fixed: no violation".to_string()
                        }
                        (Some(v), _) => format!("not fixed: {} [{}]", v.signature(), v.severity),
                    }
                } else {
                    match &prog.expect {
                        None => "no expect line: nothing to check (does not pass)".to_string(),
                        Some(exp) => match exp.check(out.violation.as_ref()) {
                            Ok(()) => {
                                pass += 1;
                                format!("{}: holds", expect_line(exp))
                            }
                            Err(why) => format!("{}: does not hold: {why}", expect_line(exp)),
                        },
                    }
                };
                println!(
                    "{}: {} under {}: {line}",
                    file.display(),
                    cfg.policy,
                    cfg.geometry.name()
                );
            }
            println!(
                "check{}: {pass} of {total} pass",
                if fixed { " --fixed" } else { "" }
            );
            Ok(if pass == total {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::Repro { file, p, f } => {
            let prog = load(&file, f.format)?;
            let (cfg, source) = resolve(&p, &prog, Some(&file))?;
            init_tracing("splitfuzz=trace");
            println!(
                "# policy {} (from {source}) geometry {}",
                cfg.policy,
                cfg.geometry.name()
            );
            print!("{}", prog.to_text());
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
                        last = splitfuzz::model::mm::dump(k);
                    } else {
                        tracing::trace!(target: "splitfuzz::state", "after op #{i}:\n{}", splitfuzz::model::mm::dump(k));
                    }
                },
                true,
            );
            println!("# allocations:");
            for r in &k.alloc.log {
                println!(
                    "#   {} #{} from {}{}",
                    r.kind.name(),
                    r.call,
                    r.site,
                    if r.failed { " FAILED (injected)" } else { "" }
                );
            }
            match v {
                Some(v) => {
                    println!("# state before the failing op:\n{last}");
                    println!("# state after:\n{}", splitfuzz::model::mm::dump(&k));
                    println!("{v}");
                    println!(
                        "# the harm appears in {}; {}",
                        v.function,
                        splitfuzz::fuzz::fixes::hint(&prog, &cfg).summary()
                    );
                    Ok(ExitCode::from(1))
                }
                None => {
                    println!("ok: no violation ({} ops)", prog.ops.len());
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        Cmd::Cmin {
            dir,
            out,
            in_place,
            p,
        } => {
            if out.is_none() && !in_place {
                bail!(
                    "cmin needs -o OUT (copy the kept inputs there) or --in-place (delete the others from {})",
                    dir.display()
                );
            }
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .with_context(|| format!("cannot read folder {}", dir.display()))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            files.sort();
            let inputs = files
                .iter()
                .map(|f| std::fs::read(f).with_context(|| format!("cannot read {}", f.display())))
                .collect::<Result<Vec<_>>>()?;
            let (cfg, _) = resolve(&p, &Program::default(), None)?;
            let keep = engine::cmin(&inputs, &cfg);
            match &out {
                Some(o) => {
                    std::fs::create_dir_all(o)
                        .with_context(|| format!("cannot create {}", o.display()))?;
                    for &i in &keep {
                        let name = files[i].file_name().unwrap_or_default();
                        let dest = o.join(name);
                        std::fs::write(&dest, &inputs[i])
                            .with_context(|| format!("cannot write {}", dest.display()))?;
                    }
                    println!(
                        "cmin: kept {} of {} inputs ({}), copied to {}",
                        keep.len(),
                        inputs.len(),
                        cfg.policy,
                        o.display()
                    );
                }
                None => {
                    for (i, f) in files.iter().enumerate() {
                        if !keep.contains(&i) {
                            std::fs::remove_file(f)
                                .with_context(|| format!("cannot remove {}", f.display()))?;
                        }
                    }
                    println!(
                        "cmin: kept {} of {} inputs ({}); deleted the other {} from {} (--in-place)",
                        keep.len(),
                        inputs.len(),
                        cfg.policy,
                        inputs.len() - keep.len(),
                        dir.display()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Real {
            files,
            generate,
            seed,
            verbose,
        } => {
            if files.is_empty() && generate.is_none() {
                bail!("real needs FILE... or --generate N");
            }
            cli::real::real_main(&files, generate, seed, verbose)
        }
        Cmd::Diff(a) => {
            let files = a
                .files
                .iter()
                .map(|f| load(f, Format::Auto).map(|p| (f.display().to_string(), p)))
                .collect::<Result<Vec<_>>>()?;
            splitfuzz::diff::main(&a, files)
        }
        Cmd::Vm { cmd } => splitfuzz::vm::vm_main(cmd),
        Cmd::EmitC { file, f, trigger } => {
            let prog = load(&file, f.format)?;
            print!(
                "{}",
                splitfuzz::csource::emit_c_with(&prog, trigger == splitfuzz::vm::Trigger::Memcg)
                    .map_err(|e| anyhow!("{}: {e}", file.display()))?
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Decode { file } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
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
            print!("{}", prog.to_text());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Encode { file, out, f } => {
            let prog = load(&file, f.format)?;
            let bytes =
                splitfuzz::prog::encode(&prog).map_err(|e| anyhow!("{}: {e}", file.display()))?;
            std::fs::write(&out, bytes)
                .with_context(|| format!("cannot write {}", out.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Minimize { file, p, f, out } => {
            let prog = load(&file, f.format)?;
            let (cfg, _) = resolve(&p, &prog, Some(&file))?;
            let Some(min) = splitfuzz::run::minimize(&prog, &cfg) else {
                bail!(
                    "{}: no violation under {}, nothing to minimize",
                    file.display(),
                    cfg.policy
                );
            };
            let text = min.to_text();
            match out {
                Some(o) => std::fs::write(&o, &text)
                    .with_context(|| format!("cannot write {}", o.display()))?,
                None => print!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Report { dir, out } => {
            let out = out.unwrap_or_else(|| dir.join("report.html"));
            splitfuzz::fuzz::report::write_report(&dir, &out)?;
            println!("report: {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Fuzz {
            policy,
            overrides,
            time,
            runs,
            jobs,
            seed,
            geometry: g,
            crashes,
            corpus,
            out,
            log_every,
            stats_every,
            quiet,
        } => fuzz_main(FuzzArgs {
            policy,
            overrides,
            time,
            runs,
            jobs,
            seed,
            geometry: g,
            crashes,
            corpus,
            out,
            log_every,
            stats_every,
            quiet,
        }),
    }
}

struct FuzzArgs {
    policy: Vec<String>,
    overrides: Vec<String>,
    time: Option<String>,
    runs: Option<u64>,
    jobs: usize,
    seed: u64,
    geometry: String,
    crashes: PathBuf,
    corpus: Option<PathBuf>,
    out: Option<PathBuf>,
    log_every: String,
    stats_every: String,
    quiet: bool,
}

fn fuzz_main(a: FuzzArgs) -> Result<ExitCode> {
    // Everything is checked before the first campaign starts.
    let budget = match (&a.time, a.runs) {
        (Some(t), _) => Some(parse_duration(t, "--time")?),
        (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs(60)),
    };
    let log_every = parse_duration(&a.log_every, "--log-every")?;
    let stats_every = parse_duration(&a.stats_every, "--stats-every")?;
    if a.runs == Some(0) {
        bail!("--runs 0: a campaign needs at least one execution");
    }
    let max = max_jobs();
    if a.jobs == 0 || a.jobs > max {
        bail!(
            "--jobs {}: give 1 to {max} (4 per CPU on this machine, at most 256)",
            a.jobs
        );
    }
    let geom = geometry(&a.geometry)?;
    if !a.quiet {
        note_harm_site_overrides(&a.overrides);
    }
    let mut policies = Vec::new();
    for name in &a.policy {
        let p = make_policy(name, &a.overrides)?;
        if policies.iter().any(|q: &Policy| q.label() == p.label()) {
            bail!("--policy {name} is given twice");
        }
        policies.push(p);
    }
    writable_dir(&a.crashes, "crashes folder")?;
    if let Some(c) = &a.corpus {
        writable_dir(c, "corpus folder")?;
    }
    let run_dir = a.out.clone().unwrap_or_else(default_run_dir);
    writable_dir(&run_dir, "run directory")?;
    let stats_csv = run_dir.join("stats.csv");
    std::fs::write(&stats_csv, format!("{}\n", engine::StatsRow::CSV_HEADER))
        .with_context(|| format!("cannot write {}", stats_csv.display()))?;
    install_stop_handler()?;

    let tty = std::io::stderr().is_terminal();
    let progress = if a.quiet {
        Progress::Off
    } else if tty {
        Progress::Bar
    } else {
        Progress::Lines(log_every)
    };
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut run = RunFile {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        started: splitfuzz::fuzz::report::utc(started),
        time_budget_s: budget.map(|d| d.as_secs_f64()),
        runs: a.runs,
        jobs: a.jobs,
        seed: a.seed,
        geometry: geom.name().to_string(),
        ..Default::default()
    };
    if !a.quiet {
        let n = policies.len();
        eprintln!(
            "splitfuzz fuzz: {} polic{} in turn{}{}, {} job(s); run directory {}",
            n,
            if n == 1 { "y" } else { "ies" },
            match budget {
                Some(d) if n > 1 => format!(
                    ", {} in total ({} each)",
                    humantime::format_duration(d),
                    humantime::format_duration(Duration::from_millis(
                        (d.as_millis() / n as u128) as u64
                    ))
                ),
                Some(d) => format!(", {}", humantime::format_duration(d)),
                None => String::new(),
            },
            a.runs
                .map(|r| format!(", at most {r} executions each"))
                .unwrap_or_default(),
            a.jobs,
            run_dir.display()
        );
    }
    let begin = Instant::now();
    let mut any = false;
    let mut errors = Vec::new();
    for (i, pol) in policies.iter().enumerate() {
        if STOP.load(Ordering::SeqCst) {
            run.skipped.push(pol.label());
            continue;
        }
        // Each policy gets an equal share of what is left of the whole run.
        let duration =
            budget.map(|b| b.saturating_sub(begin.elapsed()) / (policies.len() - i) as u32);
        let opts = FuzzOptions {
            duration,
            max_runs: a.runs,
            jobs: a.jobs,
            seed: a.seed,
            crashes_dir: a.crashes.clone(),
            corpus_dir: a.corpus.clone(),
            progress,
            stop: Some(&STOP),
            stats_csv: Some(stats_csv.clone()),
            stats_every,
            ..FuzzOptions::new(pol.clone(), geom)
        };
        let report = engine::fuzz(&opts)?;
        print!("{}", report.table());
        any |= !report.findings.is_empty();
        run.interrupted |= report.interrupted;
        run.campaigns.push(CampaignFile::from_report(&report));
        splitfuzz::fuzz::report::write_run_file(&run_dir, &run)?;
        if !report.errors.is_empty() {
            errors.extend(report.errors.iter().cloned());
            for p in &policies[i + 1..] {
                run.skipped.push(p.label());
            }
            break;
        }
    }
    if run.interrupted || STOP.load(Ordering::SeqCst) {
        run.interrupted = true;
        let sig = match SIGNAL.load(Ordering::SeqCst) {
            s if s == nix::libc::SIGTERM => "SIGTERM",
            _ => "SIGINT",
        };
        println!(
            "\ninterrupted by {sig}{}",
            if run.skipped.is_empty() {
                String::new()
            } else {
                format!("; not run: {}", run.skipped.join(", "))
            }
        );
    }
    splitfuzz::fuzz::report::write_run_file(&run_dir, &run)?;
    let page = run_dir.join("report.html");
    splitfuzz::fuzz::report::write_report(&run_dir, &page)?;
    println!(
        "run directory: {} (stats.csv, run.json, report.html)",
        run_dir.display()
    );
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("splitfuzz: {e}");
        }
        return Ok(ExitCode::from(2));
    }
    Ok(if any {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

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

    #[test]
    fn keywords_are_the_first_words_of_the_text_form() {
        // Every line the text form writes starts with a keyword, so `content`
        // recognises every program `to_text` can produce.
        let mut x: u64 = 7;
        for n in 0..500 {
            let bytes: Vec<u8> = (0..(n % 200))
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let mut p = Program::decode(&bytes);
            p.policy = Some("lazy-v3".into());
            p.overrides = vec!["zap_pmd_range=error".into()];
            p.expect = Some(Expect::Ok);
            let t = p.to_text();
            for l in t.lines() {
                let w = l.split_whitespace().next().unwrap();
                assert!(KEYWORDS.contains(&w), "{w} in {l}");
            }
            assert_eq!(content(t.as_bytes()), Content::Program);
        }
        assert_eq!(content(b""), Content::Binary);
        assert_eq!(content(b"\x00\x01\x02"), Content::Binary);
        assert_eq!(content(b"hello\n"), Content::OtherText);
        assert_eq!(content(b"# only a comment\n"), Content::Program);
    }

    #[test]
    fn folder_names_give_policies() {
        let (p, o, _) = folder_policy(Path::new("crashes/lazy-v1/x.bin")).unwrap();
        assert_eq!((p, o.len()), (Preset::LazyV1, 0));
        let (p, o, _) = folder_policy(Path::new("x/lazy-v3+zap_pmd_range=error/y.txt")).unwrap();
        assert_eq!((p, o), (Preset::LazyV3, vec!["zap_pmd_range=error".into()]));
        assert!(folder_policy(Path::new("tests/x.txt")).is_none());
        assert!(folder_policy(Path::new("lazy-v3+bogus=1/x.txt")).is_none());
    }

    #[test]
    fn durations() {
        let d = |s| parse_duration(s, "--time").unwrap();
        assert_eq!(d("1h30m"), Duration::from_secs(5400));
        assert_eq!(d("1d"), Duration::from_secs(86400));
        assert_eq!(d("500ms"), Duration::from_millis(500));
        assert_eq!(d("30s"), Duration::from_secs(30));
        assert_eq!(d("10m"), Duration::from_secs(600));
        assert_eq!(d("45"), Duration::from_secs(45));
        assert!(parse_duration("0s", "--time").is_err());
        assert!(parse_duration("soon", "--time").is_err());
    }
}
