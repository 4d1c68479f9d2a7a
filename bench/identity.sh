#!/usr/bin/env bash
# bench/identity.sh: every key of N machines (default 100), two ways, in one run.
#
#   ours: `multiverse identity fleet` after ONE unseal (Argon2id at the default m=256 MiB, t=3):
#         per machine 4 SSH keys (+ .pub), an onion service, an OpenPGP key (armored secret and
#         public), a password and a LUKS key file, plus known_hosts and authorized_keys. Written
#         with one sync per export folder (the default), and again with one fsync per file
#         (MULTIVERSE_EXPORT_SYNC=per-file, the writer before) to show what the batching saves.
#   rotate: `multiverse identity rotate` of one machine and of @user, with P pass entries (default
#         50) encrypted to @user and the fleet folder brought up to date (one unseal each).
#   peer: the same set the usual way, a shell loop of 4x ssh-keygen, gpg --quick-gen-key +
#         --quick-add-key (ed25519 + cv25519) and two exports, tor (DisableNetwork 1) started on a
#         HiddenServiceDir until it writes hostname, /dev/urandom for the password and LUKS key.
#
# Usage: bench/identity.sh [N]      env MULTIVERSE_BIN (default: target/release/multiverse,
#                                   else target/debug/multiverse)
# Prints a small table and the ratio. Everything runs in a temporary folder that is removed.
set -euo pipefail

N=${1:-100}
P=${PASS_ENTRIES:-50}
cd "$(dirname "$0")/.."
BIN=${MULTIVERSE_BIN:-}
if [[ -z "$BIN" ]]; then
    if [[ -x target/release/multiverse ]]; then BIN=target/release/multiverse; else BIN=target/debug/multiverse; fi
fi
[[ -x "$BIN" ]] || { echo "build the CLI first: cargo build --release -p multiverse" >&2; exit 1; }
for t in ssh-keygen gpg gpgconf tor; do command -v "$t" >/dev/null || { echo "missing tool: $t (scripts/install-deps.sh)" >&2; exit 1; }; done

