#!/usr/bin/env bash
# bench/identity.sh: every key of N machines (default 100), two ways, in one run.
#
#   ours: `multiverse identity fleet` after one unlock of the session (the identity root is held
#         by the session agent, so the fleet asks for no passphrase and runs no Argon2id): per
#         machine 4 SSH keys (+ .pub), an onion service, an OpenPGP key (armored secret and
#         public), a password and a LUKS key file, plus known_hosts and authorized_keys. Written
#         with one sync per export folder (the default), and again with one fsync per file
#         (MULTIVERSE_EXPORT_SYNC=per-file, the writer before) to show what the batching saves.
#         Also measured: the first, unlocking call alone (`identity show` of one name: one
#         Argon2id unseal at the default m=256 MiB, t=3, and the root handed to the agent), and
#         the cold fleet (`identity lock` first: the fleet pays that one unseal itself).
#   rotate: `multiverse identity rotate` of one machine and of @user, with P pass entries (default
#         50) encrypted to @user and the fleet folder brought up to date (session cache unlocked).
#   peer: the same set the usual way, a shell loop of 4x ssh-keygen, gpg --quick-gen-key +
#         --quick-add-key (ed25519 + cv25519) and two exports, tor (DisableNetwork 1) started on a
#         HiddenServiceDir until it writes hostname, /dev/urandom for the password and LUKS key.
#
# Usage: bench/identity.sh [N]      env MULTIVERSE_BIN (default: target/release/multiverse,
#                                   else target/debug/multiverse)
# Prints a small table and the ratios. Everything runs in a temporary folder that is removed.
set -euo pipefail
# The default session cache lifetimes, and no passphrase but the file given to each command.
unset MULTIVERSE_PASS_CACHE_TTL MULTIVERSE_PASS_CACHE_MAX_TTL MULTIVERSE_PASSPHRASE

N=${1:-100}
P=${PASS_ENTRIES:-50}
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib/peer.sh
. bench/lib/peer.sh
BIN=$(bench_bin)
bench_need ssh-keygen gpg gpgconf tor

work=$(mktemp -d /tmp/mv-bench-identity.XXXXXX)
# The session agent (the identity root, pass's keys) lives in the temporary folder and is ended
# by `identity lock` (the same as `pass lock`).
export MULTIVERSE_PASS_AGENT_DIR="$work/pass-agent"
cleanup() {
    "$BIN" --quiet --root "$work/tree" identity lock >/dev/null 2>&1 || true
    peer_cleanup
    rm -rf "$work"
}
trap cleanup EXIT

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
lock() { "$BIN" --quiet --root "$work/tree" identity lock; }
# Cold: nothing unlocked, the fleet pays its one Argon2id unseal (and unlocks the session).
lock
sync
t0=$(bench_now)
"$BIN" --quiet --root "$work/tree" identity fleet --out "$work/ours-cold" --passphrase-file "$work/pass"
t1=$(bench_now)
cold=$(bench_elapsed "$t0" "$t1")
# The first, unlocking call alone (show one name): the Argon2id cost and the agent's start.
lock
t2=$(bench_now)
"$BIN" --quiet --root "$work/tree" identity show host.multiverse --passphrase-file "$work/pass" >/dev/null
t3=$(bench_now)
unseal=$(bench_elapsed "$t2" "$t3")
# After that one unlock: no passphrase source at all (stdin closed), the root from the agent.
sync
t0=$(bench_now)
"$BIN" --quiet --root "$work/tree" identity fleet --out "$work/ours" </dev/null
t1=$(bench_now)
ours=$(bench_elapsed "$t0" "$t1")
ours_files=$(find "$work/ours" -type f | wc -l)
sync
t0=$(bench_now)
MULTIVERSE_EXPORT_SYNC=per-file "$BIN" --quiet --root "$work/tree" identity fleet --out "$work/ours-perfile" </dev/null
t1=$(bench_now)
perfile=$(bench_elapsed "$t0" "$t1")

