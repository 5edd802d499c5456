#!/usr/bin/env bash
# HTML coverage report of the model (src/) reached by a target's corpus.
#
#   scripts/coverage.sh TARGET [CORPUS_DIR]
#
#   TARGET      lazy_v1 | lazy_v2 | lazy_v3 | lazy_fixed | deposit | decode
#   CORPUS_DIR  default corpus/TARGET (e.g. fuzz/continuous/corpus/TARGET for the
#               grown corpus of `splitfuzz continuous`)
# Runs `cargo +nightly fuzz coverage TARGET CORPUS` (coverage-instrumented build,
# every input once, merged profile) and `llvm-cov show -format=html` into
# fuzz/coverage/TARGET/html/index.html, plus a per-file summary on stdout.
# llvm-cov must match nightly's LLVM: the script uses the llvm-tools-preview
# component of the nightly toolchain (`rustup component add --toolchain nightly
# llvm-tools-preview`, added automatically if missing), else LLVM_COV/LLVM_PROFDATA.
set -uo pipefail
[ $# -ge 1 ] || { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
T=$1
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CORPUS=${2:-$ROOT/corpus/$T}
CORPUS=$(cd "$CORPUS" && pwd) || exit 2
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
log() { printf '[coverage] %s\n' "$*" >&2; }
cargo +nightly fuzz --version >/dev/null 2>&1 || { log "needs cargo-fuzz and nightly: scripts/install-engines.sh libfuzzer"; exit 2; }

SYSROOT=$(rustc +nightly --print sysroot)
TRIPLE=$(rustc +nightly -vV | sed -n 's/^host: //p')
TOOLS=$SYSROOT/lib/rustlib/$TRIPLE/bin
if [ -z "${LLVM_COV:-}" ] && [ ! -x "$TOOLS/llvm-cov" ]; then
  log "adding llvm-tools-preview to nightly"
  rustup component add --toolchain nightly llvm-tools-preview >&2 || true
fi
LLVM_COV=${LLVM_COV:-$TOOLS/llvm-cov}
[ -x "$LLVM_COV" ] || { log "no llvm-cov matching nightly's LLVM (set LLVM_COV, or add llvm-tools-preview)"; exit 2; }

log "cargo +nightly fuzz coverage $T $CORPUS ($(ls "$CORPUS" | wc -l) inputs)"
# A violating input (lazy_v1/lazy_v3 crash files) aborts its run but the
# profile of the other inputs is still merged.
(cd "$ROOT/fuzz" && cargo +nightly fuzz coverage "$T" "$CORPUS") || { log "cargo fuzz coverage failed"; exit 1; }
PROF=$ROOT/fuzz/coverage/$T/coverage.profdata
BIN=$ROOT/fuzz/target/$TRIPLE/coverage/$TRIPLE/release/$T
[ -f "$PROF" ] || { log "no profile at $PROF"; exit 1; }
[ -x "$BIN" ] || BIN=$(find "$ROOT/fuzz/target/$TRIPLE/coverage" -type f -name "$T" -perm -u+x | head -1)
OUT=$ROOT/fuzz/coverage/$T/html
rm -rf "$OUT"
"$LLVM_COV" show "$BIN" -instr-profile="$PROF" -format=html -output-dir="$OUT" \
  -show-line-counts-or-regions -ignore-filename-regex='/.cargo/|/rustc/|/fuzz/' || exit 1
"$LLVM_COV" report "$BIN" -instr-profile="$PROF" -ignore-filename-regex='/.cargo/|/rustc/|/fuzz/' \
  | sed "s|$ROOT/||"
log "HTML report: $OUT/index.html"
