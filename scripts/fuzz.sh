#!/usr/bin/env bash
# One bounded fuzzing run of one target with one engine.
#
#   scripts/fuzz.sh ENGINE TARGET SECONDS
#
#   ENGINE   libfuzzer | afl | honggfuzz | builtin
#   TARGET   lazy_v1 | lazy_v2 | lazy_v3 | lazy_fixed | deposit | decode   (builtin: not decode)
#   SECONDS  wall-clock budget of the fuzzing itself (builds come on top)
#
# Seeds: corpus/<TARGET>/ at the repository root, when present, is given to
# libfuzzer/afl/honggfuzz (the builtin engine generates its own inputs).
# Outputs (all git-ignored, under fuzz/):
#   libfuzzer  fuzz/corpus/<T>/ (working corpus)   fuzz/artifacts/<T>/crash-*
#   afl        fuzz/afl-out/<T>/default/{queue,crashes}/
#   honggfuzz  fuzz/hfuzz_workspace/<T>/*.fuzz     (crashes)
#   builtin    fuzz/artifacts/builtin/<policy>/*.txt (+ .bin), minimized
# After the run the engine's crash folder is read (AFL++ and honggfuzz exit 0
# even after crashes): every crash file written by this run is printed, and the
# script exits 1 if there is one, 0 if none, 2 on a usage or build error.
# Replay any of them with scripts/repro.sh FILE.
#
# Environment:
#   SANITIZER=none      libfuzzer: cargo fuzz -s (none, address, ...); default none
#   TOOLCHAIN=nightly   toolchain for cargo-fuzz (needs nightly)
#   JOBS=1              builtin: --jobs
#   ENGINE_ARGS=...     extra arguments for the engine (libFuzzer -flags, afl-fuzz
#                       options, honggfuzz options, builtin fuzz options)
set -uo pipefail

usage() {
  sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
[ $# -eq 3 ] || usage
ENGINE=$1 TARGET=$2 SECS=$3
case "$SECS" in ''|*[!0-9]*) echo "fuzz.sh: SECONDS must be a whole number" >&2; exit 2 ;; esac
[ "$SECS" -gt 0 ] || { echo "fuzz.sh: SECONDS must be > 0" >&2; exit 2; }

case "$TARGET" in
  lazy_v1) POLICY=lazy-v1 ;;
  lazy_v2) POLICY=lazy-v2 ;;
  lazy_v3) POLICY=lazy-v3 ;;
  lazy_fixed) POLICY=lazy-fixed ;;
  deposit) POLICY=deposit ;;
  decode) POLICY= ;;
  *) echo "fuzz.sh: unknown target '$TARGET' (lazy_v1 lazy_v2 lazy_v3 lazy_fixed deposit decode)" >&2; exit 2 ;;
esac

ROOT=$(cd "$(dirname "$0")/.." && pwd)
FUZZ=$ROOT/fuzz
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
SEEDS=$ROOT/corpus/$TARGET
[ -d "$SEEDS" ] && [ -n "$(ls -A "$SEEDS" 2>/dev/null)" ] || SEEDS=
read -r -a EXTRA <<< "${ENGINE_ARGS:-}"

log() { printf '[fuzz.sh] %s\n' "$*" >&2; }
need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  log "$1 not found: run scripts/install-engines.sh $2"
  exit 2
}

# Crash files are those written after this marker.
MARK=$(mktemp)
trap 'rm -f "$MARK"' EXIT
sleep 1 # coarse mtimes: anything written from now on is strictly newer