work=$(mktemp -d /tmp/mv-bench-identity.XXXXXX)
tor_pid=""
cleanup() {
    [[ -n "$tor_pid" ]] && kill "$tor_pid" 2>/dev/null || true
    GNUPGHOME="$work/gnupg" gpgconf --kill all 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# --- the machine set: the host + N-1 service VMs -------------------------------------------------
mkdir -p "$work/tree"
{
    printf '[host]\nname = "host.multiverse"\n'
    for i in $(seq 1 $((N - 1))); do
        printf '\n[[machines]]\nname = "m%03d.bench.multiverse"\ntype = "service"\n' "$i"
    done
} >"$work/tree/multiverse.toml"
names=(host.multiverse)
for i in $(seq 1 $((N - 1))); do names+=("$(printf 'm%03d.bench.multiverse' "$i")"); done

printf 'bench passphrase\n' >"$work/pass"
words="abandon amount liar amount expire adjust cage candy arch gather drum bullet absurd math era live bid rhythm alien crouch range attend journey unaware"

# --- ours ------------------------------------------------------------------------------------------
echo "$words" | "$BIN" --quiet --root "$work/tree" identity restore --passphrase-file "$work/pass"
sync
t0=$(now)
"$BIN" --quiet --root "$work/tree" identity fleet --out "$work/ours" --passphrase-file "$work/pass"
t1=$(now)
ours=$(elapsed "$t0" "$t1")
ours_files=$(find "$work/ours" -type f | wc -l)
sync
t0=$(now)
MULTIVERSE_EXPORT_SYNC=per-file "$BIN" --quiet --root "$work/tree" identity fleet --out "$work/ours-perfile" --passphrase-file "$work/pass"
t1=$(now)
perfile=$(elapsed "$t0" "$t1")
# The unseal alone (show one name), to separate the Argon2id cost from the derivation.
t2=$(now)
"$BIN" --quiet --root "$work/tree" identity show host.multiverse --passphrase-file "$work/pass" >/dev/null
t3=$(now)
unseal=$(elapsed "$t2" "$t3")

# --- rotate: one machine, then @user with P pass entries --------------------------------------------
"$BIN" --quiet --root "$work/tree" pass init --passphrase-file "$work/pass" >/dev/null
for i in $(seq 1 "$P"); do
    printf 'secret-%d\nuser: u%d\n' "$i" "$i" | "$BIN" --quiet --root "$work/tree" pass insert -m "site/$i" >/dev/null
done
t0=$(now)
"$BIN" --quiet --root "$work/tree" identity rotate m001.bench.multiverse --fleet "$work/ours" --passphrase-file "$work/pass"
t1=$(now)
rot_machine=$(elapsed "$t0" "$t1")
t0=$(now)
"$BIN" --quiet --root "$work/tree" identity rotate @user --fleet "$work/ours" --passphrase-file "$work/pass"
t1=$(now)
rot_user=$(elapsed "$t0" "$t1")
reenc=$(grep -c . "$work/tree/pass/.gpg-id")

# --- peer ------------------------------------------------------------------------------------------
export GNUPGHOME="$work/gnupg"
mkdir -m 700 "$GNUPGHOME"
mkdir -m 700 "$work/tordata"
t4=$(now)
for name in "${names[@]}"; do
    d="$work/peer/$name"
    mkdir -p -m 700 "$d"
    ssh-keygen -q -t ed25519 -N '' -C "$name" -f "$d/id_ed25519"
    ssh-keygen -q -t ecdsa -b 256 -N '' -C "$name" -f "$d/id_ecdsa"
    ssh-keygen -q -t ed25519 -N '' -C "$name" -f "$d/ssh_host_ed25519_key"
    ssh-keygen -q -t ecdsa -b 256 -N '' -C "$name" -f "$d/ssh_host_ecdsa_key"
    gpg --batch --quiet --pinentry-mode loopback --passphrase '' \
        --quick-gen-key "$name" ed25519 cert,sign never 2>/dev/null
    fpr=$(gpg --batch --with-colons --list-keys "=$name" 2>/dev/null | awk -F: '/^fpr/ {print $10; exit}')
    gpg --batch --quiet --pinentry-mode loopback --passphrase '' --quick-add-key "$fpr" cv25519 encr never 2>/dev/null
    gpg --batch --pinentry-mode loopback --passphrase '' --armor --export-secret-keys "$fpr" >"$d/openpgp-secret.asc" 2>/dev/null
    gpg --batch --armor --export "$fpr" >"$d/openpgp-public.asc" 2>/dev/null
    printf 'DataDirectory %s\nDisableNetwork 1\nSocksPort 0\nControlPort 0\nHiddenServiceDir %s\nHiddenServicePort 80 127.0.0.1:9\nLog err stderr\n' \
        "$work/tordata" "$d" >"$work/torrc"
    tor -f "$work/torrc" >/dev/null 2>&1 &
    tor_pid=$!
    until [[ -s "$d/hostname" ]]; do sleep 0.01; done
    kill "$tor_pid"; wait "$tor_pid" 2>/dev/null || true; tor_pid=""
    head -c 24 /dev/urandom | base64 | tr -d '+/=' | head -c 32 >"$d/password"; echo >>"$d/password"
    head -c 64 /dev/urandom >"$d/luks.key"
    chmod 600 "$d/password" "$d/luks.key"
    for k in ssh_host_ed25519_key ssh_host_ecdsa_key; do
        echo "$name,$(cat "$d/hostname") $(cut -d' ' -f1,2 "$d/$k.pub")" >>"$work/peer/known_hosts"
    done
done
t5=$(now)
peer=$(elapsed "$t4" "$t5")
peer_files=$(find "$work/peer" -type f | wc -l)

ratio=$(awk -v p="$peer" -v o="$ours" 'BEGIN { printf "%.3f", p / o }')
printf '\nIdentity benchmark: every key of %d machines (%s)\n' "$N" "$("$BIN" --version)"
printf '%-58s %10s %8s\n' "method" "seconds" "files"
printf '%-58s %10.2f %8d\n' "multiverse identity fleet (1 unseal, Argon2id 256 MiB)" "$ours" "$ours_files"
printf '%-58s %10.2f %8s\n' "  of which: one unseal + one name (identity show)" "$unseal" "-"
printf '%-58s %10.2f %8d\n' "the same, one fsync per file (old writer)" "$perfile" "$ours_files"
printf '%-58s %10.2f %8s\n' "identity rotate one machine (fleet folder updated)" "$rot_machine" "-"
printf '%-58s %10.2f %8s\n' "identity rotate @user ($P pass entries re-encrypted)" "$rot_user" "-"
printf '%-58s %10.2f %8d\n' "shell loop: ssh-keygen x4 + gpg quick-gen-key + tor + urandom" "$peer" "$peer_files"
printf 'ratio (peer / ours): %.1fx\n' "$ratio"
printf 'ratio (peer / ours, one fsync per file): %.1fx\n' "$(awk -v p="$peer" -v o="$perfile" 'BEGIN { printf "%.3f", p / o }')"
