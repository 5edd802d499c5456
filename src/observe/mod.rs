//! Observations: the observation line every run reports after every op, the
//! model's side of a kernel run (in the kernel geometry), the comparison of two
//! transcripts, and the realisation of a fault plan as memory-cgroup limits.

pub mod compare;
pub mod line;
pub mod memcg;
pub mod model_run;

pub use compare::{first_divergence, model_divergence, Divergence};
pub use line::Transcript;
pub use model_run::{model_line, model_run, model_run_with, ModelRun};
