#!/usr/bin/env bash
# Starts the daemons the tests talk to (this machine has no systemd): virtlogd and libvirtd.
# Idempotent: a running daemon is left alone.
set -euo pipefail
if [ -e /dev/kvm ]; then chgrp kvm /dev/kvm 2>/dev/null && chmod 660 /dev/kvm || true; fi
mkdir -p /run/libvirt
# Judged by their sockets, not by process names: a lab libvirtd (scripts/lab-libvirtd.sh) runs in
# its own namespace with its own sockets and must not count as the system one.
if [ ! -S /run/libvirt/virtlogd-sock ] || ! pgrep -F /run/virtlogd.pid >/dev/null 2>&1; then
  rm -f /run/libvirt/virtlogd-sock; virtlogd -d
fi
if [ ! -S /run/libvirt/libvirt-sock ] || ! pgrep -F /run/libvirtd.pid >/dev/null 2>&1; then
  rm -f /run/libvirt/libvirt-sock; libvirtd -d
fi
for _ in $(seq 1 120); do
  [ -S /run/libvirt/libvirt-sock ] && break
  sleep 0.5
done
[ -S /run/libvirt/libvirt-sock ] || { echo "libvirtd did not come up" >&2; exit 1; }
# The first call is slow (~15 s capability probe): pay it once here, not in a test's timeout.
timeout 120 virsh -c qemu:///system version >/dev/null
echo "start-services.sh: libvirtd ready"
