#!/usr/bin/env bash
# Continuous fuzzing: rotate engines and targets in bounded slices, share one
# corpus per target between the engines, minimize it now and then, and triage
# every crash into crashes/<policy>/ by signature.
#
#   scripts/continuous.sh [DURATION_SECONDS]     # no duration: until Ctrl-C / SIGTERM
#
# Environment:
#   SLICE=60          seconds per (engine, target) slice
#   ENGINES="..."     subset of: builtin libfuzzer afl honggfuzz (default: every installed one)
#   TARGETS="..."     subset of: lazy_v1 lazy_v2 lazy_v3 lazy_fixed deposit decode (default: all;
#                     the builtin engine skips decode)
#   CMIN_INTERVAL=600 minimize the shared corpora when this many seconds have passed
#                     since the last minimization (checked after each slice)
#   WORK=fuzz/continuous   working directory (git-ignored)
#   TRIAGE_MAX=300    crash files triaged per slice (the rest are counted, then dropped)
#
# Layout under $WORK:
#   corpus/<target>/          shared corpus: seeded from corpus/<target>/, libFuzzer and
#                             honggfuzz write into it directly, AFL++ queue and builtin
#                             corpus entries are copied in after each slice (AFL++ also
#                             imports it with -F), files named by content hash
#   afl/<target>/             AFL++ output (resumed across slices)
#   hfuzz/<target>/           honggfuzz workspace (crashes, run with --save_all)
#   libfuzzer/<target>/       libFuzzer crash artifacts (-fork=1 -ignore_crashes=1)
#   builtin/...               builtin engine corpus and reproducers
#   findings/<policy>/        one original crash file per signature seen in this run
#   log/                      per-slice engine logs
# Triage: each new crash file is replayed with `splitfuzz run --policy P FILE.bin`;
# the "VIOLATION <invariant> in <function>" line is its signature. A signature that
# has no file in crashes/<policy>/ yet is minimized with
# `splitfuzz minimize --policy P FILE -o crashes/<policy>/<invariant>-<function>.txt`
# (text with an expect line) and the original bytes are kept next to it as .bin.
# A crash that does not replay with the CLI is counted as "norepro".
# At the end (duration, Ctrl-C or SIGTERM) a summary table is printed.
set -uo pipefail

DURATION=${1:-0}
case "$DURATION" in ''|*[!0-9]*) echo "usage: $0 [DURATION_SECONDS]" >&2; exit 2 ;; esac
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
SLICE=${SLICE:-60}
CMIN_INTERVAL=${CMIN_INTERVAL:-600}
TRIAGE_MAX=${TRIAGE_MAX:-300}
WORK=${WORK:-$ROOT/fuzz/continuous}
mkdir -p "$WORK" && WORK=$(cd "$WORK" && pwd)
FUZZ=$ROOT/fuzz
SF=$ROOT/target/release/splitfuzz
TRIPLE=$(rustc -vV | sed -n 's/^host: //p')
LF_BIN=$FUZZ/target/$TRIPLE/release
AFL_BIN=$FUZZ/target/afl/release
HF_DIR=$FUZZ/hfuzz_target
HF_BIN=$HF_DIR/$TRIPLE/release
START=$(date +%s)

log() { printf '[continuous %s +%4ds] %s\n' "$(date +%H:%M:%S)" "$(( $(date +%s) - START ))" "$*"; }
policy_of() {
  case "$1" in lazy_v1) echo lazy-v1 ;; lazy_v2) echo lazy-v2 ;; lazy_v3) echo lazy-v3 ;; lazy_fixed) echo lazy-fixed ;;
    deposit) echo deposit ;; *) echo "" ;; esac
}
have() { command -v "$1" >/dev/null 2>&1; }

# ---------------------------------------------------------------- engines
if [ -z "${ENGINES:-}" ]; then
  ENGINES=builtin
  cargo +nightly fuzz --version >/dev/null 2>&1 && ENGINES="$ENGINES libfuzzer"
  have cargo-afl && ENGINES="$ENGINES afl"
  have cargo-hfuzz && ENGINES="$ENGINES honggfuzz"
fi
TARGETS=${TARGETS:-"lazy_v1 lazy_v2 lazy_v3 lazy_fixed deposit decode"}
log "engines: $ENGINES; targets: $TARGETS; slice ${SLICE}s; duration ${DURATION:-0}s (0 = until stopped)"
log "work dir $WORK"

