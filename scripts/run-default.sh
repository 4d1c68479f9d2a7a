#!/usr/bin/env bash
# The main job: a running Multiverse from nothing, as a person would bring one up.
#   1. installs the packages (libvirt/QEMU, image tools) and builds multiverse;
#   2. `multiverse init --lab`: the built-in default topology in its lab variant (Debian
#      everywhere, universe on a virtio NIC, no GPU/USB passthrough; TCG where `host check` finds
#      that KVM cannot boot a guest), and a new identity. On your own hardware run `multiverse
#      init` instead and put your NIC's and GPU's PCI addresses in multiverse.toml;
#   3. `multiverse image build debian` (cached between runs);
#   4. `multiverse up --start`: every machine gets its own disk and seed, booted in router order,
#      each waited for until its agent answers over virtio-serial;
#   5. `multiverse status`.
# On a host whose KVM cannot boot a guest (this development machine: `host check` says so) the
# guests run under TCG, about 40-90 s each; the whole first run takes 15-25 minutes, most of it
# the image build and the boots. The guests' networks live in a network namespace of their own
# (scripts/lab-libvirtd.sh) unless MULTIVERSE_CONNECT names another libvirt.
# Usage: scripts/run-default.sh [DIR]     (default: ./multiverse-default); as root.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$PWD/multiverse-default}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

bash "$repo/scripts/install-deps.sh" run
cargo build --quiet --release --manifest-path "$repo/Cargo.toml" -p multiverse -p multiverse-virt -p multiverse-agent
bin="$repo/target/release"
multiverse() { "$bin/multiverse" --root "$out" "$@"; }

# The identity's passphrase: yours from MULTIVERSE_PASSPHRASE, else one made here and kept in a
# 0600 file beside the tree (move it somewhere safe, or re-seal with your own).
if [ -z "${MULTIVERSE_PASSPHRASE:-}" ]; then
  pf="$out.passphrase"
  [ -s "$pf" ] || (umask 077; head -c 24 /dev/urandom | base64 > "$pf")
  MULTIVERSE_PASSPHRASE="$(cat "$pf")"
fi
export MULTIVERSE_PASSPHRASE

if [ -f "$out/multiverse.toml" ]; then
  echo "== $out/multiverse.toml exists; keeping it (use 'multiverse init --force' to start over)"
else
  multiverse init --lab
fi
if [ ! -f "$out/identity/root.sealed" ]; then
  echo "== a new identity: write the 24 words down, they are shown once"
  multiverse identity new
fi
multiverse render
# A second run boots the same disks: their overlays sit on this image, so an existing one is kept
# (`image build` refuses to replace it; `--force` would orphan the machines' overlays).
if [ ! -f "$out/images/debian.qcow2" ]; then
  multiverse image build debian
fi

if [ -z "${MULTIVERSE_CONNECT:-}" ]; then
  MULTIVERSE_CONNECT="$(bash "$repo/scripts/lab-libvirtd.sh" "$out.lab" start)"
  echo "== libvirtd in its own network namespace: $MULTIVERSE_CONNECT"
  echo "   (stop it with: bash scripts/lab-libvirtd.sh $out.lab stop)"
fi
export MULTIVERSE_CONNECT
SECONDS=0
multiverse up --start
echo "== every machine up in ${SECONDS} s"
multiverse status
