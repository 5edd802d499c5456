#!/usr/bin/env bash
# Replay one input through every engine's build of its target and the CLI, and
# check that all give the same verdict (the same VIOLATION line, or none).
#
#   scripts/cross-replay.sh FILE [TARGET]     (TARGET from the path if omitted)
#
# Uses what is already built (run `splitfuzz continuous` or the builds below once):
#   CLI        target/release/splitfuzz run --policy P FILE.bin
#   replay     fuzz/target/release/T FILE            (cargo build --release --no-default-features)
#   libfuzzer  fuzz/target/<triple>/release/T FILE   (cargo +nightly fuzz build -s none)
#   afl        fuzz/target/afl/release/T < FILE      (CARGO_TARGET_DIR=fuzz/target/afl cargo afl build --release --no-default-features --features afl)
#              (outside afl-fuzz a persistent-mode binary stops itself (SIGSTOP) after
#               an input that does not crash: it is killed after 3 s = no violation)
#   honggfuzz  CARGO_HONGGFUZZ_CRASH_FILENAME=FILE fuzz/hfuzz_target/<triple>/debug/T
#              (HFUZZ_BUILD_ARGS="--no-default-features --features honggfuzz" cargo hfuzz build-debug;
#               `cargo hfuzz run-debug` needs lldb, the binary alone does not)
# Exit 0 when every available replay agrees, 1 otherwise.
set -uo pipefail
[ $# -ge 1 ] || { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
FILE=$1
ROOT=$(cd "$(dirname "$0")/.." && pwd)
T=${2:-}
if [ -z "$T" ]; then
  for c in lazy_v1 lazy_v2 lazy_v3 lazy_fixed deposit lazy-v1 lazy-v2 lazy-v3 lazy-fixed; do
    case "/$FILE" in */$c/*) T=${c//-/_} ;; esac
  done
fi
case "$T" in lazy_v1|lazy_v2|lazy_v3|lazy_fixed|deposit) ;; *) echo "cross-replay.sh: give TARGET (lazy_v1 lazy_v2 lazy_v3 lazy_fixed deposit)" >&2; exit 2 ;; esac
P=${T//_/-}
TRIPLE=$(rustc -vV | sed -n 's/^host: //p')
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
cp "$FILE" "$TMP/in.bin"
sig() { grep -a -o 'VIOLATION [^(]*' | head -1 | sed 's/ *$//'; }
declare -A V
[ -x "$ROOT/target/release/splitfuzz" ] && V[cli]=$("$ROOT/target/release/splitfuzz" run --policy "$P" "$TMP/in.bin" 2>&1 | sig)
[ -x "$ROOT/fuzz/target/release/$T" ] && V[replay]=$("$ROOT/fuzz/target/release/$T" "$TMP/in.bin" 2>&1 | sig)
[ -x "$ROOT/fuzz/target/$TRIPLE/release/$T" ] && V[libfuzzer]=$("$ROOT/fuzz/target/$TRIPLE/release/$T" "$TMP/in.bin" 2>&1 | sig)
[ -x "$ROOT/fuzz/target/afl/release/$T" ] && V[afl]=$(timeout -s KILL 3 "$ROOT/fuzz/target/afl/release/$T" < "$TMP/in.bin" 2>&1 | sig)
[ -x "$ROOT/fuzz/hfuzz_target/$TRIPLE/debug/$T" ] && \
  V[honggfuzz]=$(CARGO_HONGGFUZZ_CRASH_FILENAME="$TMP/in.bin" "$ROOT/fuzz/hfuzz_target/$TRIPLE/debug/$T" 2>&1 | sig)
first= rc=0
for k in cli replay libfuzzer afl honggfuzz; do
  [ -n "${V[$k]+x}" ] || { printf '%-10s (not built)\n' "$k"; continue; }
  printf '%-10s %s\n' "$k" "${V[$k]:-no violation}"
  [ -z "$first" ] && first=${V[$k]:-none}
  [ "${V[$k]:-none}" = "$first" ] || rc=1
done
[ $rc -eq 0 ] && echo "same verdict everywhere" || echo "VERDICTS DIFFER"
exit $rc
