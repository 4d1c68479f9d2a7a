#!/usr/bin/env bash
# Rendering a 1,000-machine topology: `multiverse render` against the old way (a shell loop
# running sed over an XML template per machine, as the old scaffold script did), side by side.
# Usage: bench/render.sh [N]   (needs a built binary: cargo build --release -p multiverse)
set -euo pipefail
N=${1:-1000}
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${MULTIVERSE_BIN:-$here/target/release/multiverse}
[ -x "$bin" ] || bin=$here/target/debug/multiverse
[ -x "$bin" ] || { echo "build multiverse first: cargo build --release -p multiverse" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The default topology with net2 widened to a /16, plus N machines on it.
"$bin" --root "$work/seed" init -q
sed -e 's|10.2.2.0/24|10.2.0.0/16|; s|"10.2.2.1"|"10.2.0.1"|g; s|10.2.2.10|10.2.0.10|; s|10.2.2.20|10.2.0.20|' \
  "$work/seed/multiverse.toml" > "$work/multiverse.toml"
for ((i = 0; i < N; i++)); do
  printf '\n[[machines]]\nname = "vm%d.service.multiverse"\ntype = "service"\nnetworks = [{ network = "net2", address = "10.2.%d.%d" }]\n' \
    "$i" $((4 + i / 200)) $((10 + i % 200))
done >> "$work/multiverse.toml"

# The old way: one sed per machine over a domain template.
cat > "$work/old.sh" <<'OLD'
#!/usr/bin/env bash
set -e
out=$1; n=$2; tmpl=$3
for ((i = 0; i < n; i++)); do
  mkdir -p "$out/vm$i.service.multiverse"
  sed -e "s/@NAME@/vm$i.service.multiverse/g" -e "s/@MEM@/512/" -e "s/@MAC@/52:54:00:00:00:01/" \
    "$tmpl" > "$out/vm$i.service.multiverse/domain.xml"
done
OLD
chmod +x "$work/old.sh"
sed -e 's/vm0\.service\.multiverse/@NAME@/g' "$work/seed/machines/mail.service.multiverse/domain.xml" > "$work/tmpl.xml"

fresh() { rm -rf "$work/t"; mkdir -p "$work/t"; cp "$work/multiverse.toml" "$work/t/"; }
time_it() { # label, prepare, command...
  local label=$1 prep=$2; shift 2
  local best=
  for _ in 1 2 3; do
    $prep
    local s e
    s=$(date +%s%N); "$@" > /dev/null; e=$(date +%s%N)
    local ms=$(( (e - s) / 1000000 ))
    if [ -z "$best" ] || [ "$ms" -lt "$best" ]; then best=$ms; fi
  done
  printf '%-48s %8s ms\n' "$label" "$best"
}
noop() { :; }
oldprep() { rm -rf "$work/old"; }

echo "N = $N machines (+6 of the default topology); best of 3; binary: $bin"
printf '%-48s %11s\n' "what" "time"
time_it "multiverse render (first, writes everything)" fresh "$bin" --root "$work/t" render -q
time_it "multiverse render (second, nothing changed)" noop "$bin" --root "$work/t" render -q
time_it "multiverse render --dry-run" noop "$bin" --root "$work/t" render --dry-run -q
time_it "old way: sed per machine (domain.xml only)" oldprep "$work/old.sh" "$work/old" "$N" "$work/tmpl.xml"
echo "files written by multiverse: $(find "$work/t" -type f -o -type l | wc -l)"
