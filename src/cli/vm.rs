//! `splitfuzz vm ...`: the arguments of `vm build`, `vm run`, `vm exec` (and
//! the hidden `vm guest` the initramfs starts), and their dispatch. `vm run`
//! and `vm exec` themselves are in vm_run.rs; the machinery is the library's
//! src/vm/.

use super::args::{FormatArg, Trigger};
use super::vm_run;
use anyhow::{anyhow, Result};
use splitfuzz::vm::build;
use splitfuzz::vm::qemu::VmOptions;
use std::path::PathBuf;
use std::process::ExitCode;

/// `splitfuzz vm ...`.
#[derive(clap::Subcommand, Clone, Debug)]
pub enum VmCmd {
    /// Build (or find in the cache) a guest kernel: the pinned Debian
    /// linux-source 7.2 (or --source DIR), tinyconfig + kernel/config.fragment,
    /// kernel/patches/ and each --patch. Prints the bzImage path.
    Build {
        /// A Linux source tree to build instead of the pinned package (never modified).
        #[arg(long)]
        source: Option<PathBuf>,
        /// A patch (-p1) to apply after ours; repeatable.
        #[arg(long = "patch", value_name = "FILE")]
        patches: Vec<PathBuf>,
        /// Accept a newer 7.2.x when the pinned package is gone from the suite.
        #[arg(long)]
        allow_newer: bool,
        /// make -j (default: the number of CPUs).
        #[arg(long, default_value_t = 0)]
        jobs: usize,
        /// No progress bar (a line every 200 compile units instead).
        #[arg(long)]
        quiet: bool,
    },
    /// Boot the kernel under QEMU and run programs in it, comparing every op
    /// with the model (policy P, kernel geometry). Exit 1 on a divergence.
    Run {
        files: Vec<PathBuf>,
        #[command(flatten)]
        f: FormatArg,
        /// Generate N programs (every op, with fault plans) instead.
        #[arg(long)]
        generate: Option<usize>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[command(flatten)]
        guest: GuestArgs,
        /// Model policy (default: each file's policy line, else deposit).
        #[arg(long)]
        policy: Option<String>,
        /// Seconds an op may take before it counts as hung (at least 1).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
        timeout: u64,
        /// Keep the initramfs and the serial logs in this folder.
        #[arg(long)]
        keep: Option<PathBuf>,
        /// Print each program's kernel log lines and transcript.
        #[arg(short, long)]
        verbose: bool,
        /// How a fault plan is realised: `inject` (our kernel patch fails the
        /// planned allocation) or `memcg` (no injection: the program runs in a
        /// memory cgroup, at its limit during the ops holding the planned
        /// failures; programs the model cannot predict so are reported).
        #[arg(long, value_enum, default_value_t = Trigger::Inject)]
        trigger: Trigger,
        /// With --trigger memcg: run the programs the model cannot predict at
        /// the limits too (judged against the model at the limits, which
        /// does not fail their other charges: expect differences).
        #[arg(long)]
        run_inexpressible: bool,
    },
    /// Judge a kernel by the contract, with no preset: each program runs
    /// once as it is, then once per op-scoped plan failing each allocation
    /// its ops made (the k-th, k = 1..--nth, and every one), each run judged
    /// against the deposit model with no failure. Default programs: corpus/,
    /// crashes/ and tests/programs/. Exit 1 on a finding.
    Check {
        files: Vec<PathBuf>,
        #[command(flatten)]
        f: FormatArg,
        #[command(flatten)]
        guest: GuestArgs,
        /// Budget of the failure runs, e.g. 10m (the runs without failures
        /// come first, whole).
        #[arg(long, default_value = "10m", value_name = "DURATION")]
        time: String,
        /// Fail the 1st..Nth allocation of each kind inside each op, one per
        /// run (then every one).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
        nth: u32,
        /// Seconds an op may take before it counts as hung (at least 1; a
        /// fault retrying VM_FAULT_OOM under a sustained failure takes all of
        /// it, so it is shorter than `vm run`'s).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
        timeout: u64,
        /// Where each finding's program and C reproducers go (default:
        /// target/splitfuzz-check/<UTC date-time>).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Keep the initramfs and the serial logs in this folder.
        #[arg(long)]
        keep: Option<PathBuf>,
    },
    /// Fuzz the kernel: programs mutated (ops, and op-scoped plans failing
    /// the allocations their ops made) with KCOV coverage as feedback, every
    /// run with a plan judged by the contract; findings minimized in the
    /// guest and saved as `vm check` saves them. Exit 1 on a finding.
    Fuzz {
        #[command(flatten)]
        guest: GuestArgs,
        /// How long, e.g. 10m (default: until SIGINT).
        #[arg(long, value_name = "DURATION")]
        time: Option<String>,
        /// Guests, each with its persistent executor (at least 1).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
        jobs: u64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Seed programs: `default` (corpus/ and crashes/), `none`, or
        /// files and folders (repeatable).
        #[arg(
            long = "corpus",
            value_name = "default|none|PATH",
            default_value = "default"
        )]
        corpus: Vec<String>,
        /// Seconds an op may take before it counts as hung (at least 1).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
        timeout: u64,
        /// Guest runs a finding's minimization may take.
        #[arg(long, default_value_t = 40)]
        minimize_runs: usize,
        /// The run directory (default: target/splitfuzz-vm-fuzz/<UTC date-time>).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Keep the initramfs and every boot's serial logs in this folder.
        #[arg(long)]
        keep: Option<PathBuf>,
    },
    /// Run executables in the guest (e.g. `emit-c` reproducers built here,
    /// with their shared libraries) and print their output; exit 1 unless
    /// every one exits 0.
    Exec {
        binaries: Vec<PathBuf>,
        #[command(flatten)]
        guest: GuestArgs,
        /// Seconds each executable may run (at least 1).
        #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
        timeout: u64,
    },
    /// (inside the guest) run /programs.txt; started by the initramfs.
    #[command(hide = true)]
    Guest,
}

