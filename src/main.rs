//! The `splitfuzz` command line.
#![allow(clippy::manual_is_multiple_of)]

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use splitfuzz::engine::{self, FuzzOptions};
use splitfuzz::exec::{self, OpResult, RunConfig};
use splitfuzz::minimize;
use splitfuzz::policy::{Policy, Preset};
use splitfuzz::program::Program;
use splitfuzz::Geometry;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "splitfuzz",
    version,
    about = "Fault-injection fuzzing of THP PMD split-failure handling"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct PolicyArgs {
    /// Policy preset: deposit, lazy-v1, lazy-v3, lazy-fixed (default: the program's
    /// `policy` line, else lazy-v3).
    #[arg(long)]
    policy: Option<String>,
    /// Override one split caller: CALLER=STRATEGY (proceed, skip, retry, error).
    #[arg(long = "override", value_name = "CALLER=STRATEGY")]
    overrides: Vec<String>,
    /// PTEs per table: small (8, fast) or kernel (512).
    #[arg(long, default_value = "small")]
    geometry: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run programs (text or raw bytes), one line each; exit 1 on a violation.
    Run {
        files: Vec<PathBuf>,
        #[command(flatten)]
        p: PolicyArgs,
    },
    /// Run one program with a full trace (RUST_LOG filters; default trace level).
    Repro {
        file: PathBuf,
        #[command(flatten)]
        p: PolicyArgs,
    },
    /// Decode raw fuzzer bytes into the text form.
    Decode { file: PathBuf },
    /// Encode a text program as bytes that decode back to it.
    Encode {
        file: PathBuf,
        #[arg(short = 'o', long)]
        out: PathBuf,
    },
    /// Shrink a violating program keeping its signature; prints the text.
    Minimize {
        file: PathBuf,
        #[command(flatten)]
        p: PolicyArgs,
        /// Write the minimized program here instead of stdout.
        #[arg(short = 'o', long)]
        out: Option<PathBuf>,
    },
    /// Print each preset's per-caller table.
    Policies,
    /// Run programs on the host kernel (deposit, kernel geometry) and compare
    /// with the model after every op.
    Real {
        files: Vec<PathBuf>,
        /// Generate N programs from the model's decoder instead.
        #[arg(long)]
        generate: Option<usize>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(short, long)]
        verbose: bool,
    },
    /// Print a standalone C reproducer (libc only) for a program.
    EmitC { file: PathBuf },
    /// Minimize a corpus folder with the model's own coverage (works on stable).
    Cmin {
        /// Folder of raw fuzzer inputs.
        dir: PathBuf,
        /// Where to write the kept inputs (default: prune DIR in place).
        #[arg(short = 'o', long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        p: PolicyArgs,
    },
    /// Run programs under deposit and under --policy P and report every
    /// user-visible difference (see src/diff.rs); or --maximize reclaim-tables.
    Diff(splitfuzz::diff::DiffArgs),
    /// The built-in engine: generation + mutation guided by model coverage.
    Fuzz {
        /// One or more policies (comma separated or repeated).
        #[arg(long, value_delimiter = ',', required = true)]
        policy: Vec<String>,
        #[arg(long = "override", value_name = "CALLER=STRATEGY")]
        overrides: Vec<String>,
        /// Duration per policy, e.g. 60s, 10m.
        #[arg(long, default_value = "60s")]
        time: String,
        /// Stop after this many executions per policy (deterministic campaigns).
        #[arg(long)]
        runs: Option<u64>,
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value = "small")]
        geometry: String,
        /// Where minimized reproducers go (crashes/<policy>/).
        #[arg(long, default_value = "crashes")]
        crashes: PathBuf,
        /// Keep the corpus here (optional).
        #[arg(long)]
        corpus: Option<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or("bad arguments");
            eprintln!("splitfuzz: {}", first.trim_start_matches("error: "));
            return ExitCode::from(2);
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

fn geometry(s: &str) -> Result<Geometry> {
    Geometry::from_name(s).ok_or_else(|| anyhow!("unknown geometry '{s}' (small or kernel)"))
}

fn make_policy(name: &str, overrides: &[String]) -> Result<Policy> {
    let preset = Preset::from_name(name).ok_or_else(|| {
        anyhow!("unknown policy '{name}' (deposit, lazy-v1, lazy-v3, lazy-fixed)")
    })?;
    let mut p = Policy::preset(preset);
    for o in overrides {
        p.apply_override(o).map_err(|e| anyhow!(e))?;
    }
    Ok(p)
}

/// Load a program: text if it parses as UTF-8 text, else raw fuzzer bytes.
pub fn load(path: &Path) -> Result<Program> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if is_text(path, &bytes) {
        let text =
            String::from_utf8(bytes).map_err(|_| anyhow!("{}: not UTF-8 text", path.display()))?;
        Program::parse(&text).map_err(|e| anyhow!("{}: {e}", path.display()))
    } else {
        Ok(Program::decode(&bytes))
    }
}

fn is_text(path: &Path, bytes: &[u8]) -> bool {
    match path.extension().and_then(|e| e.to_str()) {
        Some("txt") => true,
        Some("bin") => false,
        _ => std::str::from_utf8(bytes)
            .is_ok_and(|s| Program::parse(s).is_ok() && !s.trim().is_empty()),
    }
}

fn config(p: &PolicyArgs, prog: &Program) -> Result<RunConfig> {
    let pol =
        exec::program_policy(prog, p.policy.as_deref(), &p.overrides).map_err(|e| anyhow!(e))?;
    Ok(RunConfig::new(pol, geometry(&p.geometry)?))
}

