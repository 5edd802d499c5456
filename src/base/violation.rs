//! The violation vocabulary every layer speaks: which invariant broke, how much
//! it hurts a user of the kernel, and where. Imports nothing of the crate.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Invariant {
    TableConservation,
    NrPtes,
    DepositPairing,
    NoSilentSkip,
    VmaContainment,
    Rss,
    FolioCounts,
    HugeZero,
    CleanTeardown,
    NoLivelock,
    KernelAssertion,
    ErrnoContract,
}

impl Invariant {
    pub const ALL: [Invariant; 12] = [
        Invariant::TableConservation,
        Invariant::NrPtes,
        Invariant::DepositPairing,
        Invariant::NoSilentSkip,
        Invariant::VmaContainment,
        Invariant::Rss,
        Invariant::FolioCounts,
        Invariant::HugeZero,
        Invariant::CleanTeardown,
        Invariant::NoLivelock,
        Invariant::KernelAssertion,
        Invariant::ErrnoContract,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Invariant::TableConservation => "table-conservation",
            Invariant::NrPtes => "nr-ptes",
            Invariant::DepositPairing => "deposit-pairing",
            Invariant::NoSilentSkip => "no-silent-skip",
            Invariant::VmaContainment => "vma-containment",
            Invariant::Rss => "rss",
            Invariant::FolioCounts => "folio-counts",
            Invariant::HugeZero => "huge-zero",
            Invariant::CleanTeardown => "clean-teardown",
            Invariant::NoLivelock => "no-livelock",
            Invariant::KernelAssertion => "kernel-assertion",
            Invariant::ErrnoContract => "errno-contract",
        }
    }
    pub fn from_name(s: &str) -> Option<Invariant> {
        Invariant::ALL.iter().copied().find(|i| i.name() == s)
    }
}

/// How much a violation hurts a user of the kernel, worst first (the order the
/// findings tables sort by).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// A BUG/oops/"bad pmd": the kernel stops or corrupts its own state.
    Crash,
    /// A syscall reports success but memory keeps old data or loses data.
    DataLoss,
    /// A kernel loop that never returns to user mode and has no fatal-signal
    /// check: SIGKILL does not end it.
    UnkillableLoop,
    /// A loop through user mode (a fault that returns and refaults, or
    /// `restart_syscall()`): SIGKILL ends it.
    KillableLoop,
    /// Page tables, folios or counters leak or drift ("Bad rss-counter"), or
    /// a mapping the call reported removed stays (empty).
    Leak,
    /// The syscall fails, but with an error code its contract does not allow.
    WrongErrno,
}

impl Severity {
    pub const ALL: [Severity; 6] = [
        Severity::Crash,
        Severity::DataLoss,
        Severity::UnkillableLoop,
        Severity::KillableLoop,
        Severity::Leak,
        Severity::WrongErrno,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Severity::Crash => "crash",
            Severity::DataLoss => "data-loss",
            Severity::UnkillableLoop => "unkillable-loop",
            Severity::KillableLoop => "killable-loop",
            Severity::Leak => "leak",
            Severity::WrongErrno => "wrong-errno",
        }
    }
    pub fn from_name(s: &str) -> Option<Severity> {
        Severity::ALL.iter().copied().find(|x| x.name() == s)
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Invariant {
    /// The severity a violation of this invariant has unless its site says
    /// otherwise (a double free is a crash, a livelock may be killable).
    pub fn default_severity(self) -> Severity {
        match self {
            Invariant::KernelAssertion | Invariant::VmaContainment => Severity::Crash,
            Invariant::NoSilentSkip => Severity::DataLoss,
            Invariant::NoLivelock => Severity::UnkillableLoop,
            Invariant::ErrnoContract => Severity::WrongErrno,
            Invariant::TableConservation
            | Invariant::NrPtes
            | Invariant::DepositPairing
            | Invariant::Rss
            | Invariant::FolioCounts
            | Invariant::HugeZero
            | Invariant::CleanTeardown => Severity::Leak,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub invariant: Invariant,
    pub severity: Severity,
    /// The kernel function the violation is due to.
    pub function: String,
    /// Index of the op (== number of ops for the implicit exit at the end).
    pub op_index: usize,
    pub mm: usize,
    /// Arena address in the kernel geometry.
    pub addr: u64,
    pub message: String,
}

impl Violation {
    pub fn with_severity(mut self, s: Severity) -> Violation {
        self.severity = s;
        self
    }
    /// What findings are deduplicated on.
    pub fn signature(&self) -> String {
        format!("{} {}", self.invariant.name(), self.function)
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "VIOLATION {} in {} [{}] (op #{}, mm {}, addr {:#x}): {}",
            self.invariant.name(),
            self.function,
            self.severity,
            self.op_index,
            self.mm,
            self.addr,
            self.message
        )
    }
}
