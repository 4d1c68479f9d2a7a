#!/usr/bin/env bash
# bench/rebuild.sh: a lost host's default topology back from the 24 words, two ways, in one run
# (issue #18). Everything up to the libvirt definitions; no guest is started.
#
#   ours: the `multiverse.toml` that `multiverse init` writes, alone in a new tree, then
#         `multiverse rebuild --no-up --words-file W --passphrase-file P` (identity restore at the
#         default Argon2id m=256 MiB t=3, render, pass init, pass machines; the base image is
#         already in images/, so no image step) and `multiverse up` without --start (the disk
#         overlays, the LUKS secret, the pool, the three networks and the six domains defined).
#         Each step timed from the `[i/N]` lines rebuild prints.
#   by hand: the same machines (read from the rendered tree before the clock starts), the way a
#         person did it before Multiverse: ssh-keygen host keys (ed25519 + ecdsa) per machine and
#         one login key, an OpenPGP key per machine and one for the person (gpg --quick-gen-key,
#         batch, no passphrase), tor (DisableNetwork 1) on a HiddenServiceDir for each router and
#         service until it writes hostname, a password per machine and a LUKS key file from
#         /dev/urandom, `pass init` + `pass insert` of each password, `qemu-img create -b base -F
#         qcow2` per disk (LUKS-encrypted where ours is), XML for the pool, the networks, the
#         secret and each domain written from here-doc templates with sed, and `virsh` defining
#         them, one command each.
#
# Both sides define into a private libvirtd of their own (scripts/lab-libvirtd.sh: own mount and
# network namespace, started before the clock and stopped at the end).
#
# Usage: bench/rebuild.sh           as root (the private libvirtd); env MULTIVERSE_BIN (default:
#                                   target/release/multiverse, else target/debug/multiverse),
#                                   BASE_IMAGE (default: the tests' image cache; an empty qcow2
#                                   stands in when it is missing)
# Prints a table of seconds per step and the ratios. Everything runs in a temporary folder that is
# removed.
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=bench/lib/peer.sh
. bench/lib/peer.sh
BIN=$(bench_bin)
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
bench_need ssh-keygen gpg gpgconf tor pass qemu-img virsh libvirtd virtlogd unshare
[[ $EUID -eq 0 ]] || { echo "run as root: the private libvirtd needs its own namespaces" >&2; exit 1; }
BASE_IMAGE=${BASE_IMAGE:-/var/cache/multiverse-tests/image-tree/images/debian.qcow2}
LAB=$PWD/scripts/lab-libvirtd.sh

work=$(mktemp -d /tmp/mv-bench-rebuild.XXXXXX)
chmod 755 "$work"
export MULTIVERSE_PASS_AGENT_DIR="$work/pass-agent"
cleanup() {
    "$BIN" --quiet --root "$work/ours" pass lock >/dev/null 2>&1 || true
    peer_cleanup
    for lab in "$work/lab-ours" "$work/lab-hand"; do
        if [[ -d "$lab" ]]; then "$LAB" "$lab" stop >/dev/null 2>&1 || true; fi
    done
    rm -rf "$work"
}
trap cleanup EXIT

# --- the inputs: multiverse.toml (from git), the words, the passphrase, a base image -------------
"$BIN" --quiet --root "$work/init" init
mkdir -p "$work/ours/images" "$work/hand/images"
cp "$work/init/multiverse.toml" "$work/ours/"
rm -rf "$work/init"
echo "abandon amount liar amount expire adjust cage candy arch gather drum bullet absurd math era live bid rhythm alien crouch range attend journey unaware" >"$work/words"
printf 'bench passphrase\n' >"$work/pass"
chmod 600 "$work/words" "$work/pass"

# The default topology uses two bases, debian and alpine; `image build alpine` cannot run here
# (docs/images.md), so the debian image stands for both. An overlay costs the same on either.
if [[ -f "$BASE_IMAGE" ]]; then
    base_note="base image: $BASE_IMAGE (linked, not built)"
    for side in ours hand; do
        for b in debian alpine; do
            ln "$BASE_IMAGE" "$work/$side/images/$b.qcow2" 2>/dev/null ||
                cp --reflink=auto "$BASE_IMAGE" "$work/$side/images/$b.qcow2"
        done
    done
    manifest="${BASE_IMAGE%.qcow2}.manifest.json"
    if [[ -f "$manifest" ]]; then cp "$manifest" "$work/ours/images/debian.manifest.json"; fi
