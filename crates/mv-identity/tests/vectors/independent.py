#!/usr/bin/env python3
"""Independent implementation of docs/spec/scramble-v1.md and its epochs extension
(docs/spec/scramble-v1-epochs.md) in Python `cryptography` + hashlib, used to write
independent-python-*.toml. The Rust code never produced these values, so the vector runner
(tests/vectors.rs) cross-checks the parts of the spec that have no vector in the spec itself: the
ECDSA P-256 mapping, host keys, @user, other roots, and every name at epochs 1 and 2
(independent-python-epochs.toml).

    python3 independent.py english.txt OUT_DIR   # english.txt: the BIP-39 English list, one word a line
"""
import base64, hashlib, struct
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, ec

N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
ALPHA = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


EPOCH = 0  # the epoch names are derived at while emitting


def derive(root, purpose, name, length):
    h = hmac.HMAC(b"multiverse-scramble-v1", hashes.SHA256())
    h.update(root)
    prk = h.finalize()
    info = purpose.encode() + b"\0" + name.encode()
    if EPOCH > 0:
        info += b"\0" + struct.pack(">I", EPOCH)
    return HKDFExpand(hashes.SHA256(), length, info).derive(prk)


def sshstr(b):
    return struct.pack(">I", len(b)) + b


def ed_line(seed):
    pub = ed25519.Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    blob = sshstr(b"ssh-ed25519") + sshstr(pub)
    return "ssh-ed25519 " + base64.b64encode(blob).decode(), pub


def ecdsa_line(b48):
    d = int.from_bytes(b48, "big") % (N - 1) + 1
    pub = ec.derive_private_key(d, ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    blob = sshstr(b"ecdsa-sha2-nistp256") + sshstr(b"nistp256") + sshstr(pub)
    return "ecdsa-sha2-nistp256 " + base64.b64encode(blob).decode()


def onion(pub):
    chk = hashlib.sha3_256(b".onion checksum" + pub + b"\x03").digest()[:2]
    return base64.b32encode(pub + chk + b"\x03").decode().lower() + ".onion"


def password(b):
    out = ""
    for x in b:
        if len(out) == 32:
            break
        if x < 248:
            out += chr(ALPHA[x % 62])
    return out


import sys
from pathlib import Path

def emit(root, names, out, epochs=(0,), header=True):
    global EPOCH
    if header:
        out.write("# Written by independent.py (Python cryptography), not by the Rust code. Do not edit.\n")
        out.write(f'root = "{root.hex()}"\n')
        out.write(f'mnemonic = "{mnemonic_of(root)}"\n')
    for EPOCH in epochs:
      for name in names:
        out.write("\n[[names]]\n")
        out.write(f'name = "{name}"\n')
        if EPOCH:
            out.write(f"epoch = {EPOCH}\n")
        line, _ = ed_line(derive(root, "ssh-ed25519", name, 32))
        out.write(f'ssh_ed25519 = "{line}"\n')
        out.write(f'ssh_ecdsa_p256 = "{ecdsa_line(derive(root, "ssh-ecdsa-p256", name, 48))}"\n')
        line, _ = ed_line(derive(root, "ssh-host-ed25519", name, 32))
        out.write(f'ssh_host_ed25519 = "{line}"\n')
        out.write(f'ssh_host_ecdsa_p256 = "{ecdsa_line(derive(root, "ssh-host-ecdsa-p256", name, 48))}"\n')
        _, pub = ed_line(derive(root, "onion-v3", name, 32))
        out.write(f'onion = "{onion(pub)}"\n')
        out.write(f'password = "{password(derive(root, "password", name, 128))}"\n')
        out.write(f'luks_sha256 = "{hashlib.sha256(derive(root, "luks", name, 64)).hexdigest()}"\n')


def mnemonic_of(root):
    # BIP-39: 256 bits of entropy + 8 checksum bits, cut into 24 indices of 11 bits.
    h = hashlib.sha256(root).digest()
    bits = int.from_bytes(root + h[:1], "big")
    idx = [(bits >> (11 * (23 - i))) & 0x7FF for i in range(24)]
    return " ".join(WORDS[j] for j in idx)


WORDS = Path(sys.argv[1]).read_text().split() if len(sys.argv) > 1 else None
if WORDS is None:
    sys.exit("usage: independent.py ENGLISH_WORDLIST.txt OUT_DIR")
outdir = Path(sys.argv[2])
roots = [bytes(range(32)), bytes([0xff] * 32), hashlib.sha256(b"multiverse").digest()]
names = ["universe.router.multiverse", "star.router.multiverse", "host.multiverse", "@user"]
for i, root in enumerate(roots):
    with open(outdir / f"independent-python-{i}.toml", "w") as f:
        emit(root, names, f)
# Epochs 1 and 2 of every name, for the third root (the first root's are in the spec itself).
with open(outdir / "independent-python-epochs.toml", "w") as f:
    emit(roots[2], names, f, epochs=(1, 2))
