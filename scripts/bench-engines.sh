#!/usr/bin/env bash
# Engine measurements (a benchmark, not a test): exec/s beside each engine's
# empty target, time to each known signature per engine, target, seed and seed
# mode, model branches over time. The driver is scripts/bench_engines.py (see
# its --help and docstring); its tests: python3 -m unittest discover scripts/tests.
#
#   scripts/bench-engines.sh [--engines "builtin libfuzzer"] [--seeds 0-5] [--max 60] \
#                            [--seed-mode minimal|corpus|both] [--work DIR] [-o OUT.md]
#
# Nothing is written inside the repository: the work dir is a new temporary
# folder unless --work names one (outside the repository, or under target/).
set -euo pipefail
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
exec python3 "$(dirname "$0")/bench_engines.py" "$@"
