//! The subcommands of the binary, one file each (the library has no CLI types).

pub mod real;
