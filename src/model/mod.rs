//! The model: the mm state machine (`mm/`, one module per kernel file, the
//! kernel's function names), the policy presets that say how each split caller
//! handles a failed split, the allocator's fault injection, and the names of
//! the model's coverage points.

pub mod alloc;
pub mod coverage;
pub mod mm;
pub mod policy;
