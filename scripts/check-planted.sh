#!/usr/bin/env bash
# The kernel with our planted split-failure bugs (kernel/test-patches/):
# build it (cached), run `vm check` over its programs, and compare the
# findings with kernel/test-patches/expected.txt, one finding per line as
# `vm check` names its files (SEVERITY-BREACH-OP): every planted bug must be
# found with its severity, and nothing else (the caller handled right is not
# flagged). Exit 0 when they match.
set -euo pipefail
cd "$(dirname "$0")/.."
SF=./target/release/splitfuzz
bz=$(scripts/planted-kernel.sh)
out=$(mktemp -d)
set +e
$SF vm check --kernel "$bz" --time 5m --out "$out" kernel/test-patches/programs/*.txt
rc=$?
set -e
found=$(cd "$out" && ls *.txt 2>/dev/null | sed 's/\.txt$//' | sort)
want=$(grep -v '^#' kernel/test-patches/expected.txt | sed '/^$/d' | sort)
echo "planted bugs expected:"; echo "$want" | sed 's/^/  /'
echo "vm check found:"; echo "$found" | sed 's/^/  /'
if [ "$rc" != 1 ] || [ "$found" != "$want" ]; then
  echo "check-planted: vm check (exit $rc) did not find exactly the planted bugs" >&2
  exit 1
fi
echo "check-planted: every planted bug found with its severity, nothing else"
