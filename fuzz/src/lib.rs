//! Shared code of the splitfuzz fuzz targets.
//!
//! Every target under `fuzz_targets/` is one line: [`target!`] plus a call to
//! [`check`] (a policy) or [`check_decode`] (the byte/text formats). The engine
//! is picked by a Cargo feature, exactly one at a time:
//!
//! * `libfuzzer` (default): `cargo +nightly fuzz run TARGET` (cargo-fuzz);
//! * `afl`: `cargo afl build --no-default-features --features afl` (cargo-afl, AFL++);
//! * `honggfuzz`: `HFUZZ_BUILD_ARGS="--no-default-features --features honggfuzz" cargo hfuzz run TARGET`;
//! * none (`--no-default-features`): a plain replay binary,
//!   `cargo run --release --no-default-features --bin TARGET -- FILE|DIR...`
//!   (no argument: one input from stdin).
//!
//! A violation panics with the violation's one-line message, which each engine
//! records as a crash.
//!
//! Mutation: under libFuzzer every target uses the model's structure-aware
//! mutator (the built-in engine's, `splitfuzz::prog::mutate`) as its custom
//! mutator and crossover; AFL++ loads the same mutator from the
//! `splitfuzz-afl-mutator` library (`afl-mutator/`, AFL_CUSTOM_MUTATOR_LIBRARY);
//! honggfuzz has no custom mutator interface and gets the dictionary only
//! (`dict/bytes.dict`, made from the code: see `splitfuzz::engines::dict`).

use splitfuzz::prog::{encode, Program};
use splitfuzz::run::{run_program, RunConfig};
use splitfuzz::{Geometry, Policy};
use std::sync::OnceLock;

pub use splitfuzz::Preset;

#[cfg(feature = "afl")]
#[doc(hidden)]
pub use afl;
#[cfg(feature = "honggfuzz")]
#[doc(hidden)]
pub use honggfuzz;
#[cfg(feature = "libfuzzer")]
#[doc(hidden)]
pub use libfuzzer_sys;

#[cfg(any(
    all(feature = "libfuzzer", feature = "afl"),
    all(feature = "libfuzzer", feature = "honggfuzz"),
    all(feature = "afl", feature = "honggfuzz"),
))]
compile_error!(
    "enable at most one engine feature (libfuzzer, afl, honggfuzz); \
     pass --no-default-features together with --features afl or --features honggfuzz"
);

fn config(preset: Preset) -> &'static RunConfig {
    static CFGS: [OnceLock<RunConfig>; Preset::ALL.len()] =
        [const { OnceLock::new() }; Preset::ALL.len()];
    let i = Preset::ALL.iter().position(|p| *p == preset).unwrap_or(0);
    CFGS[i].get_or_init(|| RunConfig::new(Policy::preset(preset), Geometry::SMALL))
}

/// Run raw fuzzer bytes under `preset` (small geometry); panic on a violation
/// (unless its signature is one [`ignored`] names).
pub fn check(preset: Preset, data: &[u8]) {
    let out = run_program(data, config(preset));
    if let Some(v) = out.violation {
        if !ignored(&v.signature()) {
            panic!("{v}");
        }
    }
}

/// Signatures not to report as crashes: the lines (`INVARIANT FUNCTION`) of
/// the file named by `SPLITFUZZ_IGNORE_FILE`, read again when it changes
/// (looked at every 256 calls). For measuring the time to *each* signature
/// (scripts/bench_engines.py writes the signatures found so far there): an
/// engine that keeps crashing on the first finding spends its time
/// restarting (libFuzzer's fork mode starts a new job per crash). Without the
/// variable every violation is a crash. The verdict itself is unchanged.
pub fn ignored(signature: &str) -> bool {
    use std::sync::Mutex;
    type Cache = (u64, Option<std::time::SystemTime>, Vec<String>);
    static FILE: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
    static CACHE: Mutex<Cache> = Mutex::new((0, None, Vec::new()));
    let Some(path) = FILE.get_or_init(|| std::env::var_os("SPLITFUZZ_IGNORE_FILE").map(Into::into))
    else {
        return false;
    };
    let mut c = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    c.0 += 1;
    if c.0 % 256 == 1 {
        let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        if mtime != c.1 {
            c.1 = mtime;
            c.2 = std::fs::read_to_string(path)
                .unwrap_or_default()
                .lines()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect();
        }
    }
    c.2.iter().any(|s| s == signature)
}

