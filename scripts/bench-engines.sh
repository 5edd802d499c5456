#!/usr/bin/env bash
# Engine measurements (a benchmark, not a test): prints a Markdown report.
#
#   scripts/bench-engines.sh [OUT.md]          (default fuzz/bench/engines.md)
#
# 1. exec/s of each engine on each target, side by side with the same engine on
#    the `empty` target (a target that ignores its input) measured in the same
#    run: the ratio target/empty is the cost of the model relative to the
#    engine's own overhead. EXEC_SECS (15) per run; every run starts from
#    corpus/<target>/ (empty: one seed). The builtin engine has no empty target.
#    libFuzzer runs with -fork=1 -ignore_crashes=1 (like `splitfuzz continuous`) so that
#    crashing targets keep running; AFL++ and honggfuzz restart the target after
#    a crash by themselves.
# 2. time to first finding for lazy_v1 and lazy_v3 per engine: wall-clock time
#    from launching the engine (after the build) to its first crash (engine
#    start-up and seed import included), median over SEEDS (5) attempts, each
#    bounded at TTFF_MAX (60) seconds; an attempt that finds nothing counts as
#    ">TTFF_MAX". Seeds: libFuzzer -seed=N, AFL++ -s N, builtin --seed N,
#    honggfuzz has no seed option (attempts differ by its own randomness).
# ENGINES="builtin libfuzzer afl honggfuzz" (installed ones by default), TARGETS.
# SEED_MODE=corpus (default: start from corpus/<target>/) or minimal (one
# 9-byte seed, "mmap 0 8M thp" and no fault plan: how fast an engine gets there
# on its own). LF_FORK=0: libFuzzer exec/s in plain mode (stops at the first
# crash, so only meaningful for targets that do not crash). SKIP_EXECS=1 /
# SKIP_TTFF=1 skip a part.
# The machine may be shared: numbers are as measured, with the load average.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
OUTMD=${1:-$ROOT/fuzz/bench/engines.md}
EXEC_SECS=${EXEC_SECS:-15}
SEEDS=${SEEDS:-5}
TTFF_MAX=${TTFF_MAX:-60}
TARGETS=${TARGETS:-"lazy_v1 lazy_v2 lazy_v3 lazy_fixed deposit decode"}
FUZZ=$ROOT/fuzz
W=$FUZZ/bench
mkdir -p "$W" "$(dirname "$OUTMD")"
TRIPLE=$(rustc -vV | sed -n 's/^host: //p')
SF=$ROOT/target/release/splitfuzz
LF=$FUZZ/target/$TRIPLE/release
AB=$FUZZ/target/afl/release
HD=$FUZZ/hfuzz_target
HB=$HD/$TRIPLE/release
log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
policy_of() { case "$1" in lazy_v1) echo lazy-v1 ;; lazy_v2) echo lazy-v2 ;; lazy_v3) echo lazy-v3 ;; lazy_fixed) echo lazy-fixed ;; deposit) echo deposit ;; esac; }
now() { date +%s.%N; }

if [ -z "${ENGINES:-}" ]; then
  ENGINES=builtin
  cargo +nightly fuzz --version >/dev/null 2>&1 && ENGINES="$ENGINES libfuzzer"
  command -v cargo-afl >/dev/null && ENGINES="$ENGINES afl"
  command -v cargo-hfuzz >/dev/null && ENGINES="$ENGINES honggfuzz"
fi
log "engines: $ENGINES; builds"
cargo build -q --release || exit 2
for e in $ENGINES; do
  case "$e" in
    libfuzzer) (cd fuzz && cargo +nightly fuzz build -s none >/dev/null 2>&1) || exit 2 ;;
    afl) (cd fuzz && CARGO_TARGET_DIR=$FUZZ/target/afl cargo afl build --release --no-default-features --features afl >/dev/null 2>&1) || exit 2 ;;
    honggfuzz) (cd fuzz && HFUZZ_BUILD_ARGS="--no-default-features --features honggfuzz" cargo hfuzz build >/dev/null 2>&1) || exit 2 ;;
  esac
done

