#!/usr/bin/env bash
# The main job: build `multiverse` and write the built-in default topology (DESIGN.md: host,
# universe/galaxy/star routers, controller, a service and an application VM) into a folder, rendered
# into libvirt definitions and configuration files.
# Usage: scripts/run-default.sh [DIR]     (default: ./multiverse-default)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$PWD/multiverse-default}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

bash "$repo/scripts/install-deps.sh" build
cargo build --quiet --manifest-path "$repo/Cargo.toml" -p multiverse --bin multiverse
mv="$repo/target/debug/multiverse"

if [ -f "$out/multiverse.toml" ]; then
  echo "== $out/multiverse.toml exists; keeping it (use 'multiverse init --force' to start over)"
else
  "$mv" --root "$out" init
fi
"$mv" --root "$out" render
"$mv" --root "$out" machine list
echo "== the tree is in $out"
