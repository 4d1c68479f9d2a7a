#!/usr/bin/env bash
# Benchmark: the agent under the three connection attacks of docs/security.md (findings 6, 7, 8),
# one after the other, on loopback. For each phase: the unix socket's /metrics latency (p50, p99,
# one request at a time, SAMPLES of them) and the agent's resident memory (the most seen while the
# phase ran). Targets: p99 < 10 ms and RSS < 10 MB in every phase.
#   baseline     no attack
#   sse          64 /v1/events subscribers on the unix socket that never read
#   tcp-partial  500 unauthenticated TCP connections sending partial headers, re-opened as the
#                agent drops them (at most MAX_CONNECTS connects in all)
#   nested       4 clients sending 15.6 KB /v1/machines/a.b/machines/... targets in a loop
# Usage: bench/agent-attack.sh      (SAMPLES=500; AGENT=path to bench another build)
# Needs: python3.
set -euo pipefail
cd "$(dirname "$0")/.."

SAMPLES=${SAMPLES:-500}
MAX_CONNECTS=${MAX_CONNECTS:-20000}
command -v python3 >/dev/null || { echo "bench/agent-attack.sh: python3 is not installed" >&2; exit 1; }

if [ -z "${AGENT:-}" ]; then
  cargo build --release -q -p multiverse-agent
  AGENT=target/release/multiverse-agent
fi

WORK=$(mktemp -d)
AG_PID=
cleanup() { [ -n "$AG_PID" ] && kill "$AG_PID" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

# A throwaway token in a 0600 file (32 hex bytes); never on a command line.
umask 077
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$WORK/token"
cat > "$WORK/agent.toml" <<TOML
role = "service"
[api]
socket = "$WORK/agent.sock"
tcp = "127.0.0.1:0"
token_file = "$WORK/token"
TOML

"$AGENT" --config "$WORK/agent.toml" >"$WORK/agent.out" 2>"$WORK/agent.err" &
AG_PID=$!
for _ in $(seq 100); do
  grep -q '^multiverse-agent ready' "$WORK/agent.out" 2>/dev/null && break
  sleep 0.1
done
TCP=$(sed -n 's/.* tcp=\([^ ]*\).*/\1/p' "$WORK/agent.out")
[ -n "$TCP" ] || { echo "agent did not start:"; cat "$WORK/agent.err"; exit 1; }
sleep 2 # a few samples, so /metrics has its full size

python3 - "$AG_PID" "$WORK/agent.sock" "$TCP" "$SAMPLES" "$MAX_CONNECTS" <<'PY'
import socket, sys, threading, time

pid, sock_path, tcp, samples, max_connects = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
host, port = tcp.rsplit(":", 1)
port = int(port)
TIMEOUT = 10.0

def rss_kib():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

def unix_request(target, timeout=TIMEOUT):
    """One request on a fresh unix connection; (status, seconds). Status 0: no answer."""
    t0 = time.perf_counter()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sock_path)
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
        status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0
    except (OSError, ValueError, IndexError):
        status = 0
    finally:
        s.close()
    return status, time.perf_counter() - t0

def measure(phase, extra):
    lat, failed, peak = [], 0, rss_kib()
    t_end = time.perf_counter() + 60  # a starved phase stops early: at most a minute each
    for i in range(samples):
        if time.perf_counter() > t_end:
            break
        st, dt = unix_request("/metrics")
        lat.append(dt * 1000)
        failed += st != 200
        if i % 25 == 0:
            peak = max(peak, rss_kib())
        if failed >= 3:  # starved: no point waiting TIMEOUT per sample
            break
    peak = max(peak, rss_kib())
    lat.sort()
    pct = lambda p: lat[min(len(lat) - 1, int(len(lat) * p / 100))]
    ok = "ok" if pct(99) < 10 and peak < 10240 and failed == 0 else "MISSED"
    if len(lat) < samples:
        ok = "MISSED"
    print(f"{phase:<12} {pct(50):>9.3f} {pct(99):>9.3f} {failed:>7} {peak:>9} {rss_kib():>9}  {ok:<6} {extra()} ({len(lat)} samples)", flush=True)

print(f"{'phase':<12} {'p50 ms':>9} {'p99 ms':>9} {'failed':>7} {'peak KiB':>9} {'end KiB':>9}  target attack")

# Baseline.
measure("baseline", lambda: "-")

# Finding 6: 64 event subscribers that never read.
subs, codes = [], {}
for _ in range(64):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    s.connect(sock_path)
    s.sendall(b"GET /v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
    subs.append(s)
for s in subs:
    try:
        head = s.recv(64)
        c = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else 0
    except (OSError, ValueError, IndexError):
        c = 0
    codes[c] = codes.get(c, 0) + 1
measure("sse", lambda: "subscribers by status " + ", ".join(f"{k}: {v}" for k, v in sorted(codes.items())))
for s in subs:
    s.close()

# Finding 7: 500 partial headers on TCP, kept at 500 as the agent drops them.
stop = threading.Event()
stats = {"connects": 0, "refused": 0}
def partial_flood():
    held = []
    while not stop.is_set() and stats["connects"] < max_connects:
        alive = []
        for s in held:
            try:
                s.setblocking(False)
                b = s.recv(1)          # b"" or data: the agent answered or closed it
                s.close()
                if b:
                    stats["refused"] += 1
            except BlockingIOError:
                alive.append(s)
            except OSError:
                s.close()
        held = alive
        while len(held) < 500 and stats["connects"] < max_connects and not stop.is_set():
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(1.0)
            try:
                s.connect((host, port))
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                held.append(s)
            except OSError:
                s.close()
            stats["connects"] += 1
        time.sleep(0.05)
    for s in held:
        s.close()
t = threading.Thread(target=partial_flood)
t.start()
time.sleep(1.0)
measure("tcp-partial", lambda: f"{stats['connects']} connects, {stats['refused']} answered 503")
stop.set()
t.join()

# Finding 8: nested machine paths, 4 clients in a loop.
target = "/v1/machines" + "/a.b/machines" * 1200 + "/a.b/stats"
stop = threading.Event()
nested = {}
lock = threading.Lock()
def nest():
    n = 0
    while not stop.is_set() and n < 5000:
        st, _ = unix_request(target)
        with lock:
            nested[st] = nested.get(st, 0) + 1
        n += 1
ts = [threading.Thread(target=nest) for _ in range(4)]
for t in ts:
    t.start()
time.sleep(0.5)
measure("nested", lambda: f"{len(target)}-byte targets by status " + ", ".join(f"{k}: {v}" for k, v in sorted(nested.items())))
stop.set()
for t in ts:
    t.join()
PY
echo "multiverse-agent $(git rev-parse --short HEAD 2>/dev/null || echo '?') ($AGENT) on $(nproc) cores; targets: p99 < 10 ms, RSS < 10240 KiB"
