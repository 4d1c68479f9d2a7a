#!/usr/bin/env bash
# A libvirtd of its own, in its own mount and network namespace, so that the bridges, taps and
# packets of the guests it starts never touch this machine's network (see ENVIRONMENT notes in
# docs/libvirt.md). Everything it keeps lives under DIR; clients outside reach it with
#   qemu:///system?socket=DIR/sock/libvirt-sock
# and `nsenter -t "$(cat DIR/libvirtd.pid)" -n ip link` shows its bridges.
#
#   lab-libvirtd.sh DIR start   start virtlogd + libvirtd (idempotent), print the URI
#   lab-libvirtd.sh DIR stop    stop both (by PID) and forget their state
#   lab-libvirtd.sh DIR uri     print the URI
#
# QEMU runs as root with no dynamic ownership or security driver inside this lab: the guests'
# disks live in throw-away test trees that an unprivileged QEMU could not traverse.
set -euo pipefail
dir=${1:?usage: lab-libvirtd.sh DIR start|stop|uri}
cmd=${2:-start}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
uri="qemu:///system?socket=$dir/sock/libvirt-sock"

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

case "$cmd" in
uri) echo "$uri" ;;
stop)
  # Guests outlive libvirtd: first every QEMU in the lab's network namespace (a guest's command
  # line need not name the lab folder: its disks and sockets live elsewhere).
  if alive "$dir/libvirtd.pid"; then
    netns=$(readlink "/proc/$(cat "$dir/libvirtd.pid")/ns/net" 2>/dev/null || true)
    if [ -n "$netns" ] && [ "$netns" != "$(readlink /proc/self/ns/net)" ]; then
      for q in $(pgrep -f qemu-system 2>/dev/null || true); do
        [ "$(readlink "/proc/$q/ns/net" 2>/dev/null)" = "$netns" ] && kill -9 "$q" 2>/dev/null || true
      done
    fi
  fi
  for p in libvirtd virtlogd; do
    if alive "$dir/$p.pid"; then
      pid=$(cat "$dir/$p.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/$p.pid"
  done
  # Guests outlive libvirtd; their QEMU processes name the lab folder on their command line.
  pkill -f -- "-name guest=[^ ]*.*$dir/" 2>/dev/null || true
  for pid in $(pgrep -f "qemu-system.*$dir" 2>/dev/null || true); do kill -9 "$pid" 2>/dev/null || true; done
  ;;
start)
  if alive "$dir/libvirtd.pid" && [ -S "$dir/sock/libvirt-sock" ]; then echo "$uri"; exit 0; fi
  mkdir -p "$dir/sock" "$dir/lib" "$dir/log" "$dir/cache"
  if [ ! -d "$dir/etc" ]; then cp -a /etc/libvirt "$dir/etc"; fi
  rm -rf "$dir/etc/qemu" "$dir/etc/storage" "$dir/etc/qemu/networks"
  mkdir -p "$dir/etc/qemu/networks" "$dir/etc/storage"
  cat > "$dir/etc/qemu.conf" <<CONF
user = "root"
group = "root"
dynamic_ownership = 0
security_driver = "none"
CONF
  cat > "$dir/libvirtd.conf" <<CONF
unix_sock_dir = "$dir/sock"
unix_sock_group = "root"
unix_sock_rw_perms = "0700"
auth_unix_rw = "none"
auth_unix_ro = "none"
CONF
  rm -f "$dir/sock/"*
  unshare --mount --net --propagation private --fork bash -euc '
    d=$1
    mkdir -p /run/libvirt
    mount -t tmpfs -o mode=0755 tmpfs /run/libvirt
    mount --bind "$d/etc" /etc/libvirt
    mount --bind "$d/lib" /var/lib/libvirt
    mkdir -p /var/log/libvirt /var/cache/libvirt
    mount --bind "$d/log" /var/log/libvirt
    mount --bind "$d/cache" /var/cache/libvirt
    ip link set lo up
    virtlogd -d -p "$d/virtlogd.pid"
    libvirtd -d -f "$d/libvirtd.conf" -p "$d/libvirtd.pid"
  ' lab "$dir"
  for _ in $(seq 1 200); do [ -S "$dir/sock/libvirt-sock" ] && break; sleep 0.1; done
  [ -S "$dir/sock/libvirt-sock" ] || { echo "lab-libvirtd.sh: libvirtd did not come up (see $dir/log)" >&2; exit 1; }
  echo "$uri"
  ;;
*) echo "usage: lab-libvirtd.sh DIR start|stop|uri" >&2; exit 2 ;;
esac
