//! The one executor of ops as system calls. The host oracle (`real`), the
//! guest (`vm run`) and the tests run programs through it: each mm of a
//! program is a real process, driven op by op over pipes by the controller,
//! observing itself after every op in the observation-line format.
//!
//! * [`sys`]: the kernel interfaces (uAPI constants, uffd, io_uring, pagemap).
//! * [`probe`]: what this kernel can run.
//! * [`proc`] and [`op`]: one mm process, its observations and its ops.
//! * [`driver`]: the controller and the run it returns.
//! * [`limit`]: the memory cgroup of the memcg trigger.
//! * [`faults`]: our kernel patch's fault-plan interface.
//! * [`kcov`]: each op's kernel coverage (KCOV), for `vm fuzz`.

pub mod driver;
pub mod faults;
pub mod kcov;
pub mod limit;
pub mod op;
pub mod probe;
pub mod proc;
pub mod sys;

pub use driver::MemcgOpts;
pub use driver::{host_run, host_run_opts, ExecOpts, HostRun};
pub use probe::Host;
pub use sys::{ARENA_BASE, GUARD_HI, GUARD_LO};