else
    base_note="base image: none at $BASE_IMAGE; an empty 4 GiB qcow2 stands in"
    for side in ours hand; do
        for b in debian alpine; do qemu-img create -q -f qcow2 "$work/$side/images/$b.qcow2" 4G; done
    done
fi
uri_ours=$("$LAB" "$work/lab-ours" start)
uri_hand=$("$LAB" "$work/lab-hand" start)
# A new libvirtd probes QEMU's capabilities at its first definition (seconds): done here, for both.
virsh -q -c "$uri_ours" capabilities >/dev/null
virsh -q -c "$uri_hand" capabilities >/dev/null

# --- ours --------------------------------------------------------------------------------------
# Every output line with the time it was read ($EPOCHREALTIME: no fork per line).
stamp() { while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done; }
sync
t0=$(bench_now)
"$BIN" --root "$work/ours" rebuild --no-up --words-file "$work/words" --passphrase-file "$work/pass" 2>&1 | stamp >"$work/rebuild.log"
t1=$(bench_now)
"$BIN" --root "$work/ours" up --connect "$uri_ours" --passphrase-file "$work/pass" >"$work/up.log" 2>&1
t2=$(bench_now)
grep -q '^[^ ]* rebuild done' "$work/rebuild.log" || { cat "$work/rebuild.log" >&2; exit 1; }
# Step i lasts from its `[i/N]` line to the next one (the last to `rebuild done`).
declare -A ours_step=()
ours_steps=()
while read -r name secs; do
    ours_step[$name]=$secs
    ours_steps+=("$name")
