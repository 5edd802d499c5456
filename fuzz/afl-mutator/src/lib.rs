//! AFL++ custom mutator library: the model's structure-aware mutator
//! (`splitfuzz::prog::mutate`, the one the built-in engine and libFuzzer use)
//! behind AFL++'s C interface (AFL++ docs/custom_mutators.md):
//! `afl_custom_init`, `afl_custom_fuzz`, `afl_custom_deinit`.
//!
//! ```sh
//! cargo build --release -p splitfuzz-afl-mutator      # in fuzz/
//! AFL_CUSTOM_MUTATOR_LIBRARY=fuzz/target/release/libsplitfuzz_afl_mutator.so cargo afl fuzz ...
//! ```
//!
//! Deterministic: the n-th call of an instance initialised with seed S
//! mutates with the seed derived from (S, n). AFL++ still runs its own
//! mutations as well unless AFL_CUSTOM_MUTATOR_ONLY is set.

use splitfuzz::prog::mutate::{crossover_bytes, mutate_bytes};
use std::os::raw::{c_uint, c_void};

/// Spare bytes past the longer input in the buffer handed to AFL++.
const SLACK: usize = 64;

/// One mutator instance (AFL++ keeps the pointer `afl_custom_init` returns).
pub struct State {
    seed: u64,
    calls: u64,
    out: Vec<u8>,
}

impl State {
    pub fn new(seed: u64) -> State {
        State {
            seed,
            calls: 0,
            out: Vec::new(),
        }
    }

    /// The next mutation of `buf` (`add`: another queue entry, for splices).
    pub fn fuzz(&mut self, buf: &[u8], add: &[u8], max_size: usize) -> &[u8] {
        self.calls += 1;
        let seed = self
            .seed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(self.calls);
        // One call in four: the ops of `buf`, then those of `add`.
        self.out = if self.calls.is_multiple_of(4) && !add.is_empty() {
            crossover_bytes(buf, add, seed, max_size)
        } else {
            mutate_bytes(buf, add, seed, max_size)
        };
        // Room up to the input's length (and a little more): AFL++ 4.40c's
        // FrameShift, unless AFL_FRAMESHIFT_DISABLE is set (the engine sets
        // it), writes into the returned buffer at offsets learned from the
        // input; a shorter output must not let those writes reach the heap
        // beyond it (AFL++ issue 2840).
        let room = buf.len().max(add.len()) + SLACK;
        self.out.reserve(room.saturating_sub(self.out.len()));
        &self.out
    }
}

/// # Safety
/// Called by AFL++ once, with its state pointer (unused) and a seed.
#[no_mangle]
pub unsafe extern "C" fn afl_custom_init(_afl: *mut c_void, seed: c_uint) -> *mut c_void {
    Box::into_raw(Box::new(State::new(seed as u64))) as *mut c_void
}

/// # Safety
/// `data` comes from `afl_custom_init`; `buf`/`add_buf` are valid for their
/// sizes (`add_buf` may be null); `*out_buf` points into `data` until the next call.
#[no_mangle]
pub unsafe extern "C" fn afl_custom_fuzz(
    data: *mut c_void,
    buf: *mut u8,
    buf_size: usize,
    out_buf: *mut *mut u8,
    add_buf: *mut u8,
    add_buf_size: usize,
    max_size: usize,
) -> usize {
    if data.is_null() || out_buf.is_null() {
        return 0;
    }
    let st = &mut *(data as *mut State);
    let input: &[u8] = if buf.is_null() {
        &[]
    } else {
        std::slice::from_raw_parts(buf, buf_size)
    };
    let add: &[u8] = if add_buf.is_null() {
        &[]
    } else {
        std::slice::from_raw_parts(add_buf, add_buf_size)
    };
    // Never unwind into C: a panic (there should be none) gives no mutation.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        st.fuzz(input, add, max_size).len()
    }));
    match r {
        Ok(n) => {
            *out_buf = st.out.as_mut_ptr();
            n
        }
        Err(_) => 0,
    }
}

/// # Safety
/// `data` comes from `afl_custom_init` and is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn afl_custom_deinit(data: *mut c_void) {
    if !data.is_null() {
        drop(Box::from_raw(data as *mut State));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_c_interface_mutates_deterministically_within_max_size() {
        let run = |seed| unsafe {
            let st = afl_custom_init(std::ptr::null_mut(), seed);
            let mut input = vec![3u8, 0, 3, 0, 0, 0, 0, 0, 15, 1, 4, 0, 0, 3, 1];
            let mut add = vec![0u8, 2, 3, 0, 0, 21, 0, 0, 7, 8];
            let mut outs = Vec::new();
            for _ in 0..50 {
                let mut out: *mut u8 = std::ptr::null_mut();
                let n = afl_custom_fuzz(
                    st,
                    input.as_mut_ptr(),
                    input.len(),
                    &mut out,
                    add.as_mut_ptr(),
                    add.len(),
                    40,
                );
                assert!(n <= 40);
                assert!(!out.is_null() || n == 0);
                outs.push(std::slice::from_raw_parts(out, n).to_vec());
            }
            afl_custom_deinit(st);
            outs
        };
        let a = run(5);
        assert_eq!(a, run(5), "same seed, same mutations");
        assert_ne!(a, run(6));
        let distinct: std::collections::BTreeSet<_> = a.iter().collect();
        assert!(distinct.len() > 30, "{} distinct of 50", distinct.len());
    }

    #[test]
    fn the_returned_buffer_has_room_for_the_input_length() {
        let mut st = State::new(9);
        let input: Vec<u8> = (0..200u8).collect();
        for _ in 0..50 {
            let n = st.fuzz(&input, &[], 400).len();
            assert!(st.out.capacity() >= input.len() + SLACK, "{n} bytes");
        }
    }

    #[test]
    fn a_null_add_buf_is_allowed() {
        unsafe {
            let st = afl_custom_init(std::ptr::null_mut(), 1);
            let mut input = vec![1u8, 2, 3];
            let mut out: *mut u8 = std::ptr::null_mut();
            let n = afl_custom_fuzz(
                st,
                input.as_mut_ptr(),
                3,
                &mut out,
                std::ptr::null_mut(),
                0,
                400,
            );
            assert!(n > 0);
            afl_custom_deinit(st);
        }
    }
}
