#!/usr/bin/env bash
# Starts the daemons the tests talk to (this machine has no systemd): virtlogd and libvirtd.
# Idempotent: a running daemon is left alone.
set -euo pipefail
if [ -e /dev/kvm ]; then chgrp kvm /dev/kvm 2>/dev/null && chmod 660 /dev/kvm || true; fi
mkdir -p /run/libvirt
if ! pgrep -x virtlogd >/dev/null; then virtlogd -d; fi
if ! pgrep -x libvirtd >/dev/null; then libvirtd -d; fi
for _ in $(seq 1 120); do
  [ -S /run/libvirt/libvirt-sock ] && break
  sleep 0.5
done
[ -S /run/libvirt/libvirt-sock ] || { echo "libvirtd did not come up" >&2; exit 1; }
# The first call is slow (~15 s capability probe): pay it once here, not in a test's timeout.
timeout 120 virsh -c qemu:///system version >/dev/null
echo "start-services.sh: libvirtd ready"
