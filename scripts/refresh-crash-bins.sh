#!/usr/bin/env bash
# Rewrite crashes/<policy>/*.bin from their .txt (the stable form) with
# `splitfuzz encode`, for .bin files that no longer replay as named (the byte
# format changed since they were saved). Checks each rewritten file with the
# CLI. Files whose .txt is not encodable are left alone and listed.
#
#   scripts/refresh-crash-bins.sh [--dry-run]
set -uo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release || exit 2
SF=target/release/splitfuzz
DRY=${1:-}
rc=0
for f in crashes/*/*.txt; do
  [ -f "$f" ] || continue
  pol=$(basename "$(dirname "$f")")
  b=${f%.txt}.bin sig=$(basename "$f" .txt)
  want="VIOLATION ${sig%-*} in ${sig##*-} "
  if [ -f "$b" ] && grep -q "$want" <<< "$("$SF" run --policy "$pol" "$b" 2>&1)"; then
    echo "ok      $b"; continue
  fi
  tmp=$(mktemp --suffix=.bin)
  if ! "$SF" encode "$f" -o "$tmp" 2>/dev/null; then echo "skip    $f (not encodable)"; rm -f "$tmp"; continue; fi
  if ! grep -q "$want" <<< "$("$SF" run --policy "$pol" "$tmp" 2>&1)"; then
    echo "FAIL    $f: encoded bytes do not give $want"; rc=1; rm -f "$tmp"; continue
  fi
  if [ "$DRY" = --dry-run ]; then echo "stale   $b (would rewrite)"; rm -f "$tmp"
  else mv "$tmp" "$b"; echo "rewrote $b"; fi
done
exit $rc