log "building the CLI"
cargo build -q --release || exit 2
ok_engines=""
for e in $ENGINES; do
  log "building targets for $e"
  case "$e" in
    builtin) ok=1 ;;
    libfuzzer) (cd "$FUZZ" && cargo +nightly fuzz build -s none >"$WORK/build-$e.log" 2>&1) && ok=1 || ok=0 ;;
    afl) (cd "$FUZZ" && CARGO_TARGET_DIR=$FUZZ/target/afl cargo afl build --release \
            --no-default-features --features afl >"$WORK/build-$e.log" 2>&1) && ok=1 || ok=0 ;;
    honggfuzz) (cd "$FUZZ" && HFUZZ_BUILD_ARGS="--no-default-features --features honggfuzz" \
            cargo hfuzz build >"$WORK/build-$e.log" 2>&1) && ok=1 || ok=0 ;;
    *) log "unknown engine $e"; ok=0 ;;
  esac
  if [ "$ok" = 1 ]; then ok_engines="$ok_engines $e"; else log "$e: build failed, skipped (see $WORK/build-$e.log)"; fi
done
ENGINES=$ok_engines
[ -n "$ENGINES" ] || { log "no engine available"; exit 2; }

# ---------------------------------------------------------------- state
declare -A RUNS SECS EXECS CRASHES SIGS   # key: engine/target
declare -A SIG_FIRST SIG_COUNT SIG_FILE   # key: policy|signature
NOREPRO=0 NEW_SIGS=0
mkdir -p "$WORK/log" "$WORK/findings"
for t in $TARGETS; do
  mkdir -p "$WORK/corpus/$t"
  [ -d "corpus/$t" ] && cp -n corpus/"$t"/* "$WORK/corpus/$t/" 2>/dev/null
done
TMP=$(mktemp -d)

# Copy files into a corpus dir under their content hash (dedup across engines).
sync_into() { # DEST FILES...
  local dest=$1 f h n=0; shift
  for f in "$@"; do
    [ -f "$f" ] || continue
    h=$(sha1sum "$f" | cut -c1-40)
    [ -e "$dest/$h" ] || { cp "$f" "$dest/$h"; n=$((n + 1)); }
  done
  echo "$n"
}

# Like sync_into, but only inputs that do not violate under POLICY (the builtin
# engine's corpus may hold violating inputs; the shared corpus must not, so that
# replaying it never crashes).
sync_clean() { # DEST POLICY FILES...
  local dest=$1 pol=$2 f h i=0; shift 2
  rm -rf "$TMP/sc"; mkdir -p "$TMP/sc"
  for f in "$@"; do
    [ -f "$f" ] || continue
    h=$(sha1sum "$f" | cut -c1-40)
    [ -e "$dest/$h" ] || cp "$f" "$TMP/sc/$h.bin"
  done
  ls "$TMP/sc" | grep -q . || { echo 0; return; }
  "$SF" run --policy "$pol" "$TMP"/sc/*.bin 2>/dev/null | sed -n 's|^.*/\([0-9a-f]*\)\.bin: [^ ]* ok .*|\1|p' \
    | while read -r h; do cp "$TMP/sc/$h.bin" "$dest/$h"; i=$((i + 1)); echo "$i"; done | tail -1 | grep . || echo 0
}

