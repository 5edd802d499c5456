#!/usr/bin/env bash
# Installs what `splitfuzz vm build` and `vm run` need: QEMU (TCG), the kernel
# build dependencies, cpio and busybox-static for the initramfs. Idempotent:
# packages already installed are left alone and apt is not called at all when
# nothing is missing.
set -euo pipefail
pkgs=(qemu-system-x86 flex bison bc libelf-dev libssl-dev cpio busybox-static
      gcc make xz-utils zstd)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "vm-deps: all present (${pkgs[*]})"
  exit 0
fi
echo "vm-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "vm-deps: done"