# --- rotate: one machine, then @user with P pass entries --------------------------------------------
"$BIN" --quiet --root "$work/tree" pass init --passphrase-file "$work/pass" >/dev/null
for i in $(seq 1 "$P"); do
    printf 'secret-%d\nuser: u%d\n' "$i" "$i" | "$BIN" --quiet --root "$work/tree" pass insert -m "site/$i" >/dev/null
done
t0=$(bench_now)
"$BIN" --quiet --root "$work/tree" identity rotate m001.bench.multiverse --fleet "$work/ours" --passphrase-file "$work/pass"
t1=$(bench_now)
rot_machine=$(bench_elapsed "$t0" "$t1")
t0=$(bench_now)
"$BIN" --quiet --root "$work/tree" identity rotate @user --fleet "$work/ours" --passphrase-file "$work/pass"
t1=$(bench_now)
rot_user=$(bench_elapsed "$t0" "$t1")

# --- peer ------------------------------------------------------------------------------------------
export GNUPGHOME="$work/gnupg"
mkdir -m 700 "$GNUPGHOME"
mkdir -m 700 "$work/tordata"
mkdir "$work/peer"
t4=$(bench_now)
for name in "${names[@]}"; do
    d="$work/peer/$name"
    mkdir -m 700 "$d"
    peer_ssh_key "$d/id_ed25519" ed25519 "$name"
    peer_ssh_key "$d/id_ecdsa" ecdsa "$name"
    peer_ssh_key "$d/ssh_host_ed25519_key" ed25519 "$name"
    peer_ssh_key "$d/ssh_host_ecdsa_key" ecdsa "$name"
    peer_openpgp "$d" "$name" >/dev/null
    peer_onion "$d" "$work/tordata"
    peer_password "$d/password"
    peer_luks_key "$d/luks.key"
    for k in ssh_host_ed25519_key ssh_host_ecdsa_key; do
        echo "$name,$(cat "$d/hostname") $(cut -d' ' -f1,2 "$d/$k.pub")" >>"$work/peer/known_hosts"
    done
done
t5=$(bench_now)
peer=$(bench_elapsed "$t4" "$t5")
peer_files=$(find "$work/peer" -type f | wc -l)

ratio=$(bench_ratio "$peer" "$ours")
printf '\nIdentity benchmark: every key of %d machines (%s)\n' "$N" "$("$BIN" --version)"
printf '%-62s %10s %8s\n' "method" "seconds" "files"
printf '%-62s %10.2f %8d\n' "multiverse identity fleet after one unlock (session cache)" "$ours" "$ours_files"
printf '%-62s %10.2f %8s\n' "  first, unlocking call alone (Argon2id 256 MiB, show 1 name)" "$unseal" "-"
printf '%-62s %10.2f %8d\n' "identity fleet cold (identity lock first: 1 Argon2id unseal)" "$cold" "$ours_files"
printf '%-62s %10.2f %8d\n' "fleet after one unlock, one fsync per file (old writer)" "$perfile" "$ours_files"
printf '%-62s %10.2f %8s\n' "identity rotate one machine (fleet folder updated)" "$rot_machine" "-"
printf '%-62s %10.2f %8s\n' "identity rotate @user ($P pass entries re-encrypted)" "$rot_user" "-"
printf '%-62s %10.2f %8d\n' "shell loop: ssh-keygen x4 + gpg quick-gen-key + tor + urandom" "$peer" "$peer_files"
printf 'ratio (peer / ours after one unlock): %.1fx\n' "$ratio"
printf 'ratio (peer / ours cold, with its Argon2id unseal): %.1fx\n' "$(bench_ratio "$peer" "$cold")"
printf 'ratio (peer / ours after one unlock, one fsync per file): %.1fx\n' "$(bench_ratio "$peer" "$perfile")"
