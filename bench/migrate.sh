#!/usr/bin/env bash
# Benchmark: `multiverse migrate` on a tree holding 50 GiB of sparse qcow2 images (qemu-img, no
# real space), side by side with the peer: the hand-run shell the old notes implied (mv, ln -s,
# tr for the case), which has no plan, no journal, no fsync and no undo.
#   1. migrate in place (one filesystem: renames)      2. the naive shell, same tree
#   3. --undo of a complete migration                  4. across filesystems (/tmp -> /dev/shm)
# Usage: bench/migrate.sh          (N=25 SIZE=2G RUNS=10 to change; BIN=path to use another build)
# Needs: qemu-img, hyperfine (scripts/install-deps.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-25}
SIZE=${SIZE:-2G}
RUNS=${RUNS:-10}
for t in qemu-img hyperfine; do
  command -v "$t" >/dev/null || { echo "bench/migrate.sh: $t is not installed" >&2; exit 1; }
done
if [ -z "${BIN:-}" ]; then
  cargo build --release -q -p multiverse -p multiverse-virt
  BIN=$PWD/target/release/multiverse
fi

WORK=$(mktemp -d)
SHM=$(mktemp -d -p /dev/shm)
trap 'rm -rf "$WORK" "$SHM"' EXIT

# The template old tree: N machines, each a mixed-case folder with a few files, a loose image
# and a Data/ folder.
T=$WORK/template
mkdir -p "$T/Machines" "$T/Data"
for i in $(seq 1 "$N"); do
  m="Machine-$i"
  mkdir -p "$T/Machines/$m/Provision" "$T/Data/$m"
  echo "<domain/>" > "$T/Machines/$m/domain.xml"
  echo "echo $i" > "$T/Machines/$m/Provision/Setup.sh"
  echo "data $i" > "$T/Data/$m/notes"
  qemu-img create -q -f qcow2 "$T/Machines/$m.qcow2" "$SIZE"
done
virtual=$(for f in "$T"/Machines/*.qcow2; do qemu-img info --output=json "$f" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])'; done | awk '{s+=$1} END {printf "%.1f GiB", s/2^30}')
real=$(du -sh "$T" | cut -f1)
echo "tree: $N machines, $N images, virtual size $virtual, real size on disk $real"

cat > "$WORK/naive.sh" <<'SH'
#!/usr/bin/env bash
# What a person would type: no plan, no journal, no checks, no undo.
set -e
cd "$1"
mkdir -p machines storage
for d in Machines/*/; do
  n=$(basename "$d" | tr 'A-Z ' 'a-z-').multiverse
  mv "$d" "machines/$n"
done
for f in Machines/*.qcow2; do
  n=$(basename "$f" .qcow2 | tr 'A-Z ' 'a-z-').multiverse
  mv "$f" "machines/$n/disk.qcow2"
  ln -s "../machines/$n/disk.qcow2" "storage/$n.qcow2"
done
for d in Data/*/; do
  n=$(basename "$d" | tr 'A-Z ' 'a-z-').multiverse
  mv "$d" "machines/$n/data"
done
rmdir Machines Data
SH
chmod +x "$WORK/naive.sh"

fresh="rm -rf $WORK/t && cp -a $T $WORK/t"
mig="$BIN migrate --from $WORK/t --to $WORK/t --no-libvirt -q"
hyperfine -N --style basic --runs "$RUNS" --export-markdown "$WORK/same.md" \
  --prepare "bash -c '$fresh'" \
  -n "multiverse migrate (one fs)" "$mig" \
  -n "naive shell (mv, ln, tr)" "$WORK/naive.sh $WORK/t" >/dev/null
hyperfine -N --style basic --runs "$RUNS" --export-markdown "$WORK/undo.md" \
  --prepare "bash -c '$fresh && $mig'" \
  -n "multiverse migrate --undo" "$BIN migrate --undo --to $WORK/t --no-libvirt -q" >/dev/null
hyperfine -N --style basic --runs "$RUNS" --export-markdown "$WORK/cross.md" \
  --prepare "bash -c 'rm -rf $SHM/new && $fresh'" \
  -n "multiverse migrate (/tmp -> /dev/shm, copy+verify)" \
  "$BIN migrate --from $WORK/t --to $SHM/new --no-libvirt -q" >/dev/null

# Check the last result really is the new layout.
bash -c "$fresh && $mig"
test -L "$WORK/t/storage/machine-1.multiverse.qcow2"
test -f "$WORK/t/machines/machine-$N.multiverse/disk.qcow2"

# One more run, timed for CPU as well as wall clock (the wall clock mostly waits on the disk and,
# on a shared machine, on the scheduler).
rm -rf "$WORK/t" && cp -a "$T" "$WORK/t" && sync
cpu=$( { /usr/bin/time -f "%e s wall, %U s user + %S s system CPU" $mig; } 2>&1 )
echo
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores; one more in-place run: $cpu"
echo
cat "$WORK/same.md"
tail -n +3 "$WORK/undo.md"
tail -n +3 "$WORK/cross.md"
