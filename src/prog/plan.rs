//! Fault plans: which calls of one allocation kind fail (part of every
//! program, so an input is its ops plus its failures).

use std::fmt;

/// The serialisable form of a fail policy (what programs carry).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Plan {
    #[default]
    Never,
    Nth(u32),
    At(Vec<u32>),
    From(u32),
    /// Op-scoped (the same on any kernel, whatever it allocates before):
    /// the `nth` call inside op `op`, or every call inside it (`nth` None).
    InOp {
        op: usize,
        nth: Option<u32>,
    },
    /// Op-scoped: every call from op `0` on.
    FromOp(usize),
}

impl Plan {
    pub fn is_never(&self) -> bool {
        matches!(self, Plan::Never)
    }

    /// Counted per op rather than over the whole program.
    pub fn is_op_scoped(&self) -> bool {
        self.scoped_op().is_some()
    }

    /// The op an op-scoped plan starts failing in.
    pub fn scoped_op(&self) -> Option<usize> {
        match self {
            Plan::InOp { op, .. } | Plan::FromOp(op) => Some(*op),
            _ => None,
        }
    }

    /// For an op-scoped plan: the plan to arm while op `i` runs (counted
    /// from the op's first call) in the kernel's program-wide counting, or
    /// None to disarm; and whether it stays armed after the op.
    pub fn armed_in_op(&self, i: usize) -> Option<(Plan, bool)> {
        match self {
            Plan::InOp { op, nth } if *op == i => Some((
                match nth {
                    Some(k) => Plan::Nth(*k),
                    None => Plan::From(1),
                },
                false,
            )),
            Plan::FromOp(op) if i >= *op => Some((Plan::From(1), true)),
            _ => None,
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Plan::Never => write!(f, "never"),
            Plan::Nth(n) => write!(f, "nth={n}"),
            Plan::At(v) => write!(
                f,
                "at={}",
                v.iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Plan::From(n) => write!(f, "from={n}"),
            Plan::InOp { op, nth: Some(k) } => write!(f, "op={op}:nth={k}"),
            Plan::InOp { op, nth: None } => write!(f, "op={op}:all"),
            Plan::FromOp(op) => write!(f, "from-op={op}"),
        }
    }
}
