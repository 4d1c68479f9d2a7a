# bench/lib/peer.sh: what the benchmarks share, sourced (not run) by bench/identity.sh and
# bench/rebuild.sh: finding the CLI, a clock, and "the old way" of making one machine's secrets
# with the tools a person used before Multiverse (ssh-keygen, gpg, tor, /dev/urandom).
#
# The peer_* functions write into the folder they are given and use the caller's GNUPGHOME (a
# temporary one: the caller makes it, 0700). peer_onion leaves the tor it runs in PEER_TOR_PID
# until it has stopped it, so that the caller's cleanup can call peer_cleanup after any failure.
# shellcheck shell=bash

PEER_TOR_PID=""

# The CLI to measure: MULTIVERSE_BIN, else target/release/multiverse, else target/debug/multiverse
# (relative to the repository root, where the callers cd). Exits when there is none.
bench_bin() {
    local bin=${MULTIVERSE_BIN:-}
    if [[ -z "$bin" ]]; then
        if [[ -x target/release/multiverse ]]; then bin=target/release/multiverse; else bin=target/debug/multiverse; fi
    fi
    [[ -x "$bin" ]] || { echo "build the CLI first: cargo build --release -p multiverse" >&2; exit 1; }
    echo "$bin"
}

# Exits naming the first missing tool.
bench_need() {
    local t
    for t in "$@"; do
        command -v "$t" >/dev/null || { echo "missing tool: $t (scripts/install-deps.sh)" >&2; exit 1; }
    done
}

bench_now() { date +%s.%N; }
# Seconds from $1 to $2 (two bench_now values), three decimals.
bench_elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
# $1 / $2, three decimals.
bench_ratio() { awk -v p="$1" -v o="$2" 'BEGIN { printf "%.3f", p / o }'; }

# An SSH key without passphrase: peer_ssh_key FILE ed25519|ecdsa COMMENT.
peer_ssh_key() {
    case "$2" in
    ecdsa) ssh-keygen -q -t ecdsa -b 256 -N '' -C "$3" -f "$1" ;;
    *) ssh-keygen -q -t "$2" -N '' -C "$3" -f "$1" ;;
    esac
}

# An OpenPGP key as Multiverse derives one (ed25519 certify/sign + cv25519 encrypt subkey, no
# passphrase, never expiring), exported armored into DIR: peer_openpgp DIR NAME. Prints the
# fingerprint.
peer_openpgp() {
    local d=$1 name=$2 fpr
    gpg --batch --quiet --pinentry-mode loopback --passphrase '' \
        --quick-gen-key "$name" ed25519 cert,sign never 2>/dev/null
    fpr=$(gpg --batch --with-colons --list-keys "=$name" 2>/dev/null | awk -F: '/^fpr/ {print $10; exit}')
    gpg --batch --quiet --pinentry-mode loopback --passphrase '' --quick-add-key "$fpr" cv25519 encr never 2>/dev/null
    gpg --batch --pinentry-mode loopback --passphrase '' --armor --export-secret-keys "$fpr" >"$d/openpgp-secret.asc" 2>/dev/null
    gpg --batch --armor --export "$fpr" >"$d/openpgp-public.asc" 2>/dev/null
    echo "$fpr"
}

# An onion service key and hostname in DIR, from tor itself: tor started with the network
# disabled on DIR as HiddenServiceDir until it writes DIR/hostname. peer_onion DIR TORDATA
# (TORDATA: tor's DataDirectory, 0700, reused between calls).
peer_onion() {
    local d=$1 data=$2
    printf 'DataDirectory %s\nDisableNetwork 1\nSocksPort 0\nControlPort 0\nHiddenServiceDir %s\nHiddenServicePort 80 127.0.0.1:9\nLog err stderr\n' \
        "$data" "$d" >"$data.torrc"
    tor -f "$data.torrc" >/dev/null 2>&1 &
    PEER_TOR_PID=$!
    until [[ -s "$d/hostname" ]]; do sleep 0.01; done
    kill "$PEER_TOR_PID"; wait "$PEER_TOR_PID" 2>/dev/null || true; PEER_TOR_PID=""
}

# A 32-character password from /dev/urandom in FILE (0600).
peer_password() {
    head -c 24 /dev/urandom | base64 | tr -d '+/=' | head -c 32 >"$1"; echo >>"$1"
    chmod 600 "$1"
}

# A 64-byte LUKS key file from /dev/urandom in FILE (0600).
peer_luks_key() {
    head -c 64 /dev/urandom >"$1"
    chmod 600 "$1"
}

# Stops what the peer_* functions may have left running: tor, and the caller's gpg-agent.
peer_cleanup() {
    if [[ -n "$PEER_TOR_PID" ]]; then kill "$PEER_TOR_PID" 2>/dev/null || true; fi
    if [[ -n "${GNUPGHOME:-}" ]]; then gpgconf --kill all 2>/dev/null || true; fi
}
