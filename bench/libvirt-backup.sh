#!/usr/bin/env bash
# Benchmark: `multiverse backup` of 200 defined domains against a shell loop of `virsh dumpxml`
# over the same domains, one run each, side by side. Defines 200 tiny domains named
# mvbench-<pid>-NNN on the URI (default qemu:///system), and undefines them at the end.
# Usage: bench/libvirt-backup.sh [N]     (env: MV_BIN=path/to/multiverse, URI=...)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-200}"
URI="${URI:-qemu:///system}"
if [ -z "${MV_BIN:-}" ]; then
  if [ -x target/release/multiverse ]; then MV_BIN=target/release/multiverse
  else cargo build -q -p multiverse -p multiverse-virt; MV_BIN=target/debug/multiverse; fi
fi
prefix="mvbench-$$"
work="$(mktemp -d)"
cleanup() {
  for i in $(seq -w 1 "$N"); do echo "undefine $prefix-$i"; done | virsh -c "$URI" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "defining $N domains on $URI ..."
for i in $(seq -w 1 "$N"); do
  cat > "$work/d-$i.xml" <<XML
<domain type='qemu'><name>$prefix-$i</name><memory unit='MiB'>32</memory><os><type arch='x86_64'>hvm</type></os><features><acpi/></features><devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices></domain>
XML
done
# One virsh session defines them all (fast setup, not what is measured).
for i in $(seq -w 1 "$N"); do echo "define $work/d-$i.xml"; done | virsh -c "$URI" >/dev/null
total=$(virsh -c "$URI" list --all --name | grep -c . || true)

now() { date +%s.%N; }
# 1. multiverse backup (every object of the host; domains are $total of them).
t0=$(now)
"$MV_BIN" --root "$work/tree" backup --connect "$URI" --out "$work/mv" >/dev/null
t1=$(now)
# 2. The shell loop people write: one virsh process per domain.
mkdir -p "$work/virsh"
t2=$(now)
virsh -c "$URI" list --all --name | while read -r d; do
  if [ -n "$d" ]; then virsh -c "$URI" dumpxml --inactive "$d" > "$work/virsh/$d.xml"; fi
done
t3=$(now)
# 3. A second backup of the unchanged host: nothing is rewritten.
t4=$(now)
"$MV_BIN" --root "$work/tree" backup --connect "$URI" --out "$work/mv" >/dev/null
t5=$(now)

mv_s=$(echo "$t1 - $t0" | bc -l); vs_s=$(echo "$t3 - $t2" | bc -l); mv2_s=$(echo "$t5 - $t4" | bc -l)
printf '\n%-44s %10s %12s\n' "backup of $total domains ($N benchmark ones)" "seconds" "per domain"
printf '%-44s %10.3f %10.2f ms\n' "multiverse backup (all objects, 1 conn)" "$mv_s" "$(echo "$mv_s*1000/$total" | bc -l)"
printf '%-44s %10.3f %10.2f ms\n' "multiverse backup, second run (no change)" "$mv2_s" "$(echo "$mv2_s*1000/$total" | bc -l)"
printf '%-44s %10.3f %10.2f ms\n' "shell loop of virsh dumpxml --inactive" "$vs_s" "$(echo "$vs_s*1000/$total" | bc -l)"
printf '%-44s %10.1fx\n' "ratio (virsh loop / multiverse)" "$(echo "$vs_s / $mv_s" | bc -l)"
