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
}

impl Plan {
    pub fn is_never(&self) -> bool {
        matches!(self, Plan::Never)
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
        }
    }
}
