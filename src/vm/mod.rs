//! The real kernel in a VM (`splitfuzz vm ...`).
//!
//! * [`build`]: `vm build`, a guest kernel from the pinned Debian source or a
//!   user's tree, with our fault-plan patch (kernel/patches/), cached.
//! * [`initramfs`]: busybox + this splitfuzz binary (with its shared
//!   libraries) + the batch's programs.
//! * [`guest`]: `vm guest`, inside the guest: the shared executor
//!   (`real::host_run_opts`) with fault plans armed.
//! * [`protocol`]: the one typed protocol between host and guest.
//! * [`qemu`]: boot a guest, read its serial ports.
//! * [`batch`]: a batch of programs (or `vm exec`'s executables) in the guest.
//! * [`console`]: the kernel log: complaints, attributed to ops.
//! * [`judge`]: one program's guest run judged against the model.
//! * [`fuzz`]: `vm fuzz`, kernel coverage as feedback, the contract as oracle.
//! * [`kcov_map`]: kernel PCs to functions (System.map), the coverage report.
//!
//! The `vm` subcommands' arguments and output are the binary's (src/cli/vm.rs).

pub mod batch;
pub mod build;
pub mod check;
pub mod console;
pub mod fuzz;
pub mod guest;
pub mod initramfs;
pub mod judge;
pub mod kcov_map;
pub mod protocol;
pub mod qemu;