# Replay crash files through the CLI, record signatures, minimize new ones.
triage() { # ENGINE TARGET FILES...
  local engine=$1 t=$2 pol; shift 2
  local key=$engine/$t total=$# i=0 f line sig inv fn out
  pol=$(policy_of "$t")
  [ "$total" -gt 0 ] || return 0
  CRASHES[$key]=$(( ${CRASHES[$key]:-0} + total ))
  if [ -z "$pol" ]; then
    # decode target: a round-trip failure, no policy signature; keep the file.
    mkdir -p "$WORK/findings/decode"
    for f in "$@"; do cp "$f" "$WORK/findings/decode/"; done
    SIGS[$key]="${SIGS[$key]:-} decode-roundtrip"
    log "TRIAGE decode: $total round-trip failure(s) kept in $WORK/findings/decode"
    return 0
  fi
  rm -rf "$TMP/tri"; mkdir -p "$TMP/tri"
  local files=()
  for f in "$@"; do
    i=$((i + 1)); [ "$i" -le "$TRIAGE_MAX" ] || break
    case "$f" in *.txt) cp "$f" "$TMP/tri/$i.txt"; files+=("$TMP/tri/$i.txt") ;;
      *) cp "$f" "$TMP/tri/$i.bin"; files+=("$TMP/tri/$i.bin") ;; esac
    echo "$f" > "$TMP/tri/$i.src"
  done
  [ "$total" -gt "$TRIAGE_MAX" ] && log "triage $key: $total crash files, replaying the first $TRIAGE_MAX"
  "$SF" run --policy "$pol" "${files[@]}" > "$TMP/tri/out" 2>&1
  for f in "${files[@]}"; do
    line=$(grep -F -m1 "$f: " "$TMP/tri/out")
    sig=$(printf '%s' "$line" | sed -n 's/.*VIOLATION \([^ ]*\) in \([^ ]*\) .*/\1 \2/p')
    if [ -z "$sig" ]; then
      NOREPRO=$((NOREPRO + 1))
      log "NOREPRO $key $(cat "${f%.*}.src"): ${line#*: }"
      continue
    fi
    case " ${SIGS[$key]:-} " in *" ${sig/ /:} "*) ;; *) SIGS[$key]="${SIGS[$key]:-} ${sig/ /:}" ;; esac
    local sk="$pol|$sig"
    SIG_COUNT[$sk]=$(( ${SIG_COUNT[$sk]:-0} + 1 ))
    [ -n "${SIG_FIRST[$sk]:-}" ] && continue
    SIG_FIRST[$sk]="$engine/$t +$(( $(date +%s) - START ))s"
    inv=${sig% *} fn=${sig#* }
    mkdir -p "$WORK/findings/$pol" "crashes/$pol"
    cp "$f" "$WORK/findings/$pol/$inv-$fn.${f##*.}"
    out=crashes/$pol/$inv-$fn.txt
    if [ -e "$out" ]; then
      SIG_FILE[$sk]="$out (known)"
      log "FINDING $pol: $inv $fn by $engine/$t (already in $out)"
    else
      NEW_SIGS=$((NEW_SIGS + 1))
      if "$SF" minimize --policy "$pol" "$f" -o "$out" >/dev/null 2>"$TMP/min.err"; then
        [ "${f##*.}" = bin ] && cp "$f" "crashes/$pol/$inv-$fn.bin"
        SIG_FILE[$sk]="$out (NEW)"
        log "NEW FINDING $pol: $inv $fn by $engine/$t -> $out (minimized)"
      else
        SIG_FILE[$sk]="$WORK/findings/$pol/$inv-$fn.${f##*.} (minimize failed)"
        log "NEW FINDING $pol: $inv $fn by $engine/$t; minimize failed: $(head -1 "$TMP/min.err")"
      fi
    fi
  done
}

