#!/usr/bin/env bash
# bench/pass.sh: `multiverse pass` against `pass` 1.7 on one 1,000-entry store, side by side, as
# people really use them:
#   - pass: a passphrase-protected gpg key (ed25519/cv25519), gpg-agent warm (passphrase cached);
#   - ours: the same key, sealed under the identity passphrase (the default: Argon2id with the
#     default parameters), after one unlock (the session cache holds the unsealed key).
# Prints the first, unlocking call of ours alone, then mean wall time per command and the
# speed-up. Goals (issue 17): show >= 50x, grep >= 200x.
#
#   bench/pass.sh            # uses target/release/multiverse if built, else target/debug
#   N=1000 RUNS=10 bench/pass.sh      (grep: one timed run each; pass needs ~0.3 s per entry)
#   GREP=0 RUNS=30 bench/pass.sh      (without grep: a few minutes less)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000}
RUNS=${RUNS:-10}
MV=${MULTIVERSE:-}
if [[ -z $MV ]]; then
  if [[ -x target/release/multiverse ]]; then MV=target/release/multiverse; else MV=target/debug/multiverse; fi
fi
[[ -x $MV ]] || { echo "build first: cargo build --release -p multiverse --bin multiverse" >&2; exit 1; }
MV=$(realpath "$MV")
for t in gpg pass gpgconf; do command -v $t >/dev/null || { echo "missing $t (scripts/install-deps.sh)" >&2; exit 1; }; done

T=$(mktemp -d)
export GNUPGHOME=$T/gnupg PASSWORD_STORE_DIR=$T/store MULTIVERSE_ROOT=$T/tree
export MULTIVERSE_PASS_AGENT_DIR=$T/agent
unset MULTIVERSE_PASSPHRASE
# Both caches outlive the run (pass's grep alone takes minutes): gpg-agent's default-cache-ttl
# below, ours here.
export MULTIVERSE_PASS_CACHE_TTL=86400
cleanup() { "$MV" pass lock >/dev/null 2>&1 || true; gpgconf --kill all 2>/dev/null || true; rm -rf "$T"; }
trap cleanup EXIT
mkdir -m 700 "$GNUPGHOME"
echo "default-cache-ttl 86400" >"$GNUPGHOME/gpg-agent.conf"
KEYPW=gpg-key-passphrase
printf '%s\n' "$KEYPW" >"$T/keypw"
printf '%s\n' "identity-passphrase" >"$T/idpw"
chmod 600 "$T/keypw" "$T/idpw"
gpg --batch --pinentry-mode loopback --passphrase "$KEYPW" --quick-gen-key "Bench <bench@example.org>" ed25519 cert,sign never 2>/dev/null
FPR=$(gpg --with-colons --list-keys bench@example.org | awk -F: '/^fpr/{print $10; exit}')
gpg --batch --pinentry-mode loopback --passphrase "$KEYPW" --quick-add-key "$FPR" cv25519 encr never 2>/dev/null
# Ours: the same key, sealed under the identity passphrase with the default Argon2id parameters.
gpg --batch --pinentry-mode loopback --passphrase "$KEYPW" --export-secret-keys --armor "$FPR" |
  "$MV" pass --passphrase-file "$T/idpw" key import --key-passphrase-file "$T/keypw" >/dev/null 2>&1
"$MV" pass init "$FPR" >/dev/null

echo "filling a $N-entry store..." >&2
for ((i = 0; i < N; i++)); do
  printf 'pw-%05d-Xk3#pL9q\nuser: user%d@example.org\nurl: https://site%d.example.org\n' $i $i $i |
    "$MV" pass insert -m "site$((i % 20))/entry$i" >/dev/null
done
# gpg-agent warm for pass, as in daily use: the key's passphrase is cached once.
gpg --batch --pinentry-mode loopback --passphrase "$KEYPW" -d "$PASSWORD_STORE_DIR/site0/entry0.gpg" >/dev/null 2>&1
pass show site0/entry0 >/dev/null

# The first, unlocking call of ours, alone (Argon2id unseal + handing the key to the agent).
"$MV" pass lock >/dev/null 2>&1 || true
start=$(date +%s%N)
"$MV" pass --passphrase-file "$T/idpw" show site7/entry427 >/dev/null 2>&1
end=$(date +%s%N)
first_ms=$(awk -v d=$((end - start)) 'BEGIN { printf "%.1f", d / 1e6 }')

mean_us() { # command... -> mean microseconds over RUNS (after one warm-up); a failure stops the bench
  "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }
  local start end
  start=$(date +%s%N)
  for ((r = 0; r < RUNS; r++)); do "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }; done
  end=$(date +%s%N)
  echo $(((end - start) / RUNS / 1000))
}
once_us() { # out-file command... -> microseconds of one run, its stdout kept
  local out=$1 start end
  shift
  start=$(date +%s%N)
  "$@" >"$out" 2>/dev/null </dev/null || { echo "failed: $*" >&2; exit 1; }
  end=$(date +%s%N)
  echo $(((end - start) / 1000))
}

echo "store: $N entries; pass: passphrase-protected gpg key, gpg-agent warm; ours: sealed key after one unlock"
printf '%-34s %12s\n' "ours, first call (unlocks)" "$first_ms ms"
printf '%-34s %12s %12s %9s\n' "operation" "pass (ms)" "ours (ms)" "speed-up"
show_row() {
  awk -v l="$1" -v a="$2" -v b="$3" 'BEGIN { if (b < 1) b = 1; printf "%-34s %12.1f %12.1f %8.1fx\n", l, a / 1000, b / 1000, a / b }'
}
row() {
  local label=$1 a b
  shift
  a=$(mean_us pass "$@")
  b=$(mean_us "$MV" pass "$@")
  show_row "$label" "$a" "$b"
}
# grep: pass takes ~N x its per-entry gpg call, so one timed run each (ours after a warm-up),
# and both must print the same lines. GREP=0 skips it (minutes for pass).
if [[ ${GREP:-1} != 0 ]]; then
"$MV" pass grep 'user77@' >/dev/null </dev/null
a=$(once_us "$T/grep.pass" pass grep 'user77@')
b=$(once_us "$T/grep.ours" "$MV" pass grep 'user77@')
diff <(sed 's/\x1b\[[0-9;]*[mK]//g' "$T/grep.pass" | sort) <(sort "$T/grep.ours") >/dev/null ||
  { echo "grep outputs differ" >&2; exit 1; }
show_row "grep user77@ (one run)" "$a" "$b"
fi
[[ $("$MV" pass show site7/entry427 </dev/null | head -1) == pw-00427-Xk3#pL9q ]] ||
  { echo "ours did not show the entry (not unlocked?)" >&2; exit 1; }
row "show site7/entry427" show site7/entry427
row "ls" ls
row "find entry42" find entry42
v=$(mean_us "$MV" --version)
awk -v v="$v" 'BEGIN { printf "(multiverse --version alone: %.1f ms: the binary'"'"'s start-up)\n", v / 1000 }'
