#!/usr/bin/env bash
# Installs the system packages Multiverse needs (Debian 12, as root). Idempotent.
#   install-deps.sh build   only what building the binaries needs (libvirt headers, pkg-config)
#   install-deps.sh run     what the main job (scripts/run-default.sh) uses: the build packages,
#                           QEMU/libvirt and the image tools
#   install-deps.sh         everything the test suite and benchmarks use (the default)
set -euo pipefail
mode="${1:-test}"
export DEBIAN_FRONTEND=noninteractive

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps.sh: must run as root (it uses apt-get)" >&2
  exit 1
fi

if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
  cat > /etc/apt/sources.list.d/multiverse-backports.sources <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi

apt-get update -qq
if [ "$mode" = build ]; then
  apt-get install -y -qq --no-install-recommends -t bookworm-backports libvirt-dev >/dev/null
  apt-get install -y -qq --no-install-recommends pkg-config >/dev/null
  echo "install-deps.sh: build packages ready"
  exit 0
fi
# qemu-utils on this image comes from backports, so QEMU and libvirt must too.
apt-get install -y -qq --no-install-recommends -t bookworm-backports \
  qemu-system-x86 qemu-system-modules-spice qemu-utils libvirt-daemon-system libvirt-clients libvirt-dev \
  libvirt-daemon-driver-qemu >/dev/null
apt-get install -y -qq --no-install-recommends pkg-config binutils openssh-client iproute2 util-linux >/dev/null
[ "$mode" = run ] || apt-get install -y -qq --no-install-recommends \
  pkg-config libclang-dev clang \
  gnupg gpg-agent pass pass-extension-otp oathtool git xvfb xclip \
  tor openssh-server openssh-client cryptsetup-bin tcpdump \
  prometheus-node-exporter nftables dnsmasq-base wireguard-tools wireguard-go openvpn openssl \
  debootstrap tmux wrk hyperfine udev iproute2 ovmf qemu-efi-aarch64 virtinst bc \
  libxml2-utils busybox-static python3 python3-cryptography keyutils openrc curl \
  mtools dosfstools >/dev/null
# multiverse image build: packages into a folder, ext4 from the folder, MBR + GRUB by dd (docs/images.md).
apt-get install -y -qq --no-install-recommends \
  mmdebstrap e2fsprogs fdisk grub-pc-bin grub-common >/dev/null

# /dev/kvm is root:root 0600 on a new machine; libvirt re-probes for ~48 s per call without this.
if [ -e /dev/kvm ]; then
  getent group kvm >/dev/null || groupadd -r kvm
  chgrp kvm /dev/kvm && chmod 660 /dev/kvm
fi
# The dependency policy checker (deny.toml) that scripts/test.sh runs; built once from crates.io.
if [ "$mode" != run ] && ! cargo deny --version 2>/dev/null | grep -q '^cargo-deny 0.20.2$'; then
  cargo install cargo-deny --version 0.20.2 --locked --quiet
fi
echo "install-deps.sh: system packages ready"
