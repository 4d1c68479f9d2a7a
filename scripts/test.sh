#!/usr/bin/env bash
# The one test command: installs what the tests need, starts the services they use, then runs
# formatting, lints and the whole suite (unit, real-tool integration, golden, property tests).
# Usage: scripts/test.sh            (as root, on Debian 12)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
bash scripts/start-services.sh

# Rust tools the suite uses.
rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== cargo fmt"
cargo fmt --all -- --check
echo "== cargo deny (deny.toml: licenses, duplicate versions, banned crates, sources)"
cargo deny --offline check licenses bans sources
echo "== cargo clippy"
cargo clippy --workspace --all-targets --features system-tests --locked -- -D warnings
# and the hermetic build a new contributor's plain `cargo test` makes (no dead code without the feature)
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo doc (every library documented: missing_docs denied)"
RUSTDOCFLAGS="-D missing_docs -D warnings" cargo doc --no-deps --locked --workspace \
  --exclude multiverse --exclude multiverse-virt --exclude multiverse-agent
echo "== cargo test"
# Real-tool tests are mandatory here (feature `system-tests`: gpg, pass, libvirtd, QEMU, tor, the lab
# VMs…): a missing tool is a failure, never a skip. Plain `cargo test` runs only the hermetic rest.
export MULTIVERSE_REQUIRE_TOOLS=1
cargo test --workspace --features system-tests --locked --no-fail-fast -- --test-threads="${TEST_THREADS:-4}"
