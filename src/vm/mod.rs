//! The real kernel in a VM (`splitfuzz vm ...`).
//!
//! * [`build`]: `vm build`, a guest kernel from the pinned Debian source or a
//!   user's tree, with our fault-plan patch (kernel/patches/), cached.
//! * [`initramfs`]: busybox + this splitfuzz binary (with its shared
//!   libraries) + the batch's programs.
//! * [`guest`]: `vm guest`, inside the guest: the shared executor
//!   (`real::host_run_opts`) with fault plans armed.
//! * [`run`]: `vm run`, QEMU and the comparison with the model.

pub mod batch;
pub mod build;
pub mod console;
pub mod guest;
pub mod initramfs;
pub mod judge;
pub mod protocol;
pub mod qemu;
pub mod run;

use anyhow::{anyhow, Result};
use std::path::PathBuf;
use std::process::ExitCode;

/// How `vm run` (and `emit-c`) realise a program's fault plan.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Fault injection through our kernel patch (/sys/kernel/debug/splitfuzz).
    Inject,
    /// A memory-cgroup limit during the ops that hold the planned failures.
    Memcg,
}

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
        /// Generate N programs (every op, with fault plans) instead.
        #[arg(long)]
        generate: Option<usize>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// The bzImage (default: the cached kernel `vm build` makes with no arguments).
        #[arg(long)]
        kernel: Option<PathBuf>,
        /// Model policy (default: each file's policy line, else deposit).
        #[arg(long)]
        policy: Option<String>,
        /// Seconds an op may take before it counts as hung.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
        #[arg(long, default_value_t = 2)]
        smp: u32,
        #[arg(long, default_value = "2G")]
        memory: String,
        /// Use KVM instead of TCG (guests crash under KVM on some machines).
        #[arg(long)]
        kvm: bool,
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
    /// Run executables in the guest (e.g. `emit-c` reproducers built here,
    /// with their shared libraries) and print their output; exit 1 unless
    /// every one exits 0.
    Exec {
        binaries: Vec<PathBuf>,
        /// The bzImage (default: the cached kernel `vm build` makes with no arguments).
        #[arg(long)]
        kernel: Option<PathBuf>,
        /// Seconds each executable may run.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        #[arg(long, default_value_t = 2)]
        smp: u32,
        #[arg(long, default_value = "2G")]
        memory: String,
        #[arg(long)]
        kvm: bool,
    },
    /// (inside the guest) run /programs.txt; started by the initramfs.
    #[command(hide = true)]
    Guest,
}

pub fn vm_main(cmd: VmCmd) -> Result<ExitCode> {
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
            generate,
            seed,
            kernel,
            policy,
            timeout,
            smp,
            memory,
            kvm,
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
            let o = vm_options(kernel, timeout, smp, memory, kvm, verbose, keep)?;
            run::vm_run_main(
                &o,
                &run::RunRequest {
                    files,
                    generate,
                    seed,
                    policy,
                    memcg: trigger == Trigger::Memcg,
                    run_inexpressible,
                },
            )
        }
        VmCmd::Exec {
            binaries,
            kernel,
            timeout,
            smp,
            memory,
            kvm,
        } => {
            if binaries.is_empty() {
                return Err(anyhow!("vm exec needs BINARY..."));
            }
            let o = vm_options(kernel, timeout, smp, memory, kvm, false, None)?;
            run::vm_exec_main(&o, &binaries)
        }
        VmCmd::Guest => guest::guest_main(),
    }
}

/// The guest options of `vm run` and `vm exec`: the given bzImage or the
/// cached default kernel, this executable as the guest's runner.
fn vm_options(
    kernel: Option<PathBuf>,
    timeout: u64,
    smp: u32,
    memory: String,
    kvm: bool,
    verbose: bool,
    keep: Option<PathBuf>,
) -> Result<qemu::VmOptions> {
    let kernel = match kernel {
        Some(k) => k,
        None => build::default_kernel().ok_or_else(|| {
            anyhow!("no kernel in the cache: run `splitfuzz vm build` (or give --kernel BZIMAGE)")
        })?,
    };
    Ok(qemu::VmOptions {
        kernel,
        exe: std::env::current_exe().map_err(|e| anyhow!("locating this executable: {e}"))?,
        timeout: timeout.max(1),
        smp: smp.max(1),
        memory,
        kvm,
        verbose,
        keep,
    })
}
