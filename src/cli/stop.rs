//! SIGINT and SIGTERM end a long subcommand (`fuzz`, `engine`, `continuous`)
//! cleanly: the handler sets [`STOP`], the subcommand winds down and prints
//! its tables; a second signal kills the process the default way.

use anyhow::{Context, Result};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// Set by the first SIGINT or SIGTERM.
pub static STOP: AtomicBool = AtomicBool::new(false);
static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop_signal(sig: nix::libc::c_int) {
    // Async-signal-safe: two atomic stores. SA_RESETHAND makes a second signal
    // kill the process the default way.
    SIGNAL.store(sig, Ordering::SeqCst);
    STOP.store(true, Ordering::SeqCst);
}

/// SIGINT and SIGTERM set [`STOP`] (see `on_stop_signal`).
pub fn install() -> Result<()> {
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

/// Whether a stop signal came.
pub fn stopped() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// The signal that stopped the run: "SIGINT" or "SIGTERM".
pub fn signal_name() -> &'static str {
    match SIGNAL.load(Ordering::SeqCst) {
        s if s == nix::libc::SIGTERM => "SIGTERM",
        _ => "SIGINT",
    }
}