SEED_MODE=${SEED_MODE:-corpus}
seeds_for() { # TARGET DIR: fresh copy of the seed corpus
  rm -rf "$2"; mkdir -p "$2"
  if [ "$SEED_MODE" = corpus ] && [ -d "corpus/$1" ]; then cp corpus/"$1"/* "$2/"; else printf '\x03\x00\x03\x00\x00\x00\x00\x1f\x01' > "$2/seed"; fi
}

export AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_NO_AFFINITY=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1

# ---------------------------------------------------------------- exec/s
execs_per_sec() { # ENGINE TARGET -> prints exec/s
  local e=$1 t=$2 d=$W/x/$1-$2 pol; pol=$(policy_of "$t")
  rm -rf "$d"; mkdir -p "$d"; seeds_for "$t" "$d/in"
  case "$e" in
    builtin)
      "$SF" fuzz --policy "$pol" --time "${EXEC_SECS}s" --crashes "$d/crashes" --corpus "$d/in" --quiet >"$d/log" 2>&1
      sed -n 's/.* execs in .*(\([0-9]*\) exec\/s).*/\1/p' "$d/log" | tail -1 ;;
    libfuzzer)
      if [ "${LF_FORK:-1}" = 0 ]; then
        (cd "$d" && "$LF/$t" in -max_total_time="$EXEC_SECS" -print_final_stats=1 -artifact_prefix="$d/" >log 2>&1)
        awk '/^stat::number_of_executed_units/{e=$2} /^stat::average_exec_per_sec/{r=$2} END{print r}' "$d/log"
        return
      fi
      (cd "$d" && "$LF/$t" in -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
         -max_total_time="$EXEC_SECS" -artifact_prefix="$d/" >log 2>&1)
      # fork mode: "#EXECS: cov: .. time: Ns"
      grep -E '^#[0-9]+:' "$d/log" | tail -1 | sed -E 's/^#([0-9]+):.* time: ([0-9]+)s.*/\1 \2/' \
        | awk '{ if ($2 > 0) printf "%d\n", $1 / $2 }' ;;
    afl)
      (cd fuzz && cargo afl fuzz -V "$EXEC_SECS" -i "$d/in" -o "$d/out" "$AB/$t" >"$d/log" 2>&1)
      awk '/^execs_done/{e=$3} /^run_time/{r=$3} END{ if (r > 0) printf "%d\n", e / r }' "$d/out/default/fuzzer_stats" ;;
    honggfuzz)
      "$HD/honggfuzz" -W "$d/ws" -f "$d/in" -P --run_time "$EXEC_SECS" -n 1 -- "$HB/$t" >"$d/log" 2>&1 </dev/null
      sed -n 's/.*Summary iterations:\([0-9]*\) time:\([0-9]*\) .*/\1 \2/p' "$d/log" | tail -1 \
        | awk '{ if ($2 > 0) printf "%d\n", $1 / $2 }' ;;
  esac
}

# ---------------------------------------------------------------- time to first finding
# Launch ENGINE on TARGET with SEED, poll for the first crash; prints seconds (or "-").
ttff() { # ENGINE TARGET SEED
  local e=$1 t=$2 s=$3 d=$W/t/$1-$2-$3 pol pid t0 found= el
  pol=$(policy_of "$t")
  rm -rf "$d"; mkdir -p "$d/art"; seeds_for "$t" "$d/in"
  t0=$(now)
  case "$e" in
    builtin) "$SF" fuzz --policy "$pol" --time "${TTFF_MAX}s" --seed "$s" --crashes "$d/art" \
               --corpus "$d/in" --quiet >"$d/log" 2>&1 & ;;
    libfuzzer) (cd "$d" && exec "$LF/$t" in -seed="$s" -max_total_time="$TTFF_MAX" -artifact_prefix="$d/art/" >log 2>&1) & ;;
    afl) (cd fuzz && exec cargo afl fuzz -s "$s" -V "$TTFF_MAX" -i "$d/in" -o "$d/out" "$AB/$t" >"$d/log" 2>&1) & ;;
    honggfuzz) "$HD/honggfuzz" -W "$d/art" -f "$d/in" -P --run_time "$TTFF_MAX" -n 1 --exit_upon_crash \
                 -- "$HB/$t" >"$d/log" 2>&1 </dev/null & ;;
  esac
  pid=$!
  while :; do
    case "$e" in
      builtin) grep -q 'new finding' "$d/log" 2>/dev/null && found=1 ;;
      libfuzzer) ls "$d/art" | grep -q '^crash-' && found=1 ;;
      afl) ls "$d/out/default/crashes" 2>/dev/null | grep -q '^id:' && found=1 ;;
      honggfuzz) ls "$d/art" | grep -q '\.fuzz$' && found=1 ;;
    esac
    el=$(echo "$(now) - $t0" | bc)
    [ -n "$found" ] && break
    kill -0 "$pid" 2>/dev/null || break
    [ "$(echo "$el > $TTFF_MAX + 15" | bc)" = 1 ] && break
    sleep 0.1
  done
  kill -TERM "$pid" 2>/dev/null; pkill -TERM -P "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  if [ -n "$found" ]; then printf '%.2f\n' "$el"; else echo -; fi
}
median() { # values ("-" = not found, sorts last)
  printf '%s\n' "$@" | sed "s/^-$/999999/" | sort -g | awk '{a[NR]=$1} END{m=a[int((NR+1)/2)]; if (m==999999) print ">'"$TTFF_MAX"'"; else print m}'
}