/// The guest machine of `vm run` and `vm exec`.
#[derive(clap::Args, Clone, Debug)]
pub struct GuestArgs {
    /// The bzImage (default: the cached kernel `vm build` makes with no arguments).
    #[arg(long)]
    kernel: Option<PathBuf>,
    /// Virtual CPUs of the guest (at least 1).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    smp: u32,
    /// Guest memory (QEMU's -m).
    #[arg(long, default_value = "2G")]
    memory: String,
    /// Use KVM instead of TCG (guests crash under KVM on some machines).
    #[arg(long)]
    kvm: bool,
}

/// Dispatch a `vm` subcommand.
pub fn main(cmd: VmCmd) -> Result<ExitCode> {
    match cmd {
        VmCmd::Build {
            source,
            patches,
            allow_newer,
            jobs,
            quiet,
        } => {
            let jobs = if jobs == 0 {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            } else {
                jobs
            };
            let bz = build::build(&build::BuildOptions {
                source,
                patches,
                allow_newer,
                jobs,
                progress: !quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()),
            })?;
            println!("{}", bz.display());
            Ok(ExitCode::SUCCESS)
        }
        VmCmd::Run {
            files,
            f,
            generate,
            seed,
            guest,
            policy,
            timeout,
            keep,
            verbose,
            trigger,
            run_inexpressible,
        } => {
            if run_inexpressible && trigger != Trigger::Memcg {
                return Err(anyhow!("--run-inexpressible needs --trigger memcg"));
            }
            if files.is_empty() && generate.is_none() {
                return Err(anyhow!("vm run needs FILE... or --generate N"));
            }
            let o = vm_options(guest, timeout, verbose, keep)?;
            vm_run::run(
                &o,
                &vm_run::RunRequest {
                    files,
                    format: f.format,
                    generate,
                    seed,
                    policy,
                    memcg: trigger == Trigger::Memcg,
                    run_inexpressible,
                },
            )
        }
        VmCmd::Check {
            files,
            f,
            guest,
            time,
            nth,
            timeout,
            out,
            keep,
        } => {
            let budget = super::args::parse_duration(&time, "--time")?;
            let out = out.unwrap_or_else(|| {
                PathBuf::from("target/splitfuzz-check").join(super::fuzz::utc_stamp())
            });
            let o = vm_options(guest, timeout, false, keep)?;
            super::vm_check::run(
                &o,
                &super::vm_check::CheckRequest {
                    files,
                    format: f.format,
                    nth,
                    budget,
                    out,
                },
            )
        }
        VmCmd::Fuzz {
            guest,
            time,
            jobs,
            seed,
            corpus,
            timeout,
            minimize_runs,
            out,
            keep,
        } => {
            let budget = time
                .map(|t| super::args::parse_duration(&t, "--time"))
                .transpose()?;
            let mut seeds = Vec::new();
            for c in &corpus {
                match c.as_str() {
                    "none" => {}
                    "default" => seeds.extend(super::vm_fuzz::default_seeds()),
                    p => {
                        let p = PathBuf::from(p);
                        if p.is_dir() {
                            seeds.extend(super::vm_fuzz::files_under(&p));
                        } else if p.is_file() {
                            seeds.push(p);
                        } else {
                            return Err(anyhow!(
                                "--corpus {}: no such file or folder",
                                p.display()
                            ));
                        }
                    }
                }
            }
            let out = out.unwrap_or_else(|| {
                PathBuf::from("target/splitfuzz-vm-fuzz").join(super::fuzz::utc_stamp())
            });
            let o = vm_options(guest, timeout, false, keep)?;
            super::vm_fuzz::run(
                &o,
                &super::vm_fuzz::FuzzRequest {
                    seeds,
                    budget,
                    jobs: jobs as usize,
                    seed,
                    out,
                    minimize_runs,
                },
            )
        }
        VmCmd::Exec {
            binaries,
            guest,
            timeout,
        } => {
            if binaries.is_empty() {
                return Err(anyhow!("vm exec needs BINARY..."));
            }
            let o = vm_options(guest, timeout, false, None)?;
            vm_run::exec(&o, &binaries)
        }
        VmCmd::Guest => splitfuzz::vm::guest::guest_main(),
    }
}

/// The guest options of `vm run` and `vm exec`: the given bzImage or the
/// cached default kernel, this executable as the guest's runner.
fn vm_options(
    g: GuestArgs,
    timeout: u64,
    verbose: bool,
    keep: Option<PathBuf>,
) -> Result<VmOptions> {
    let GuestArgs {
        kernel,
        smp,
        memory,
        kvm,
    } = g;
    let kernel = match kernel {
        Some(k) => k,
        None => build::default_kernel().ok_or_else(|| {
            anyhow!("no kernel in the cache: run `splitfuzz vm build` (or give --kernel BZIMAGE)")
        })?,
    };
    Ok(VmOptions {
        kernel,
        exe: std::env::current_exe().map_err(|e| anyhow!("locating this executable: {e}"))?,
        timeout,
        smp,
        memory,
        kvm,
        verbose,
        keep,
    })
}
