#!/usr/bin/env bash
# AFL++ parallel fuzzing of one target: one main (-M) and one secondary (-S)
# instance sharing one sync directory.
#
#   scripts/afl-parallel.sh TARGET SECONDS
#
# How AFL++ sync works: every instance writes its queue to OUT/<name>/queue;
# between fuzzing stages each instance scans the other OUT/*/queue folders and
# imports the inputs that give it new coverage (fuzzer_stats: corpus_imported;
# AFL_SYNC_TIME sets the minimum interval, in minutes). The -M main does deterministic stages and
# the final corpus decisions; -S secondaries only do havoc/splice. More
# secondaries: add `-S sec2`, `-S sec3`... one per core. A machine joins by
# sharing (rsync) OUT/; -F DIR imports a foreign (other engine's) corpus such as
# fuzz/continuous/corpus/TARGET (`splitfuzz continuous` does that).
#   OUT = fuzz/afl-par/TARGET     seeds: corpus/TARGET
# Crashes: OUT/main/crashes/id:* and OUT/sec1/crashes/id:* (AFL++ exits 0 even
# after crashes: the script lists them and exits 1 when there are any).
# Status while running: cargo afl whatsup fuzz/afl-par/TARGET
set -uo pipefail
[ $# -eq 2 ] || { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
T=$1 SECS=$2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
FUZZ=$ROOT/fuzz
OUT=$FUZZ/afl-par/$T
SEEDS=$ROOT/corpus/$T
[ -d "$SEEDS" ] || { echo "no seed corpus $SEEDS (scripts/gen-corpus.sh)" >&2; exit 2; }
command -v cargo-afl >/dev/null || { echo "cargo-afl missing: scripts/install-engines.sh afl" >&2; exit 2; }
(cd "$FUZZ" && CARGO_TARGET_DIR=$FUZZ/target/afl cargo afl build --release \
   --no-default-features --features afl --bin "$T") || exit 2
BIN=$FUZZ/target/afl/release/$T
mkdir -p "$OUT"
export AFL_NO_UI=1 AFL_AUTORESUME=1 AFL_SKIP_CPUFREQ=1 AFL_NO_AFFINITY=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
echo "[afl-parallel] main + secondary on $T for ${SECS}s, sync dir $OUT"
(cd "$FUZZ" && cargo afl fuzz -V "$SECS" -i "$SEEDS" -o "$OUT" -M main "$BIN" >"$OUT/main.log" 2>&1) &
P1=$!
(cd "$FUZZ" && cargo afl fuzz -V "$SECS" -i "$SEEDS" -o "$OUT" -S sec1 "$BIN" >"$OUT/sec1.log" 2>&1) &
P2=$!
trap 'kill $P1 $P2 2>/dev/null' INT TERM
end=$(( $(date +%s) + SECS ))
while kill -0 $P1 2>/dev/null || kill -0 $P2 2>/dev/null; do
  sleep 10
  left=$(( end - $(date +%s) ))
  for n in main sec1; do
    s=$OUT/$n/fuzzer_stats
    [ -f "$s" ] && printf '[afl-parallel] %-4s execs %-9s corpus %-5s crashes %-4s imported %s (%ss left)\n' "$n" \
      "$(awk '/^execs_done/{print $3}' "$s")" "$(awk '/^corpus_count/{print $3}' "$s")" \
      "$(awk '/^saved_crashes/{print $3}' "$s")" "$(awk '/^corpus_imported/{print $3}' "$s")" "$left"
  done
done
wait $P1; wait $P2
cargo afl whatsup -s "$OUT" 2>/dev/null | tail -12
n=$(find "$OUT"/*/crashes -name 'id:*' 2>/dev/null | wc -l)
echo "[afl-parallel] $n crash file(s) under $OUT/*/crashes (replay: scripts/repro.sh FILE)"
[ "$n" -eq 0 ]
