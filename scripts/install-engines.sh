#!/usr/bin/env bash
# Install the external fuzzing engines used by `splitfuzz engine` and
# `splitfuzz continuous` (idempotent).
#
#   scripts/install-engines.sh            # everything: apt deps, cargo-fuzz, cargo-afl, honggfuzz
#   scripts/install-engines.sh libfuzzer  # only what one engine needs (libfuzzer|afl|honggfuzz)
#
# Each step runs only if its tool is missing. libFuzzer targets need a nightly
# toolchain (cargo +nightly fuzz ...); it is installed with rustup if missing.
set -euo pipefail

want="${1:-all}"
case "$want" in
  all|libfuzzer|afl|honggfuzz) ;;
  *) echo "usage: $0 [all|libfuzzer|afl|honggfuzz]" >&2; exit 2 ;;
esac

log() { printf '[install-engines] %s\n' "$*"; }
have() { command -v "$1" >/dev/null 2>&1; }
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

SUDO=""
if [ "$(id -u)" != 0 ] && have sudo; then SUDO="sudo"; fi

apt_deps() {
  # honggfuzz links against libbfd and libopcodes (binutils-dev), libunwind and,
  # built with clang, the blocks runtime (libblocksruntime-dev); make and a C compiler build it.
  local missing=()
  for p in binutils-dev libunwind-dev libblocksruntime-dev make gcc; do
    if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      log "apt: $p already installed"
    else
      missing+=("$p")
    fi
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    if ! have apt-get; then
      log "apt-get not found; install ${missing[*]} by hand"; return 1
    fi
    log "apt: apt-get update"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
    log "apt: installing ${missing[*]}"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
}

nightly() {
  if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    log "rustup: nightly toolchain present"
  else
    log "rustup: installing nightly toolchain (needed by cargo-fuzz / -Zsanitizer)"
    rustup toolchain install nightly --profile minimal
  fi
}

cargo_tool() { # cargo_tool BINARY CRATE [VERSION]
  if have "$1"; then
    log "cargo: $1 already installed ($(command -v "$1"))"
  else
    log "cargo: cargo install --locked $2${3:+ --version $3}"
    cargo install --locked "$2" ${3:+--version "$3"}
  fi
}

# The version of a crate in fuzz/Cargo.lock (empty when it is not there).
locked() {
  awk -v n="$1" '$1 == "name" && $3 == "\"" n "\"" { getline; gsub(/"/, "", $3); print $3; exit }' \
    "$(dirname "$0")/../fuzz/Cargo.lock" 2>/dev/null || true
}

if [ "$want" = all ] || [ "$want" = libfuzzer ]; then
  nightly
  cargo_tool cargo-fuzz cargo-fuzz
fi
if [ "$want" = all ] || [ "$want" = afl ]; then
  cargo_tool cargo-afl cargo-afl
  # cargo-afl builds AFL++ itself once per afl crate version.
  if cargo afl config --help >/dev/null 2>&1; then
    if ls "${XDG_DATA_HOME:-$HOME/.local/share}"/afl.rs/rustc-*/afl.rs-*/afl/bin/afl-fuzz >/dev/null 2>&1; then
      log "afl: AFL++ already built"
    else
      log "afl: cargo afl config --build"
      cargo afl config --build
    fi
  fi
fi
if [ "$want" = all ] || [ "$want" = honggfuzz ]; then
  apt_deps
  # cargo-hfuzz builds the honggfuzz the targets' honggfuzz crate was made
  # for: install the version fuzz/Cargo.lock locks.
  cargo_tool cargo-hfuzz honggfuzz "$(locked honggfuzz)"
fi
log "done"
