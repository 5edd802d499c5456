#!/bin/bash -eu
# ClusterFuzzLite / OSS-Fuzz build script (OSS-Fuzz-compatible).
#
# Builds every cargo-fuzz target of fuzz/ except `empty` (the benchmark
# baseline) into $OUT and zips corpus/<target>/ as $OUT/<target>_seed_corpus.zip.
# In the base-builder-rust image `cargo` is nightly and `cargo fuzz build -O`
# picks up $SANITIZER and the OSS-Fuzz RUSTFLAGS. Locally (no docker):
#   SRC=$(mktemp -d) OUT=$(mktemp -d) CARGO="cargo +nightly" \
#     SPLITFUZZ_DIR=$PWD bash .clusterfuzzlite/build.sh
# Note: lazy_v1 and lazy_v3 fuzz RFC versions of the patch series with known
# violations (crashes/), so they report crashes by design; deposit, lazy_fixed
# and decode are expected to stay clean.
SPLITFUZZ_DIR=${SPLITFUZZ_DIR:-$SRC/splitfuzz}
CARGO=${CARGO:-cargo}
TARGETS="lazy_v1 lazy_v2 lazy_v3 lazy_fixed deposit decode"
cd "$SPLITFUZZ_DIR"

SAN_ARGS=()
# OSS-Fuzz sets SANITIZER (address, undefined, coverage, ...); cargo fuzz knows
# address/memory/thread/leak/none. Coverage builds are instrumented via RUSTFLAGS.
case "${SANITIZER:-address}" in
  address|memory|thread|leak) SAN_ARGS=(-s "$SANITIZER") ;;
  *) SAN_ARGS=(-s none) ;;
esac
TRIPLE=$(rustc -vV | sed -n 's/^host: //p')
for t in $TARGETS; do
  (cd fuzz && $CARGO fuzz build -O "${SAN_ARGS[@]}" "$t")
  cp "fuzz/target/$TRIPLE/release/$t" "$OUT/$t"
  if [ -d "corpus/$t" ] && [ -n "$(ls -A "corpus/$t")" ]; then
    rm -f "$OUT/${t}_seed_corpus.zip"
    (cd "corpus/$t" && zip -q -j "$OUT/${t}_seed_corpus.zip" ./*)
  fi
done
ls -la "$OUT"
