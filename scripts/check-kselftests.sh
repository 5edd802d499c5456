#!/usr/bin/env bash
# The emitted kselftests (`splitfuzz emit-kselftest`) against the pinned kernel:
# compile them with gcc -Wall -Werror against the selftest headers of the pinned
# tree (tools/testing/selftests of the linux-source that scripts/vm-fetch.sh
# fetches and unpacks into the cache; never copied into the repository), then
# run them in the guest on stock 7.2 (`vm exec`, the default cached kernel, or
# KERNEL=BZIMAGE), where every test must pass or skip with its reason.
#
#   scripts/check-kselftests.sh [FINDING...]     (default: crashes/lazy-v3/*.txt)
#
# With EXPECT_FAIL=1 (for a kernel with the posted series, local only) the run
# must fail instead; the TAP output is printed either way.
set -euo pipefail
cd "$(dirname "$0")/.."
SF=./target/release/splitfuzz
[ -x "$SF" ] || cargo build --release
src=$(scripts/vm-fetch.sh | tail -n 1)
inc="$src/tools/testing/selftests"
[ -f "$inc/kselftest_harness.h" ] || { echo "check-kselftests: no kselftest_harness.h in $inc" >&2; exit 1; }
files=("$@")
[ ${#files[@]} -gt 0 ] || files=(crashes/lazy-v3/*.txt)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
$SF emit-kselftest "${files[@]}" > "$work/split_failure.c"
gcc -O2 -Wall -Werror -I "$inc" -o "$work/split_failure" "$work/split_failure.c" -lpthread
echo "check-kselftests: $(grep -c '^TEST_F_TIMEOUT' "$work/split_failure.c") tests compiled against $inc"
kernel=()
[ -z "${KERNEL:-}" ] || kernel=(--kernel "$KERNEL")
set +e
$SF vm exec "${kernel[@]}" --timeout 900 "$work/split_failure" | tee "$work/out.txt"
rc=${PIPESTATUS[0]}
set -e
grep -q '^# Totals: ' "$work/out.txt" || { echo "check-kselftests: no TAP totals (the guest did not finish)" >&2; exit 1; }
if [ "${EXPECT_FAIL:-0}" = 1 ]; then
  [ "$rc" != 0 ] || { echo "check-kselftests: every test passed; expected failures" >&2; exit 1; }
  echo "check-kselftests: the tests fail, as expected:"; grep '^not ok' "$work/out.txt" || true
  exit 0
fi
[ "$rc" = 0 ] || { echo "check-kselftests: a test failed (exit $rc)" >&2; exit 1; }
echo "check-kselftests: every test passed or skipped with its reason"
