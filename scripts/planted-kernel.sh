#!/usr/bin/env bash
# Build (or find in the cache) the kernel with every kernel/test-patches/*.patch
# applied after ours, and print its bzImage path (scripts/check-planted.sh and
# scripts/check-vm-fuzz.sh run on it).
set -euo pipefail
cd "$(dirname "$0")/.."
patches=()
for p in kernel/test-patches/*.patch; do patches+=(--patch "$p"); done
./target/release/splitfuzz vm build --quiet "${patches[@]}" | tail -n 1
