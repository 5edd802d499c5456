//! The ground floor: the violation vocabulary and the geometry. Nothing here
//! imports anything else of the crate; every other folder may import it.

pub mod caller;
pub mod geometry;
pub mod violation;

pub use geometry::*;
pub use violation::{Invariant, Severity, Violation};