START=$(date +%s)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
{
echo "# splitfuzz engine measurements"
echo
echo "Host: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), load average at start $LOAD0."
echo "Run $(date -u +%Y-%m-%dT%H:%MZ) by scripts/bench-engines.sh (EXEC_SECS=$EXEC_SECS, SEEDS=$SEEDS, TTFF_MAX=$TTFF_MAX, SEED_MODE=$SEED_MODE, LF_FORK=${LF_FORK:-1}); one engine process at a time, small geometry."
echo
echo "## exec/s (ratio = target / empty target, same engine)"
echo
printf '| engine | empty |'; for t in $TARGETS; do printf ' %s | ratio |' "$t"; done; echo
printf '|---|---:|'; for t in $TARGETS; do printf -- '---:|---:|'; done; echo
} > "$OUTMD.tmp"
for e in $ENGINES; do
  [ -n "${SKIP_EXECS:-}" ] && break
  if [ "$e" = builtin ]; then base=; else log "exec/s $e empty"; base=$(execs_per_sec "$e" empty); fi
  row="| $e | ${base:-n/a} |"
  for t in $TARGETS; do
    if [ "$e" = builtin ] && [ "$t" = decode ]; then row="$row n/a | n/a |"; continue; fi
    log "exec/s $e $t"
    v=$(execs_per_sec "$e" "$t")
    r=n/a
    [ -n "$base" ] && [ -n "$v" ] && [ "${base:-0}" -gt 0 ] && r=$(awk -v a="$v" -v b="$base" 'BEGIN{printf "%.3f", a / b}')
    row="$row ${v:-?} | $r |"
  done
  echo "$row" >> "$OUTMD.tmp"
  log "$row"
done
{
echo
echo "## time to first finding (s, wall clock incl. engine start-up; median of $SEEDS attempts, each bounded at ${TTFF_MAX}s)"
echo
echo "| engine | target | median | attempts (s; - = nothing within ${TTFF_MAX}s) | first signatures |"
echo "|---|---|---:|---|---|"
} >> "$OUTMD.tmp"
for t in lazy_v1 lazy_v2 lazy_v3; do
  [ -n "${SKIP_TTFF:-}" ] && break
  for e in $ENGINES; do
    vals=() sigs=()
    for s in $(seq 1 "$SEEDS"); do
      v=$(ttff "$e" "$t" "$s"); vals+=("$v")
      # signature of the first crash of this attempt, via the CLI
      d=$W/t/$e-$t-$s f=
      case "$e" in
        builtin) sigs+=("$(grep -m1 'new finding' "$d/log" | sed 's/.*new finding: //')"); log "ttff $e $t seed $s: $v"; continue ;;
        libfuzzer) f=$(ls "$d"/art/crash-* 2>/dev/null | head -1) ;;
        afl) f=$(ls "$d"/out/default/crashes/id:* 2>/dev/null | head -1) ;;
        honggfuzz) f=$(ls "$d"/art/*.fuzz 2>/dev/null | head -1) ;;
      esac
      if [ -n "$f" ]; then
        cp "$f" "$d/first.bin"
        sigs+=("$("$SF" run --policy "$(policy_of "$t")" "$d/first.bin" 2>&1 | sed -n 's/.*VIOLATION \([^ ]*\) in \([^ ]*\) .*/\1 \2/p' | head -1)")
      fi
      log "ttff $e $t seed $s: $v"
    done
    m=$(median "${vals[@]}")
    sg=$(printf '%s\n' "${sigs[@]+"${sigs[@]}"}" | grep . | sort | uniq -c | sort -rn | awk '{c=$1; $1=""; printf "%s%s (%d)", (NR>1?"; ":""), substr($0,2), c}')
    echo "| $e | $t | $m | ${vals[*]} | ${sg:-none} |" >> "$OUTMD.tmp"
    log "ttff $e $t: median $m (${vals[*]})"
  done
done
echo >> "$OUTMD.tmp"
echo "Total bench time $(( $(date +%s) - START ))s; load average at end $(cut -d' ' -f1-3 /proc/loadavg)." >> "$OUTMD.tmp"
mv "$OUTMD.tmp" "$OUTMD"
cat "$OUTMD"
