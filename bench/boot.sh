#!/usr/bin/env bash
# Genesis benchmark (as root, Debian 12): from nothing to every agent answering, side by side
# with the peer way of booting the same image (virt-install --import, then waiting for its login prompt).
#
#   bench/boot.sh [MACHINES...]      default: the all-Debian lab topology, every machine
#
# Prints, in one run:
#   1. `multiverse image build debian`: cold (empty package cache) and cached (second build);
#   2. `multiverse up --start`: seconds from the start of `up` until each machine's agent
#      answered (they start one after the other, routers first), and the whole;
#   3. `systemd-analyze` and `systemd-analyze blame | head` of the star router (over `multiverse
#      ssh`, i.e. the derived keys and the virtio-serial channel);
#   4. the peer: the same base image booted by `virt-install --import` (a plain overlay, no seed),
#      timed until its console shows the login prompt;
#   5. host RSS of each idle guest's QEMU, and the disk each machine uses (its overlay);
#   6. a second boot of the star router (its seed already applied) and its systemd-analyze.
# Accelerator: MULTIVERSE_ACCEL (default tcg here: this machine's KVM boots no stock kernel).
# Compare ratios, not absolute seconds, and only within one accelerator.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
cargo build -q --release -p multiverse -p multiverse-virt -p multiverse-agent
B=$REPO/target/release
command -v virt-install >/dev/null || { echo "virt-install missing: scripts/install-deps.sh" >&2; exit 1; }
W="$(mktemp -d /var/tmp/mv-boot.XXXXXX)"
T="$W/tree"
cleanup() {
  bash "$REPO/scripts/lab-libvirtd.sh" "$W/lab" stop >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT
export MULTIVERSE_PASSPHRASE="bench passphrase" MULTIVERSE_ACCEL="${MULTIVERSE_ACCEL:-tcg}"
mv() { "$B/multiverse" --root "$T" "$@"; }
secs() { date +%s.%N; }

echo "== accelerator: $MULTIVERSE_ACCEL"
mv init --lab >/dev/null
echo "abandon amount liar amount expire adjust cage candy arch gather drum bullet absurd math era live bid rhythm alien crouch range attend journey unaware" |
  mv identity restore --kdf-memory 65536 --kdf-iterations 1 >/dev/null

# 1. image build, cold and cached.
export MULTIVERSE_IMAGE_CACHE="$W/packages"
t0=$(secs); mv image build debian >/dev/null; t1=$(secs)
rm -f "$T/images/debian.qcow2" "$T/images/debian.manifest.json"
mv image build debian >/dev/null; t2=$(secs)
printf 'image build debian: cold %.0f s, cached %.0f s, image %s\n' \
  "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)" \
  "$(du -h --apparent-size "$T/images/debian.qcow2" | cut -f1) ($(du -h "$T/images/debian.qcow2" | cut -f1) used)"

# 2. up --start, per machine.
export MULTIVERSE_CONNECT; MULTIVERSE_CONNECT="$(bash "$REPO/scripts/lab-libvirtd.sh" "$W/lab" start)"
start=$(secs)
mv up --start --timeout 900 "$@" | while IFS= read -r line; do
  printf '%7.1f s  %s\n' "$(echo "$(secs) - $start" | bc)" "$line"
done
printf 'up --start: every agent answering after %.0f s\n' "$(echo "$(secs) - $start" | bc)"
mv status

# 3. where a guest's boot time goes.
echo "== systemd-analyze (star.router.multiverse)"
mv ssh star.router.multiverse -- 'systemd-analyze; systemd-analyze blame | head -12;
  echo "-- seed and agent, seconds since the kernel started:";
  journalctl -b -o short-monotonic --no-pager -u multiverse-seed -u multiverse-agent |
    grep -E "Starting|Started|ready|multiverse-seed:" | head -12' || true

# 5. memory and disk per machine.
echo "== host RSS of each guest's QEMU (idle), and its overlay"
for pid in $(pgrep -f 'qemu-system-x86_64 .*-name guest='); do
  name=$(tr '\0' ' ' < "/proc/$pid/cmdline" | sed -n 's/.*-name guest=\([^, ]*\).*/\1/p')
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  disk=$(du -k "$T/machines/$name/disk.qcow2" 2>/dev/null | cut -f1)
  printf '  %-32s RSS %6d MiB   overlay %6d MiB\n' "$name" $((rss / 1024)) $((${disk:-0} / 1024))
done
mv down --timeout 300 >/dev/null || mv down --force --timeout 10 >/dev/null

# 6. a later boot of the same disk (seed already applied): the path a machine takes every day.
start=$(secs)
mv up --start --timeout 900 star.router.multiverse 2>&1 | grep answered || true
printf 'second boot of star.router.multiverse (no seed): agent answering after %.0f s\n' "$(echo "$(secs) - $start" | bc)"
mv ssh star.router.multiverse -- 'systemd-analyze; systemd-analyze blame | head -8' || true
mv down --timeout 300 >/dev/null || mv down --force --timeout 10 >/dev/null

# 4. the peer: virt-install --import of the same image, until sshd has started.
qemu-img create -q -f qcow2 -F qcow2 -b "$T/images/debian.qcow2" "$W/peer.qcow2"
start=$(secs)
virt-install --connect "$MULTIVERSE_CONNECT" --name peer --memory 384 --vcpus 1 \
  --virt-type qemu --machine q35 --import --disk "$W/peer.qcow2,bus=virtio" --network none \
  --graphics none --noautoconsole --osinfo detect=on,require=off \
  --serial file,path="$W/peer-console.log" >/dev/null
# The image's console shows no unit status lines, only the kernel and getty, and the peer has no
# network here to probe sshd on: its login prompt on ttyS0 is the mark.
until grep -q "login:" "$W/peer-console.log" 2>/dev/null; do
  sleep 0.5
  if [ "$(echo "$(secs) - $start > 900" | bc)" = 1 ]; then echo "peer: no sshd after 900 s"; break; fi
done
printf 'peer (virt-install --import, until its login prompt): %.0f s\n' "$(echo "$(secs) - $start" | bc)"
virsh -c "$MULTIVERSE_CONNECT" destroy peer >/dev/null 2>&1 || true
virsh -c "$MULTIVERSE_CONNECT" undefine peer >/dev/null 2>&1 || true
