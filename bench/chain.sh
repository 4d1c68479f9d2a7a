#!/usr/bin/env bash
# Router chain benchmark (as root, Debian 12): latency and throughput from the app VM to
# an HTTP server on the lab's "internet", over three paths of the same booted lab, in one run:
#   1. the app VM through the whole chain: universe NAT → galaxy WireGuard → star Tor (a private
#      Tor network in the lab, so Tor's own relays are part of the path);
#   2. the app VM through WireGuard only: a NIC hot-plugged on galaxy's network (then universe's NAT);
#   3. the app VM direct: a NIC hot-plugged on universe's network (its NAT only: the lab's physical limit);
# and each router's CPU (its QEMU's CPU time from libvirt over the wall time) during the 8 MiB
# download of each path.
#
#   bench/chain.sh [RUNS]     RUNS small requests per path for the latency median (default 10)
#
# It boots the chain exactly as the suite's tests/chain.rs does (the same code: the test runs
# with MULTIVERSE_CHAIN_BENCH=RUNS and prints the table once its checks have passed), so a
# benchmark number always comes from a chain that was just proven not to leak.
# Accelerator: TCG here (this machine's KVM boots no stock kernel); guests' network is emulated,
# so compare the paths with each other (ratios), not with hardware.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-10}"
OUT="$(mktemp /var/tmp/mv-chain-bench.XXXXXX)"
trap 'rm -f "$OUT"' EXIT
MULTIVERSE_CHAIN_BENCH="$RUNS" MULTIVERSE_CHAIN_BENCH_OUT="$OUT" MULTIVERSE_REQUIRE_TOOLS=1 \
  cargo test -q --release -p multiverse --features system-tests --test chain -- --nocapture >&2
echo "== chain bench: $RUNS small requests per path, accelerator tcg"
cat "$OUT"
