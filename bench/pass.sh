#!/usr/bin/env bash
# bench/pass.sh: `multiverse pass` against `pass` 1.7 on one 1,000-entry store, side by side.
#
# Both read the same store with the same key (a gpg-made ed25519/cv25519 key without passphrase;
# ours imported with `key import --unsealed`, the equivalent of gpg's empty passphrase).
# Prints mean wall time per command and the speed-up. Goals (issue 4): grep 50x, show 5x.
#
#   bench/pass.sh            # uses target/release/multiverse if built, else target/debug
#   N=1000 RUNS=10 bench/pass.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000}
RUNS=${RUNS:-10}
MV=${MULTIVERSE:-}
if [[ -z $MV ]]; then
  if [[ -x target/release/multiverse ]]; then MV=target/release/multiverse; else MV=target/debug/multiverse; fi
fi
[[ -x $MV ]] || { echo "build first: cargo build -p multiverse" >&2; exit 1; }
MV=$(realpath "$MV")
for t in gpg pass gpgconf; do command -v $t >/dev/null || { echo "missing $t (scripts/install-deps.sh)" >&2; exit 1; }; done

T=$(mktemp -d)
export GNUPGHOME=$T/gnupg PASSWORD_STORE_DIR=$T/store MULTIVERSE_ROOT=$T/tree
cleanup() { gpgconf --kill all 2>/dev/null || true; rm -rf "$T"; }
trap cleanup EXIT
mkdir -m 700 "$GNUPGHOME"
gpg --batch --passphrase '' --quick-gen-key "Bench <bench@example.org>" ed25519 cert,sign never 2>/dev/null
FPR=$(gpg --with-colons --list-keys bench@example.org | awk -F: '/^fpr/{print $10; exit}')
gpg --batch --passphrase '' --quick-add-key "$FPR" cv25519 encr never 2>/dev/null
gpg --export-secret-keys --armor "$FPR" | "$MV" pass key import --unsealed >/dev/null
"$MV" pass init "$FPR" >/dev/null

echo "filling a $N-entry store..." >&2
for ((i = 0; i < N; i++)); do
  printf 'pw-%05d-Xk3#pL9q\nuser: user%d@example.org\nurl: https://site%d.example.org\n' $i $i $i |
    "$MV" pass insert -m "site$((i % 20))/entry$i" >/dev/null
done
# gpg-agent warm for pass (as in daily use).
pass show site0/entry0 >/dev/null

mean_us() { # command... -> mean microseconds over RUNS (after one warm-up)
  "$@" >/dev/null 2>&1 || true
  local start end
  start=$(date +%s%N)
  for ((r = 0; r < RUNS; r++)); do "$@" >/dev/null 2>&1 || true; done
  end=$(date +%s%N)
  echo $(((end - start) / RUNS / 1000))
}

# Sanity: both find the same lines.
diff <(pass grep 'user77@' | sed 's/\x1b\[[0-9;]*[mK]//g' | sort) <("$MV" pass grep 'user77@' | sort) >/dev/null ||
  { echo "grep outputs differ" >&2; exit 1; }

printf '%-28s %12s %12s %9s\n' "operation ($N entries)" "pass (ms)" "ours (ms)" "speed-up"
row() {
  local label=$1 a b
  shift
  a=$(mean_us pass "$@")
  b=$(mean_us "$MV" pass "$@")
  awk -v l="$label" -v a="$a" -v b="$b" 'BEGIN { if (b < 1) b = 1; printf "%-28s %12.1f %12.1f %8.1fx\n", l, a / 1000, b / 1000, a / b }'
}
RUNS_SAVED=$RUNS
RUNS=${GREP_RUNS:-3}
row "grep user77@" grep 'user77@'
RUNS=$RUNS_SAVED
row "show site7/entry427" show site7/entry427
row "ls" ls
# The same show through the library alone (no libvirt start-up), when built:
#   cargo build --release -p mv-pass --example show
LIBSHOW=${LIBSHOW:-target/release/examples/show}
if [[ -x $LIBSHOW ]]; then
  a=$(mean_us pass show site7/entry427)
  b=$(mean_us "$LIBSHOW" "$MULTIVERSE_ROOT/pass-keys" "$PASSWORD_STORE_DIR" site7/entry427)
  awk -v l="show (mv-pass lib only)" -v a="$a" -v b="$b" 'BEGIN { if (b < 1) b = 1; printf "%-28s %12.1f %12.1f %8.1fx\n", l, a / 1000, b / 1000, a / b }'
  v=$(mean_us "$MV" --version)
  awk -v v="$v" 'BEGIN { printf "(multiverse --version alone: %.1f ms: the binary'"'"'s start-up)\n", v / 1000 }'
fi
