#!/usr/bin/env bash
# Provisioning speed, side by side with what a provision.sh rerun costs (as root, Debian 12).
#
#   bench/provision.sh [path/to/multiverse]
#
# On a debootstrapped Debian root already provisioned as browser.app.multiverse:
#   1. `multiverse provision plan`  (render + read the target + diff; no changes)
#   2. `multiverse provision apply` (the same, a no-op apply)
#   3. the provision.sh way of re-running: `apt-get install` of the same packages in the chroot
#      (a no-op too) and a copy of the rendered files over the root, which neither checks nor
#      reports anything.
# Uses hyperfine; the identity is sealed with cheap Argon2 parameters so unsealing does not
# dominate (the default 256 MiB Argon2 costs about a second on its own, once per command).
set -euo pipefail
cd "$(dirname "$0")/.."
MV="${1:-target/debug/multiverse}"
[ -x "$MV" ] || cargo build -q -p multiverse
command -v hyperfine >/dev/null || { echo "hyperfine missing: scripts/install-deps.sh" >&2; exit 1; }

CACHE=/var/cache/multiverse-tests/debootstrap-bookworm
[ -f "$CACHE/etc/debian_version" ] || {
  mkdir -p "$(dirname "$CACHE")"
  debootstrap --variant=minbase bookworm "$CACHE.building" http://deb.debian.org/debian
  chroot "$CACHE.building" apt-get update -q
  mv "$CACHE.building" "$CACHE"
}
W="$(mktemp -d /var/tmp/mv-bench.XXXXXX)"
trap 'rm -rf "$W"' EXIT
export MULTIVERSE_PASSPHRASE="bench passphrase"
T="$W/tree"; R="$W/root"
"$MV" --root "$T" init >/dev/null
echo "abandon amount liar amount expire adjust cage candy arch gather drum bullet absurd math era live bid rhythm alien crouch range attend journey unaware" |
  "$MV" --root "$T" identity restore --kdf-memory 1024 --kdf-iterations 1 >/dev/null
cp -a "$CACHE" "$R"
M=browser.app.multiverse
/usr/bin/time -f "first apply (packages from the mirror): %e s" "$MV" --root "$T" provision apply "$M" --target "$R" >/dev/null
"$MV" --root "$T" provision render "$M" >/dev/null
FILES="$T/machines/$M/provision/files"
PKGS="openssh-server ifupdown ca-certificates"

hyperfine --warmup 1 --runs 10 --export-markdown "$W/table.md" \
  -n "multiverse provision plan (no changes)" "$MV --root $T provision plan $M --target $R" \
  -n "multiverse provision apply (no changes)" "$MV --root $T provision apply $M --target $R" \
  -n "provision.sh rerun (apt-get install + cp)" \
     "chroot $R apt-get install -y -q --no-install-recommends $PKGS >/dev/null && cp -a $FILES/. $R/" >/dev/null
cat "$W/table.md"