done < <(awk -v t0="$t0" '
    $2 ~ /^\[[0-9]+\/[0-9]+\]$/ || $2 == "rebuild" && $3 == "done:" {
        if (name != "") printf "%s %.3f\n", name, $1 - start
        name = $3; for (i = 4; i <= NF; i++) name = name "_" $i; start = $1
    }' "$work/rebuild.log")
o_rebuild=$(bench_elapsed "$t0" "$t1")
o_up=$(bench_elapsed "$t1" "$t2")
o_identity=${ours_step[identity_restore]}
o_render=${ours_step[render]}
o_pass=$(awk -v a="${ours_step[pass_init]}" -v b="${ours_step[pass_machines]}" 'BEGIN { printf "%.3f", a + b }')
o_total=$(bench_elapsed "$t0" "$t2")
# One unseal alone (show one name): what each step that needs the root pays at Argon2id 256 MiB.
t3=$(bench_now)
"$BIN" --quiet --root "$work/ours" identity show host.multiverse --passphrase-file "$work/pass" >/dev/null
unseal=$(bench_elapsed "$t3" "$(bench_now)")
domains_ours=$(virsh -c "$uri_ours" -q list --all --name | grep -c .)
networks_ours=$(virsh -c "$uri_ours" -q net-list --all --name | grep -c .)

# --- by hand: what the person knows about the machines, read before the clock starts -------------
# name type memory_mib vcpus networks(comma) from `machine list`; disks, PCI, LUKS from the files.
mapfile -t machines < <("$BIN" --root "$work/ours" machine list | awk 'NR > 1 { print $1, $2, $5, $6, $8 }')
nets=()
for f in "$work/ours/libvirt/networks/"*.xml; do
    nets+=("$(sed -n 's|.*<name>\(.*\)</name>.*|\1|p' "$f") $(sed -n 's|.*<bridge name="\([^"]*\)".*|\1|p' "$f")")
done
base_gib=$(qemu-img info "$work/hand/images/debian.qcow2" | sed -n 's/^virtual size: \([0-9]*\) GiB.*/\1/p')
machine_file() { echo "$work/ours/machines/$1/machine.toml"; }
# "base size_gib" per disk of a machine.
disks_of() { awk '/^\[\[disks\]\]/ { d = 1 } d && /^base/ { gsub(/"/, "", $3); b = $3 } d && /^size_gib/ { print b, $3; d = 0 }' "$(machine_file "$1")"; }
pci_of() { sed -n 's/^pci = \[\(.*\)\]/\1/p' "$(machine_file "$1")" | tr -d '" ' | tr ',' '\n' | grep . || true; }

# The templates a person keeps beside their notes (the "hand-edited XML").
cat >"$work/hand/domain.xml.in" <<'XML'
<domain type="kvm">
  <name>@NAME@</name>
  <memory unit="MiB">@MEMORY@</memory>
  <vcpu>@VCPUS@</vcpu>
  <os><type arch="x86_64" machine="q35">hvm</type><boot dev="hd"/></os>
  <features><acpi/><apic/></features>
  <cpu mode="host-passthrough"/>
  <devices>
@DEVICES@
    <serial type="pty"><target port="0"/></serial>
    <console type="pty"><target type="serial" port="0"/></console>
    <rng model="virtio"><backend model="random">/dev/urandom</backend></rng>
  </devices>
</domain>
XML
cat >"$work/hand/network.xml.in" <<'XML'
<network>
  <name>@NAME@</name>
  <bridge name="@BRIDGE@" stp="on" delay="0"/>
</network>
XML
cat >"$work/hand/secret.xml.in" <<'XML'
<secret ephemeral="yes" private="yes">
  <uuid>@UUID@</uuid>
  <description>LUKS key of @NAME@</description>
</secret>
XML

export GNUPGHOME="$work/gnupg" PASSWORD_STORE_DIR="$work/hand/pass"
mkdir -m 700 "$GNUPGHOME" "$work/tordata" "$work/hand/keys"
h=$work/hand
virsh_h() { virsh -q -c "$uri_hand" "$@" >/dev/null; }

# --- by hand: keys, onions, passwords ----------------------------------------------------------
sync
h0=$(bench_now)
for m in "${machines[@]}"; do
    read -r name _ <<<"$m"
    d=$h/keys/$name
    mkdir -m 700 "$d"
    peer_ssh_key "$d/ssh_host_ed25519_key" ed25519 "$name"
    peer_ssh_key "$d/ssh_host_ecdsa_key" ecdsa "$name"
    peer_openpgp "$d" "$name" >/dev/null
done
mkdir -m 700 "$h/keys/user"
peer_ssh_key "$h/keys/user/id_ed25519" ed25519 user
user_fpr=$(peer_openpgp "$h/keys/user" user)
h1=$(bench_now)
onions=0
for m in "${machines[@]}"; do
    read -r name type _ <<<"$m"
    case "$type" in router* | service) peer_onion "$h/keys/$name" "$work/tordata"; onions=$((onions + 1)) ;; esac
done
h2=$(bench_now)
for m in "${machines[@]}"; do
    read -r name _ <<<"$m"
    peer_password "$h/keys/$name/password"
    if [[ -f "$work/ours/machines/$name/luks-secret.xml" ]]; then
        # QEMU takes a LUKS passphrase only as UTF-8: the key's hex, as ours does.
        peer_luks_key "$h/keys/$name/luks.key"
        od -An -v -tx1 "$h/keys/$name/luks.key" | tr -d ' \n' >"$h/keys/$name/luks.pass"
    fi
done
h3=$(bench_now)

# --- by hand: the XML, from the templates --------------------------------------------------------
mkdir "$h/xml" "$h/disks"
letters=abcdefghijklmnop
for n in "${nets[@]}"; do
    read -r net bridge <<<"$n"
    sed -e "s|@NAME@|$net|" -e "s|@BRIDGE@|$bridge|" "$h/network.xml.in" >"$h/xml/net-$net.xml"
done
for m in "${machines[@]}"; do
    read -r name type memory vcpus networks <<<"$m"
    [[ "$type" == host ]] && continue
    : >"$h/xml/$name.devices"
    i=0
    while read -r base size; do
        {
            printf '    <disk type="file" device="disk">\n      <driver name="qemu" type="qcow2"/>\n'
            printf '      <source file="%s/disks/%s-%d.qcow2"/>\n' "$h" "$name" "$i"
            if [[ -f "$h/keys/$name/luks.key" ]]; then
                uuid=$(cat /proc/sys/kernel/random/uuid)
                sed -e "s|@NAME@|$name|" -e "s|@UUID@|$uuid|" "$h/secret.xml.in" >"$h/xml/secret-$name.xml"
                printf '      <encryption format="luks"><secret type="passphrase" uuid="%s"/></encryption>\n' "$uuid"
            fi
            printf '      <target dev="vd%s" bus="virtio"/>\n    </disk>\n' "${letters:i:1}"
        } >>"$h/xml/$name.devices"
        i=$((i + 1))
    done < <(disks_of "$name")
    for net in ${networks//,/ }; do
        printf '    <interface type="network"><source network="%s"/><model type="virtio"/></interface>\n' "$net" >>"$h/xml/$name.devices"
    done
    for pci in $(pci_of "$name"); do
        IFS=':.' read -r dom bus slot fn <<<"$pci"
        printf '    <hostdev mode="subsystem" type="pci" managed="yes"><source><address domain="0x%s" bus="0x%s" slot="0x%s" function="0x%s"/></source></hostdev>\n' \
            "$dom" "$bus" "$slot" "$fn" >>"$h/xml/$name.devices"
    done
    sed -e "s|@NAME@|$name|" -e "s|@MEMORY@|$memory|" -e "s|@VCPUS@|$vcpus|" \
        -e "/@DEVICES@/{r $h/xml/$name.devices" -e 'd}' "$h/domain.xml.in" >"$h/xml/$name.xml"
done
h4=$(bench_now)

# --- by hand: pass -------------------------------------------------------------------------------
pass init "$user_fpr" >/dev/null
for m in "${machines[@]}"; do
    read -r name _ <<<"$m"
    printf '%s\nuser: root\nmachine: %s\n' "$(cat "$h/keys/$name/password")" "$name" |
        pass insert -m "machines/$name/root" >/dev/null
done
h5=$(bench_now)

# --- by hand: disks and libvirt --------------------------------------------------------------------
for m in "${machines[@]}"; do
    read -r name type _ <<<"$m"
    [[ "$type" == host ]] && continue
    i=0
    while read -r base size; do
        size_arg=()
        if ((size > base_gib)); then size_arg=("${size}G"); fi
        disk=$h/disks/$name-$i.qcow2
        if [[ -f "$h/keys/$name/luks.key" ]]; then
            qemu-img create -q --object "secret,id=sec0,file=$h/keys/$name/luks.pass" -f qcow2 \
                -o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10 \
                -F qcow2 -b "$h/images/$base.qcow2" "$disk" "${size_arg[@]}"
        else
            qemu-img create -q -f qcow2 -F qcow2 -b "$h/images/$base.qcow2" "$disk" "${size_arg[@]}"
        fi
        i=$((i + 1))
    done < <(disks_of "$name")
done
h6=$(bench_now)
virsh_h pool-define-as disks dir --target "$h/disks"
virsh_h pool-start disks
for n in "${nets[@]}"; do
    read -r net _ <<<"$n"
    virsh_h net-define "$h/xml/net-$net.xml"
done
for m in "${machines[@]}"; do
    read -r name type _ <<<"$m"
    [[ "$type" == host ]] && continue
    if [[ -f "$h/xml/secret-$name.xml" ]]; then
        virsh_h secret-define "$h/xml/secret-$name.xml"
        uuid=$(sed -n 's|.*<uuid>\(.*\)</uuid>.*|\1|p' "$h/xml/secret-$name.xml")
        virsh_h secret-set-value "$uuid" --file "$h/keys/$name/luks.pass" --plain
    fi
    virsh_h define "$h/xml/$name.xml"
done
h7=$(bench_now)
domains_hand=$(virsh -c "$uri_hand" -q list --all --name | grep -c .)
networks_hand=$(virsh -c "$uri_hand" -q net-list --all --name | grep -c .)
[[ "$domains_hand" == "$domains_ours" && "$networks_hand" == "$networks_ours" ]] || {
    echo "the two sides differ: ours $domains_ours domains / $networks_ours networks, by hand $domains_hand / $networks_hand" >&2
    exit 1
}

b_keys=$(bench_elapsed "$h0" "$h1")
b_onion=$(bench_elapsed "$h1" "$h2")
b_secrets=$(bench_elapsed "$h2" "$h3")
b_identity=$(bench_elapsed "$h0" "$h3")
b_xml=$(bench_elapsed "$h3" "$h4")
b_pass=$(bench_elapsed "$h4" "$h5")
b_disks=$(bench_elapsed "$h5" "$h6")
b_virsh=$(bench_elapsed "$h6" "$h7")
b_libvirt=$(bench_elapsed "$h5" "$h7")
b_total=$(bench_elapsed "$h0" "$h7")
vms=$((${#machines[@]} - 1))

# --- the table -----------------------------------------------------------------------------------
row() { printf '%-60s %9s %9s %7s\n' "$@"; }
num() { printf '%.2f' "$1"; }
times() { printf '%.1fx' "$(bench_ratio "$1" "$2")"; }
printf '\nRebuild benchmark: the default topology (%d machines: the host + %d VMs, %d networks) from the words\n' \
    "${#machines[@]}" "$vms" "${#nets[@]}"
printf '(%s; %s; load average %s)\n\n' "$("$BIN" --version)" "$base_note" "$(cut -d' ' -f1-3 /proc/loadavg)"
row "step" "ours (s)" "hand (s)" "ratio"
row "identity: keys, onions, passwords" "$(num "$o_identity")" "$(num "$b_identity")" "$(times "$b_identity" "$o_identity")"
row "  ours: identity restore (one Argon2id seal, 256 MiB)" "" "" ""
row "  hand: ssh-keygen x$((2 * ${#machines[@]} + 1)), gpg key x$((${#machines[@]} + 1))" "" "$(num "$b_keys")" ""
row "  hand: tor until hostname x$onions" "" "$(num "$b_onion")" ""
row "  hand: /dev/urandom passwords and LUKS key" "" "$(num "$b_secrets")" ""
row "machine definitions: render / sed on XML templates" "$(num "$o_render")" "$(num "$b_xml")" "$(times "$b_xml" "$o_render")"
row "pass store: pass init + pass machines / init + insert x${#machines[@]}" "$(num "$o_pass")" "$(num "$b_pass")" "$(times "$b_pass" "$o_pass")"
row "disks + libvirt: up (no --start) / qemu-img + virsh" "$(num "$o_up")" "$(num "$b_libvirt")" "$(times "$b_libvirt" "$o_up")"
row "  hand: qemu-img create x$vms" "" "$(num "$b_disks")" ""
row "  hand: virsh pool, ${#nets[@]} nets, secret, $vms domains" "" "$(num "$b_virsh")" ""
row "total" "$(num "$o_total")" "$(num "$b_total")" "$(times "$b_total" "$o_total")"
printf '\nours, step by step (multiverse rebuild --no-up: %s s, then up: %s s):\n' "$(num "$o_rebuild")" "$(num "$o_up")"
for s in "${ours_steps[@]}"; do row "  ${s//_/ }" "$(num "${ours_step[$s]}")" "" ""; done
row "  up (no --start): $domains_ours domains, $networks_ours networks" "$(num "$o_up")" "" ""
row "  (one unseal alone, identity show, for scale)" "$(num "$unseal")" "" ""
printf '\nQubes OS, restoring a backup (qvm-backup-restore; published, not measured here): a user report in\n'
printf 'QubesOS/qubes-issues#4375: "restoring 6GB (4 appvms) Qubes 3.2 > Qubes 3.2 completes in under 5 minutes",\n'
printf '"restoring 168 GB (dozens appvms) 3.2 > 3.2 completes in 2 hours" (i7, SSD, backup on a USB 3.0 disk).\n'
printf 'That restores the VMs'"'"' data as well; the rows above rebuild keys, definitions and empty disks only.\n'