fn real_main(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Policies => {
            for p in Preset::ALL {
                println!("{}", Policy::preset(p).table());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run { files, p } => {
            if files.is_empty() {
                bail!("run needs at least one FILE");
            }
            let progs = files
                .iter()
                .map(|f| load(f).map(|p| (f, p)))
                .collect::<Result<Vec<_>>>()?;
            let mut failed = false;
            for (f, prog) in progs {
                let cfg = config(&p, &prog)?;
                let out = exec::run(&prog, &cfg);
                let errs = out
                    .results
                    .iter()
                    .filter(|r| matches!(r, OpResult::Err(_)))
                    .count();
                match &out.violation {
                    Some(v) => {
                        failed = true;
                        println!(
                            "{}: {} [{}]: {v}",
                            f.display(),
                            cfg.policy,
                            prog.ops[v.op_index.min(prog.ops.len().saturating_sub(1))]
                                .to_string()
                                .replace('\n', " ")
                        );
                    }
                    None => println!(
                        "{}: {} ok ({} ops, {} returned errors)",
                        f.display(),
                        cfg.policy,
                        prog.ops.len(),
                        errs
                    ),
                }
                if let Some(exp) = &prog.expect {
                    if let Err(why) = exp.check(out.violation.as_ref()) {
                        println!("{}: expectation not met: {why}", f.display());
                        failed = true;
                    }
                }
            }
            Ok(if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Cmd::Repro { file, p } => {
            let prog = load(&file)?;
            let cfg = config(&p, &prog)?;
            init_tracing("splitfuzz=trace");
            println!("# policy {} geometry {}", cfg.policy, cfg.geometry.name());
            print!("{}", prog.to_text());
            let mut k = exec::build(&prog, &cfg);
            k.alloc.record = true;
            let mut results = Vec::new();
            let mut last = String::new();
            let v = exec::run_on(
                &mut k,
                &prog,
                &mut results,
                &mut |k, i, phase| {
                    if phase == 0 {
                        last = splitfuzz::mm::dump(k);
                    } else {
                        tracing::trace!(target: "splitfuzz::state", "after op #{i}:\n{}", splitfuzz::mm::dump(k));
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
                    println!("# state after:\n{}", splitfuzz::mm::dump(&k));
                    println!("{v}");
                    Ok(ExitCode::from(1))
                }
                None => {
                    println!("ok: no violation ({} ops)", prog.ops.len());
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        Cmd::Cmin { dir, out, p } => {
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
            let cfg = config(&p, &Program::default())?;
            let keep = engine::cmin(&inputs, &cfg);
            match &out {
                Some(o) => {
                    std::fs::create_dir_all(o)
                        .with_context(|| format!("cannot create {}", o.display()))?;
                    for &i in &keep {
                        let name = files[i].file_name().unwrap_or_default();
                        std::fs::write(o.join(name), &inputs[i])?;
                    }
                }
                None => {
                    for (i, f) in files.iter().enumerate() {
                        if !keep.contains(&i) {
                            std::fs::remove_file(f)
                                .with_context(|| format!("cannot remove {}", f.display()))?;
                        }
                    }
                }
            }
            println!(
                "cmin: kept {} of {} inputs ({})",
                keep.len(),
                inputs.len(),
                cfg.policy
            );
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
            splitfuzz::real::real_main(&files, generate, seed, verbose)
        }
        Cmd::Diff(a) => {
            let files = a
                .files
                .iter()
                .map(|f| load(f).map(|p| (f.display().to_string(), p)))
                .collect::<Result<Vec<_>>>()?;
            splitfuzz::diff::main(&a, files)
        }
        Cmd::EmitC { file } => {
            let prog = load(&file)?;
            print!(
                "{}",
                splitfuzz::emit_c::emit_c(&prog).map_err(|e| anyhow!("{}: {e}", file.display()))?
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Decode { file } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            print!("{}", Program::decode(&bytes).to_text());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Encode { file, out } => {
            let prog = load(&file)?;
            let bytes = splitfuzz::program::encode(&prog)
                .map_err(|e| anyhow!("{}: {e}", file.display()))?;
            std::fs::write(&out, bytes)
                .with_context(|| format!("cannot write {}", out.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Minimize { file, p, out } => {
            let prog = load(&file)?;
            let cfg = config(&p, &prog)?;
            let Some(min) = minimize::minimize(&prog, &cfg) else {
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
            quiet,
        } => {
            let dur = parse_duration(&time)?;
            let geom = geometry(&g)?;
            let mut any = false;
            for name in &policy {
                let pol = make_policy(name, &overrides)?;
                let opts = FuzzOptions {
                    policy: pol,
                    geometry: geom,
                    duration: dur,
                    max_runs: runs,
                    jobs: jobs.max(1),
                    seed,
                    crashes_dir: crashes.clone(),
                    corpus_dir: corpus.clone(),
                    progress: !quiet,
                };
                let report = engine::fuzz(&opts)?;
                print!("{}", report.table());
                any |= !report.findings.is_empty();
            }
            Ok(if any {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

fn parse_duration(s: &str) -> Result<std::time::Duration> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n
        .parse()
        .map_err(|_| anyhow!("bad duration '{s}' (e.g. 30s, 10m)"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => bail!("bad duration '{s}' (e.g. 30s, 10m)"),
    };
    Ok(std::time::Duration::from_secs(secs))
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