/// The formats round-trip: decode → to_text → parse gives the same program,
/// and encode of the decoded program decodes back to it. Panics otherwise.
pub fn check_decode(data: &[u8]) {
    let prog = Program::decode(data);
    let text = prog.to_text();
    match Program::parse(&text) {
        Ok(back) if back == prog => {}
        Ok(back) => panic!(
            "decode/to_text/parse round trip differs:\n--- decoded\n{text}--- parsed back\n{}",
            back.to_text()
        ),
        Err(e) => panic!("to_text output does not parse: {e}\n{text}"),
    }
    match encode(&prog) {
        Ok(bytes) => {
            let again = Program::decode(&bytes);
            if again != prog {
                panic!(
                    "encode/decode round trip differs:\n--- decoded\n{text}--- re-decoded\n{}",
                    again.to_text()
                );
            }
        }
        Err(e) => panic!("encode of a decoded program failed: {e}\n{text}"),
    }
}

/// The no-engine `main`: run each file (or each file of each directory) given
/// on the command line, or stdin when there is none. A violation panics (exit
/// 101) after naming the input.
pub fn replay_main(f: fn(&[u8])) {
    let args: Vec<std::path::PathBuf> = std::env::args_os().skip(1).map(Into::into).collect();
    if args.is_empty() {
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut data).expect("cannot read stdin");
        f(&data);
        println!("<stdin>: ok");
        return;
    }
    let mut files = Vec::new();
    for a in args {
        if a.is_dir() {
            let mut v: Vec<_> = std::fs::read_dir(&a)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", a.display()))
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            v.sort();
            files.extend(v);
        } else {
            files.push(a);
        }
    }
    for p in &files {
        let data = std::fs::read(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
        eprintln!("{}: running ({} bytes)", p.display(), data.len());
        f(&data);
        println!("{}: ok", p.display());
    }
}

/// The libFuzzer custom mutator: the model's structure-aware mutator
/// (`splitfuzz::prog::mutate`, the built-in engine's), one seed per call; one
/// call in four is libFuzzer's own mutation instead (its dictionary and
/// comparison-guided changes). Writes the result into `data`, returns its size.
#[cfg(feature = "libfuzzer")]
pub fn custom_mutate(data: &mut [u8], size: usize, max_size: usize, seed: u32) -> usize {
    if seed % 4 == 0 {
        return libfuzzer_sys::fuzzer_mutate(data, size, max_size);
    }
    let out = splitfuzz::prog::mutate::mutate_bytes(&data[..size], &[], seed as u64, max_size);
    data[..out.len()].copy_from_slice(&out);
    out.len()
}

/// The libFuzzer custom crossover: ops of one input, then ops of the other
/// (`splitfuzz::prog::mutate::crossover_bytes`).
pub fn custom_crossover(a: &[u8], b: &[u8], out: &mut [u8], seed: u32) -> usize {
    let v = splitfuzz::prog::mutate::crossover_bytes(a, b, seed as u64, out.len());
    out[..v.len()].copy_from_slice(&v);
    v.len()
}

/// Define the target's entry point for the enabled engine.
///
/// ```ignore
/// #![cfg_attr(feature = "libfuzzer", no_main)]
/// splitfuzz_fuzz::target!(|data| splitfuzz_fuzz::check(splitfuzz_fuzz::Preset::LazyV1, data));
/// ```
#[macro_export]
macro_rules! target {
    (|$data:ident| $body:expr) => {
        #[cfg(feature = "libfuzzer")]
        $crate::libfuzzer_sys::fuzz_target!(|$data: &[u8]| {
            $body;
        });
        #[cfg(feature = "libfuzzer")]
        $crate::libfuzzer_sys::fuzz_mutator!(|data: &mut [u8],
                                              size: usize,
                                              max_size: usize,
                                              seed: u32| {
            $crate::custom_mutate(data, size, max_size, seed)
        });
        #[cfg(feature = "libfuzzer")]
        $crate::libfuzzer_sys::fuzz_crossover!(|a: &[u8], b: &[u8], out: &mut [u8], seed: u32| {
            $crate::custom_crossover(a, b, out, seed)
        });

        #[cfg(feature = "afl")]
        fn main() {
            $crate::afl::fuzz!(|$data: &[u8]| {
                $body;
            });
        }

        #[cfg(feature = "honggfuzz")]
        fn main() {
            loop {
                $crate::honggfuzz::fuzz!(|$data: &[u8]| {
                    $body;
                });
            }
        }

        #[cfg(not(any(feature = "libfuzzer", feature = "afl", feature = "honggfuzz")))]
        fn main() {
            fn run($data: &[u8]) {
                $body;
            }
            $crate::replay_main(run);
        }
    };
}
