//! Observations: the model's side of a kernel run (observation lines in the
//! kernel geometry), their comparison with a kernel's, and the realisation of
//! a fault plan as memory-cgroup limits.

pub mod memcg;