CRASH_DIR= CRASH_GLOB=
rc=0
case "$ENGINE" in
  libfuzzer)
    need cargo-fuzz libfuzzer
    TC=${TOOLCHAIN:-nightly} SAN=${SANITIZER:-none}
    mkdir -p "$FUZZ/corpus/$TARGET" "$FUZZ/artifacts/$TARGET"
    CRASH_DIR=$FUZZ/artifacts/$TARGET CRASH_GLOB='crash-*'
    log "libfuzzer: cargo +$TC fuzz run -s $SAN $TARGET for ${SECS}s${SEEDS:+ (seeds $SEEDS)}"
    (cd "$FUZZ" && cargo "+$TC" fuzz build -s "$SAN" "$TARGET") || { log "build failed"; exit 2; }
    (cd "$FUZZ" && cargo "+$TC" fuzz run -s "$SAN" "$TARGET" "corpus/$TARGET" ${SEEDS:+"$SEEDS"} -- \
        -max_total_time="$SECS" -print_final_stats=1 ${EXTRA[@]+"${EXTRA[@]}"})
    rc=$?
    ;;
  afl)
    need cargo-afl afl
    BIN_DIR=$FUZZ/target/afl
    OUT=$FUZZ/afl-out/$TARGET
    CRASH_DIR=$OUT/default/crashes CRASH_GLOB='id:*'
    log "afl: cargo afl build --release --no-default-features --features afl --bin $TARGET"
    (cd "$FUZZ" && CARGO_TARGET_DIR=$BIN_DIR cargo afl build --release \
        --no-default-features --features afl --bin "$TARGET") || { log "build failed"; exit 2; }
    IN=$SEEDS
    if [ -z "$IN" ]; then
      # afl-fuzz needs at least one seed; a few bytes that decode to a program.
      IN=$FUZZ/afl-out/.seed-$TARGET
      mkdir -p "$IN"
      printf '\x03\x00\x03\x00\x00\x00\x00\x1f\x01\x04\x00\x00\x1f\x01' > "$IN/seed"
    fi
    mkdir -p "$OUT"
    log "afl: cargo afl fuzz -V $SECS -i $IN -o $OUT (AFL_AUTORESUME=1: a second run resumes)"
    (cd "$FUZZ" && AFL_NO_UI=1 AFL_AUTORESUME=1 AFL_SKIP_CPUFREQ=1 \
        AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=${AFL_NO_AFFINITY:-1} \
        cargo afl fuzz -V "$SECS" -i "$IN" -o "$OUT" ${EXTRA[@]+"${EXTRA[@]}"} "$BIN_DIR/release/$TARGET")
    rc=$?
    ;;
  honggfuzz)
    need cargo-hfuzz honggfuzz
    WS=$FUZZ/hfuzz_workspace
    CRASH_DIR=$WS/$TARGET CRASH_GLOB='*.fuzz'
    mkdir -p "$WS/$TARGET/input"
    [ -n "$SEEDS" ] && cp -n "$SEEDS"/* "$WS/$TARGET/input/" 2>/dev/null
    log "honggfuzz: cargo hfuzz run $TARGET for ${SECS}s${SEEDS:+ (seeds $SEEDS)}"
    (cd "$FUZZ" && HFUZZ_WORKSPACE=$WS \
        HFUZZ_BUILD_ARGS="--no-default-features --features honggfuzz ${HFUZZ_BUILD_ARGS:-}" \
        HFUZZ_RUN_ARGS="--run_time $SECS -n ${JOBS:-1} --verbose ${EXTRA[*]:-} ${HFUZZ_RUN_ARGS:-}" \
        cargo hfuzz run "$TARGET" </dev/null)
    rc=$?
    ;;
  builtin)
    [ -n "$POLICY" ] || { echo "fuzz.sh: the builtin engine has no '$TARGET' target (use a policy target)" >&2; exit 2; }
    CRASH_DIR=$FUZZ/artifacts/builtin/$POLICY CRASH_GLOB='*.txt'
    [ -n "$SEEDS" ] && log "builtin: the builtin engine takes no seeds; ignoring $SEEDS"
    log "builtin: cargo run --release -- fuzz --policy $POLICY --time ${SECS}s"
    (cd "$ROOT" && cargo run --release -- fuzz --policy "$POLICY" --time "${SECS}s" \
        --jobs "${JOBS:-1}" --crashes "$FUZZ/artifacts/builtin" --quiet ${EXTRA[@]+"${EXTRA[@]}"})
    rc=$?
    ;;
  *) echo "fuzz.sh: unknown engine '$ENGINE' (libfuzzer afl honggfuzz builtin)" >&2; exit 2 ;;
esac

log "$ENGINE exited with status $rc; reading $CRASH_DIR"
crashes=()
if [ -d "$CRASH_DIR" ]; then
  while IFS= read -r -d '' f; do crashes+=("$f"); done < <(
    find "$CRASH_DIR" -maxdepth 1 -type f -name "$CRASH_GLOB" -newer "$MARK" -print0 | sort -z)
fi
if [ "${#crashes[@]}" -gt 0 ]; then
  echo "CRASHES: ${#crashes[@]} new crash file(s) from $ENGINE/$TARGET:"
  for f in "${crashes[@]}"; do echo "  $f"; done
  echo "replay: scripts/repro.sh FILE"
  exit 1
fi
# An engine that failed without leaving a crash file (e.g. a build or setup
# problem) is an error, not a clean run.
if [ "$rc" -ne 0 ] && [ "$ENGINE" != builtin ]; then
  log "$ENGINE failed (status $rc) and left no crash file"
  exit 2
fi
if [ "$rc" -ne 0 ]; then
  # builtin exits 1 on a finding it already had (same signature, file kept).
  echo "builtin reported findings (exit $rc) but wrote no new reproducer; see $CRASH_DIR"
  exit 1
fi
echo "no crashes: $ENGINE/$TARGET ran ${SECS}s"
exit 0
