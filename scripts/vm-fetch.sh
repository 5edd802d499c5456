#!/usr/bin/env bash
# Fetches the pinned Linux source package (Debian linux-source-7.2, 7.2.13-1,
# from Debian unstable) into the splitfuzz cache and unpacks it once.
#
#   scripts/vm-fetch.sh [--allow-newer]
#
# Prints the path of the unpacked tree on its last line of stdout. The machine's
# apt setup is left unchanged: a private apt state under the cache holds one
# sources file for the unstable suite, with the mirror URI taken at run time
# from the machine's own apt configuration (no host name lives in this repo).
#
# Cache layout (SPLITFUZZ_CACHE, default ~/.cache/splitfuzz):
#   dl/linux-source-7.2_7.2.13-1_all.deb   the package as downloaded
#   src/linux-source-7.2.13-1/             the unpacked tree (read-only use)
#   apt/                                   the private apt state
#
# When the pinned version is gone from the suite, the script stops with the
# pinned version, any cached copy, and the ways out: `--source DIR`, or
# --allow-newer to take the newest 7.2.x there instead (with a warning).
set -euo pipefail
PKG=linux-source-7.2
PIN=7.2.13-1
CACHE=${SPLITFUZZ_CACHE:-$HOME/.cache/splitfuzz}
allow_newer=0
for a in "$@"; do
  case "$a" in
    --allow-newer) allow_newer=1 ;;
    *) echo "vm-fetch: unknown argument $a" >&2; exit 2 ;;
  esac
done
log() { echo "vm-fetch: $*" >&2; }

unpack() { # deb version -> prints tree path
  local deb=$1
  local ver=$2
  local dest="$CACHE/src/$PKG-$ver"
  if [ -f "$dest/.unpacked" ]; then echo "$dest"; return; fi
  log "unpacking $deb into $dest"
  rm -rf "$dest" "$dest.tmp"
  mkdir -p "$dest.tmp/x"
  dpkg-deb -x "$deb" "$dest.tmp/x"
  local tarball
  tarball=$(find "$dest.tmp/x/usr/src" -maxdepth 1 -name "$PKG.tar.*" | head -1)
  [ -n "$tarball" ] || { log "no $PKG.tar.* in $deb"; exit 1; }
  tar -C "$dest.tmp" -xf "$tarball"
  mv "$dest.tmp/$PKG" "$dest"
  rm -rf "$dest.tmp"
  echo "$ver" > "$dest/.unpacked"
  echo "$dest"
}

pinned_deb="$CACHE/dl/${PKG}_${PIN}_all.deb"
if [ -f "$pinned_deb" ]; then
  unpack "$pinned_deb" "$PIN"
  exit 0
fi

# The mirror URI from the machine's apt configuration (deb822 or one-line form).
uri=""
for f in /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] || continue
  uri=$(awk '/^URIs:/ {print $2; exit}' "$f")
  case "$uri" in */debian) break ;; esac
done
if [ -z "$uri" ]; then
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    uri=$(awk '$1=="deb" { for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' "$f")
    [ -n "$uri" ] && break
  done
fi
[ -n "$uri" ] || { log "no Debian mirror URI in /etc/apt (give a tree with --source DIR)"; exit 1; }

apt="$CACHE/apt"
mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$CACHE/dl"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri unstable main" > "$apt/sources.list"
opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
      -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o Debug::NoLocking=1
      -o APT::Sandbox::User=root)
log "apt-get update (private state $apt, suite unstable)"
apt-get "${opts[@]}" update -qq >&2
ver=$PIN
if ! apt-cache "${opts[@]}" show "$PKG=$PIN" >/dev/null 2>&1; then
  avail=$(apt-cache "${opts[@]}" policy "$PKG" 2>/dev/null | awk '/Candidate:/ {print $2}')
  cached=$(ls "$CACHE"/src 2>/dev/null | grep "^$PKG-" | tr '\n' ' ' || true)
  if [ "$allow_newer" = 1 ] && [ -n "$avail" ] && [ "$avail" != "(none)" ] && case "$avail" in 7.2.*) true ;; *) false ;; esac; then
    log "WARNING: pinned $PKG=$PIN is gone from unstable; taking $avail because --allow-newer was given"
    log "WARNING: results are then for $avail, not the pinned 7.2.13"
    ver=$avail
  else
    log "the pinned $PKG=$PIN is no longer in Debian unstable (it offers: ${avail:-nothing})."
    log "cached trees: ${cached:-none}."
    log "ways out: give a Linux 7.2 tree with --source DIR, or pass --allow-newer to accept a newer 7.2.x."
    exit 1
  fi
fi
( cd "$CACHE/dl" && apt-get "${opts[@]}" download -qq "$PKG=$ver" >&2 )
deb=$(ls "$CACHE/dl/${PKG}_${ver}"_*.deb 2>/dev/null | head -1)
[ -n "$deb" ] || { log "download of $PKG=$ver left no .deb in $CACHE/dl"; exit 1; }
unpack "$deb" "$ver"