# ---------------------------------------------------------------- one slice
run_slice() { # ENGINE TARGET SECONDS
  local e=$1 t=$2 s=$3 pol key=$1/$2 lg rc execs=0 new=0 crash=() f
  pol=$(policy_of "$t")
  lg=$WORK/log/$e-$t.log
  local mark=$TMP/mark; : > "$mark"; sleep 1
  case "$e" in
    builtin)
      mkdir -p "$WORK/builtin/corpus/$t" "$WORK/builtin/crashes"
      cp -n "$WORK/corpus/$t"/* "$WORK/builtin/corpus/$t/" 2>/dev/null
      "$SF" fuzz --policy "$pol" --time "${s}s" --seed "$RANDOM" --quiet \
        --crashes "$WORK/builtin/crashes" --corpus "$WORK/builtin/corpus/$t" >"$lg" 2>&1 &
      CHILD=$!; wait $CHILD; rc=$?
      execs=$(sed -n 's/.*: \([0-9]*\) execs in.*/\1/p' "$lg" | tail -1)
      new=$(sync_clean "$WORK/corpus/$t" "$pol" "$WORK/builtin/corpus/$t"/*)
      while IFS= read -r -d '' f; do crash+=("$f"); done < <(
        find "$WORK/builtin/crashes/$pol" -type f -name '*.bin' -newer "$mark" -print0 2>/dev/null)
      ;;
    libfuzzer)
      mkdir -p "$WORK/libfuzzer/$t"
      local n0; n0=$(ls "$WORK/corpus/$t" | wc -l)
      (cd "$WORK" && "$LF_BIN/$t" "$WORK/corpus/$t" -fork=1 -ignore_crashes=1 -ignore_timeouts=1 \
        -ignore_ooms=1 -max_total_time="$s" -artifact_prefix="$WORK/libfuzzer/$t/" >"$lg" 2>&1) &
      CHILD=$!; wait $CHILD; rc=$?
      execs=$(grep -o '^#[0-9]*' "$lg" | tail -1 | tr -d '#')
      new=$(( $(ls "$WORK/corpus/$t" | wc -l) - n0 ))
      while IFS= read -r -d '' f; do crash+=("$f"); done < <(
        find "$WORK/libfuzzer/$t" -type f -name 'crash-*' -newer "$mark" -print0)
      ;;
    afl)
      local out=$WORK/afl/$t before=0 after=0
      mkdir -p "$out"
      [ -f "$out/main/fuzzer_stats" ] && before=$(awk '/^execs_done/{print $3}' "$out/main/fuzzer_stats")
      (cd "$FUZZ" && AFL_NO_UI=1 AFL_AUTORESUME=1 AFL_SKIP_CPUFREQ=1 AFL_NO_AFFINITY=1 \
        AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_SUPPRESS_ERROR=1 \
        cargo afl fuzz -V "$s" -i "$WORK/corpus/$t" -o "$out" -M main -F "$WORK/corpus/$t" \
        "$AFL_BIN/$t" >"$lg" 2>&1) &
      CHILD=$!; wait $CHILD; rc=$?
      [ -f "$out/main/fuzzer_stats" ] && after=$(awk '/^execs_done/{print $3}' "$out/main/fuzzer_stats")
      execs=$(( after >= before ? after - before : after ))
      new=$(sync_into "$WORK/corpus/$t" $(find "$out/main/queue" -maxdepth 1 -type f -name 'id:*' -newer "$mark" 2>/dev/null))
      while IFS= read -r -d '' f; do crash+=("$f"); done < <(
        find "$out/main/crashes" -type f -name 'id:*' -newer "$mark" -print0 2>/dev/null)
      ;;
    honggfuzz)
      local ws=$WORK/hfuzz/$t n0; n0=$(ls "$WORK/corpus/$t" | wc -l)
      mkdir -p "$ws"
      "$HF_DIR/honggfuzz" -W "$ws" -f "$WORK/corpus/$t" -P --run_time "$s" -n 1 --save_all \
        -- "$HF_BIN/$t" >"$lg" 2>&1 </dev/null &
      CHILD=$!; wait $CHILD; rc=$?
      execs=$(grep -o 'iterations:[0-9]*' "$lg" | tail -1 | cut -d: -f2)
      new=$(( $(ls "$WORK/corpus/$t" | wc -l) - n0 ))
      while IFS= read -r -d '' f; do crash+=("$f"); done < <(
        find "$ws" -maxdepth 1 -type f -name '*.fuzz' -newer "$mark" -print0)
      ;;
  esac
  CHILD=
  RUNS[$key]=$(( ${RUNS[$key]:-0} + 1 ))
  SECS[$key]=$(( ${SECS[$key]:-0} + s ))
  EXECS[$key]=$(( ${EXECS[$key]:-0} + ${execs:-0} ))
  log "$e/$t: exit $rc, ${execs:-?} execs, $new new corpus files, ${#crash[@]} crash files (log $lg)"
  triage "$e" "$t" ${crash[@]+"${crash[@]}"}
  # Triaged crash files from engines that keep one file per crash are dropped
  # (the first file of each signature is kept under findings/).
  case "$e" in libfuzzer|honggfuzz) rm -f ${crash[@]+"${crash[@]}"} ;; esac
}

# ---------------------------------------------------------------- minimize
minimize_corpora() {
  local t pol n0
  for t in $TARGETS; do
    n0=$(ls "$WORK/corpus/$t" | wc -l)
    pol=$(policy_of "$t")
    if [[ " $ENGINES " == *" libfuzzer "* ]]; then
      (cd "$FUZZ" && cargo +nightly fuzz cmin -s none "$t" "$WORK/corpus/$t" >"$WORK/log/cmin-$t.log" 2>&1) \
        || { log "cmin $t failed (see $WORK/log/cmin-$t.log)"; continue; }
    elif [ -n "$pol" ]; then
      rm -rf "$TMP/cmin"
      "$SF" cmin "$WORK/corpus/$t" -o "$TMP/cmin" --policy "$pol" >"$WORK/log/cmin-$t.log" 2>&1 \
        && rm -rf "$WORK/corpus/$t" && mv "$TMP/cmin" "$WORK/corpus/$t" \
        || { log "splitfuzz cmin $t failed"; continue; }
    else
      continue
    fi
    log "minimized $WORK/corpus/$t: $n0 -> $(ls "$WORK/corpus/$t" | wc -l) files"
  done
}

# ---------------------------------------------------------------- summary
summary() {
  local e t key
  echo
  echo "== continuous.sh summary: $(( $(date +%s) - START ))s wall, engines:$ENGINES"
  printf '%-10s %-11s %5s %6s %12s %9s %8s  %s\n' engine target runs secs execs exec/s crashes signatures
  for e in $ENGINES; do
    for t in $TARGETS; do
      key=$e/$t
      [ -n "${RUNS[$key]:-}" ] || continue
      printf '%-10s %-11s %5d %6d %12d %9d %8d  %s\n' "$e" "$t" "${RUNS[$key]}" "${SECS[$key]}" \
        "${EXECS[$key]:-0}" $(( ${EXECS[$key]:-0} / (${SECS[$key]} > 0 ? ${SECS[$key]} : 1) )) \
        "${CRASHES[$key]:-0}" "$(echo ${SIGS[$key]:-none} | tr ' ' ',')"
    done
  done
  echo
  echo "signatures (policy invariant function): first engine/target and time, crash files, reproducer"
  for key in $(printf '%s\n' "${!SIG_FIRST[@]}" | tr ' ' '#' | sort); do
    key=${key//#/ }
    printf '  %-11s %-45s %-26s %6d  %s\n' "${key%%|*}" "${key#*|}" "${SIG_FIRST[$key]}" \
      "${SIG_COUNT[$key]}" "${SIG_FILE[$key]}"
  done
  echo "new signatures written to crashes/: $NEW_SIGS; crash files that did not replay: $NOREPRO"
  for t in $TARGETS; do printf '  corpus %-11s %5d files\n' "$t" "$(ls "$WORK/corpus/$t" | wc -l)"; done
}

CHILD=
STOP=0
on_signal() {
  STOP=1
  [ -n "$CHILD" ] && kill -TERM "$CHILD" 2>/dev/null
  [ -n "$CHILD" ] && pkill -TERM -P "$CHILD" 2>/dev/null
}
trap on_signal INT TERM
trap 'rm -rf "$TMP"' EXIT

# Rotation: every target in turn; the engine for a target moves on each round,
# so after |engines| rounds every (engine, target) pair has had a slice.
COMBOS=()
ne=$(echo $ENGINES | wc -w)
for ((r = 0; r < ne; r++)); do
  i=0
  for t in $TARGETS; do
    e=$(echo $ENGINES | cut -d' ' -f$(( (r + i) % ne + 1 )))
    i=$((i + 1))
    if [ "$e" = builtin ] && [ -z "$(policy_of "$t")" ]; then
      # builtin has no decode target: give the slot to the next engine
      [ "$ne" -gt 1 ] || continue
      e=$(echo $ENGINES | cut -d' ' -f$(( (r + i) % ne + 1 )))
    fi
    COMBOS+=("$e $t")
  done
done
log "rotation of ${#COMBOS[@]} slices: ${COMBOS[*]}"
round=0 k=0 last_cmin=$(date +%s)
while [ "$STOP" = 0 ]; do
  now=$(( $(date +%s) - START ))
  if [ "$DURATION" -gt 0 ]; then
    left=$(( DURATION - now ))
    [ "$left" -ge 5 ] || break
  else
    left=$SLICE
  fi
  s=$(( SLICE < left ? SLICE : left ))
  read -r e t <<< "${COMBOS[k]}"
  log "slice $((k + 1))/${#COMBOS[@]} round $((round + 1)): $e $t ${s}s"
  run_slice "$e" "$t" "$s"
  k=$(( k + 1 ))
  if [ "$k" -ge "${#COMBOS[@]}" ]; then k=0 round=$((round + 1)); fi
  if [ "$STOP" = 0 ] && [ $(( $(date +%s) - last_cmin )) -ge "$CMIN_INTERVAL" ]; then
    log "minimizing the shared corpora (every ${CMIN_INTERVAL}s)"
    minimize_corpora
    last_cmin=$(date +%s)
  fi
done
summary
