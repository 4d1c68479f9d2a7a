#!/usr/bin/env bash
# Benchmark: multiverse-agent vs prometheus-node-exporter, side by side in one run, on loopback.
#   resident memory after warm-up, /metrics scrape latency (1 connection), idle CPU over a minute,
#   and latency under load (wrk, 32 connections) for /metrics and the agent's /v1/stats.
# Usage: bench/agent.sh            (IDLE_SECS=60 LOAD_SECS=10 SCRAPE_SECS=5 to change the durations)
# Needs: prometheus-node-exporter, wrk, curl (scripts/install-deps.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

IDLE_SECS=${IDLE_SECS:-60}
LOAD_SECS=${LOAD_SECS:-10}
SCRAPE_SECS=${SCRAPE_SECS:-5}
for t in prometheus-node-exporter wrk curl; do
  command -v "$t" >/dev/null || { echo "bench/agent.sh: $t is not installed" >&2; exit 1; }
done

cargo build --release -q -p multiverse-agent
AGENT=target/release/multiverse-agent

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
NE_PORT=$(free_port)
AG_PORT=$(free_port)

# A throwaway token, in a 0600 file; wrk reads it through a Lua script (never on a command line).
umask 077
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$WORK/token"
cat > "$WORK/auth.lua" <<LUA
local f = io.open("$WORK/token"); local t = f:read("*l"); f:close()
wrk.headers["Authorization"] = "Bearer " .. t
LUA
cat > "$WORK/agent.toml" <<TOML
role = "service"
[api]
socket = "$WORK/agent.sock"
tcp = "127.0.0.1:$AG_PORT"
token_file = "$WORK/token"
max_connections = 256
TOML

prometheus-node-exporter --web.listen-address="127.0.0.1:$NE_PORT" --no-collector.systemd \
  >"$WORK/ne.log" 2>&1 &
PIDS+=($!); NE_PID=$!
"$AGENT" --config "$WORK/agent.toml" >"$WORK/agent.out" 2>"$WORK/agent.err" &
PIDS+=($!); AG_PID=$!

AUTH=(-H @"$WORK/curl-auth")
printf 'Authorization: Bearer %s\n' "$(cat "$WORK/token")" > "$WORK/curl-auth"
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$NE_PORT/metrics" >/dev/null 2>&1 \
    && curl -sf "${AUTH[@]}" "http://127.0.0.1:$AG_PORT/metrics" >/dev/null 2>&1 && break
  sleep 0.1
done
# Warm-up: a few scrapes each, and one full sampling interval for the agent.
sleep 5
for _ in $(seq 10); do
  curl -sf "http://127.0.0.1:$NE_PORT/metrics" >/dev/null
  curl -sf "${AUTH[@]}" "http://127.0.0.1:$AG_PORT/metrics" >/dev/null
done

rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
size() { curl -sf "$@" | wc -c; }

NE_RSS=$(rss $NE_PID); AG_RSS=$(rss $AG_PID)
NE_SIZE=$(size "http://127.0.0.1:$NE_PORT/metrics"); AG_SIZE=$(size "${AUTH[@]}" "http://127.0.0.1:$AG_PORT/metrics")

# wrk latency percentile in ms from its --latency table; requests/s.
pct() { awk -v p="$2" '$1==p { v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; printf "%.3f", v }' "$1"; }
rps() { awk '/^Requests\/sec/ {printf "%.0f", $2}' "$1"; }
run_wrk() { # out conns secs url [auth]
  local out=$1 c=$2 s=$3 url=$4; shift 4
  local t=2; [ "$c" -lt 2 ] && t=1
  wrk -t"$t" -c"$c" -d"${s}s" --latency "$@" "$url" >"$out" 2>&1
}
run_wrk "$WORK/ne1" 1 "$SCRAPE_SECS" "http://127.0.0.1:$NE_PORT/metrics"
run_wrk "$WORK/ag1" 1 "$SCRAPE_SECS" "http://127.0.0.1:$AG_PORT/metrics" -s "$WORK/auth.lua"
run_wrk "$WORK/neL" 32 "$LOAD_SECS" "http://127.0.0.1:$NE_PORT/metrics"
run_wrk "$WORK/agL" 32 "$LOAD_SECS" "http://127.0.0.1:$AG_PORT/metrics" -s "$WORK/auth.lua"
run_wrk "$WORK/agS" 32 "$LOAD_SECS" "http://127.0.0.1:$AG_PORT/v1/stats" -s "$WORK/auth.lua"
NE_RSS_LOAD=$(rss $NE_PID); AG_RSS_LOAD=$(rss $AG_PID)

# Idle CPU: no requests at all for IDLE_SECS (the agent still samples every 5 s).
HZ=$(getconf CLK_TCK)
NE_T0=$(cpu_ticks $NE_PID); AG_T0=$(cpu_ticks $AG_PID)
sleep "$IDLE_SECS"
NE_T1=$(cpu_ticks $NE_PID); AG_T1=$(cpu_ticks $AG_PID)
idle() { awk -v a="$1" -v b="$2" -v hz="$HZ" -v s="$IDLE_SECS" 'BEGIN { printf "%.3f", (b-a)/hz/s*100 }'; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a/b; else print "-" }'; }
row() { printf '%-44s %16s %16s %8s\n' "$1" "$2" "$3" "$(ratio "$2" "$3")"; }
echo
echo "multiverse-agent $(git rev-parse --short HEAD 2>/dev/null || echo '?') vs $(prometheus-node-exporter --version 2>&1 | head -1 | awk '{print $1, $3}') on $(nproc) cores"
printf '%-44s %16s %16s %8s\n' "measure" "multiverse-agent" "node_exporter" "ratio"
row "resident memory after warm-up (KiB)" "$AG_RSS" "$NE_RSS"
row "resident memory after load (KiB)" "$AG_RSS_LOAD" "$NE_RSS_LOAD"
row "/metrics size (bytes)" "$AG_SIZE" "$NE_SIZE"
row "/metrics scrape latency p50, 1 conn (ms)" "$(pct "$WORK/ag1" 50%)" "$(pct "$WORK/ne1" 50%)"
row "/metrics scrape latency p99, 1 conn (ms)" "$(pct "$WORK/ag1" 99%)" "$(pct "$WORK/ne1" 99%)"
row "/metrics p99 under load, 32 conns (ms)" "$(pct "$WORK/agL" 99%)" "$(pct "$WORK/neL" 99%)"
row "/metrics requests/s under load" "$(rps "$WORK/agL")" "$(rps "$WORK/neL")"
row "/v1/stats p99 under load, 32 conns (ms)" "$(pct "$WORK/agS" 99%)" "-"
row "/v1/stats requests/s under load" "$(rps "$WORK/agS")" "-"
row "idle CPU over ${IDLE_SECS}s (% of one core)" "$(idle "$AG_T0" "$AG_T1")" "$(idle "$NE_T0" "$NE_T1")"
