#!/usr/bin/env bash
# `multiverse install` against the same steps typed by hand (sfdisk, cryptsetup, mkfs, cp, update-
# initramfs, grub-install), on the same blank disk of the same lab VM (TCG here: compare the
# ratio, not the seconds). Neither setup-alpine (no Alpine mirror) nor Debian's installer with a
# preseed file (no installer image offline) can run here; the by-hand script is the peer.
# Power-on to LUKS unlocked (token + passphrase, and cryptsetup's own prompt without the token)
# is printed by the lab test itself: cargo test -p multiverse --features system-tests --test install_lab -- --nocapture
# Usage: bench/install.sh [ROUNDS]     (as root; builds and caches the lab and host images)
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_ROUNDS="${1:-1}" cargo test -p multiverse --features system-tests --test install_lab -- --ignored --nocapture \
    install_benchmark_against_the_same_steps_by_hand 2>&1 | grep -E '^BENCH|test result'
