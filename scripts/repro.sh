#!/usr/bin/env bash
# Replay one crash/corpus file from any engine with a full trace.
#
#   scripts/repro.sh FILE [extra splitfuzz repro options]
#
# The policy comes from the path (the deepest directory that names a target or
# a policy), e.g.
#   fuzz/artifacts/<target>/crash-*                 libFuzzer (cargo fuzz)
#   fuzz/hfuzz_workspace/<target>/*.fuzz            honggfuzz (cargo hfuzz run)
#   WORK/libfuzzer/<target>/crash-*, WORK/afl/<target>/main/crashes/id:*,
#   WORK/honggfuzz/<target>/*.fuzz, WORK/builtin/<target>/crashes/<policy>/*.bin,
#   WORK/findings/<policy>/*.txt                    `splitfuzz engine` / `splitfuzz continuous`
#   fuzz/corpus/<target>/*, corpus/<target>/*, WORK/corpus/<target>/*   corpora
#   crashes/<policy>/*.txt                          curated findings
# <target> is lazy_v1 lazy_v2 lazy_v3 lazy_fixed deposit decode; <policy> is lazy-v1 lazy-v2
# lazy-v3 lazy-fixed deposit. POLICY=name overrides the detection; with neither,
# the program's own `policy` line is used (else lazy-v3).
#
# Engine files are raw fuzzer bytes and are replayed as such (a copy named
# .bin, so bytes that happen to read as text are not parsed as text); .txt
# files are text programs. Runs `cargo run --release -- repro --policy P FILE`;
# the decode target is replayed with its own replay binary (round-trip check).
# Exit status: 0 no violation, 1 violation (or round-trip failure), 2 error.
set -uo pipefail

[ $# -ge 1 ] || { sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
FILE=$1; shift
[ -f "$FILE" ] || { echo "repro.sh: no such file: $FILE" >&2; exit 2; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
ABS=$(cd "$(dirname "$FILE")" && pwd)/$(basename "$FILE")

policy_of() {
  case "$1" in
    lazy_v1|lazy-v1) echo lazy-v1 ;;
    lazy_v2|lazy-v2) echo lazy-v2 ;;
    lazy_v3|lazy-v3) echo lazy-v3 ;;
    lazy_fixed|lazy-fixed) echo lazy-fixed ;;
    deposit) echo deposit ;;
    decode) echo decode ;;
    *) return 1 ;;
  esac
}

# Engine and target/policy from the directory components, deepest first.
ENGINE= DETECTED=
IFS=/ read -r -a parts <<< "$(dirname "$ABS")"
for ((i = ${#parts[@]} - 1; i >= 0; i--)); do
  if [ -z "$DETECTED" ] && p=$(policy_of "${parts[i]}"); then DETECTED=$p; fi
  if [ -z "$ENGINE" ]; then
    case "${parts[i]}" in
      artifacts) ENGINE=libfuzzer ;;
      afl-out|afl) ENGINE=afl ;;
      hfuzz_workspace|honggfuzz) ENGINE=honggfuzz ;;
      libfuzzer) ENGINE=libfuzzer ;;
      corpus) ENGINE=corpus ;;
      crashes) ENGINE=builtin ;;
      builtin) ENGINE=builtin ;;
    esac
  fi
done
case "$ABS" in */default/crashes/*|*/default/queue/*|*/default/hangs/*) ENGINE=afl ;; esac
# AFL++ -M/-S instances (scripts/afl-parallel.sh, splitfuzz engine/continuous) and
# honggfuzz workspaces elsewhere (splitfuzz engine/continuous: WORK/honggfuzz/)
case "$ABS" in */crashes/id:*|*/queue/id:*|*/hangs/id:*) ENGINE=afl ;; *.fuzz) ENGINE=honggfuzz ;; esac
[ "$ENGINE" = libfuzzer ] && case "$ABS" in */artifacts/builtin/*) ENGINE=builtin ;; esac
ENGINE=${ENGINE:-unknown}

POL=${POLICY:-$DETECTED}
echo "[repro.sh] file $FILE  engine $ENGINE  ${DETECTED:+detected $DETECTED}${POLICY:+ (POLICY=$POLICY)}" >&2

# Raw bytes unless it is a text program (.txt, or builtin output).
REPLAY=$ABS
case "$ABS" in
  *.txt) ;;
  *)
    if [ "$ENGINE" != builtin ] || [[ "$ABS" == *.bin ]]; then
      TMP=$(mktemp -d)
      trap 'rm -rf "$TMP"' EXIT
      REPLAY=$TMP/$(basename "$ABS" .bin | tr -c 'A-Za-z0-9._\n-' '_').bin
      cp "$ABS" "$REPLAY"
    fi
    ;;
esac

if [ "$POL" = decode ]; then
  echo "[repro.sh] decode target: round-trip check with the replay binary" >&2
  (cd "$ROOT" && cargo run -q --release -- decode "$REPLAY")
  (cd "$ROOT/fuzz" && cargo run -q --release --no-default-features --bin decode -- "$REPLAY")
  rc=$?
  [ $rc -eq 101 ] && exit 1
  exit $rc
fi

ARGS=()
if [ -n "$POL" ]; then
  ARGS=(--policy "$POL")
else
  echo "[repro.sh] no target/policy in the path: using the program's policy line (else lazy-v3); set POLICY= to choose" >&2
fi
echo "[repro.sh] cargo run --release -- repro ${ARGS[*]} $REPLAY $*" >&2
cd "$ROOT" && cargo run -q --release -- repro "${ARGS[@]}" "$REPLAY" "$@"
