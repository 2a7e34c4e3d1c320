#!/usr/bin/env python3
"""Verifies an ENSPACE tokens audit export without ENSPACE's code.

    python3 verify_export.py EXPORT_FILE EVENT_KEY [EVENT_KEY...]

Each EVENT_KEY is a base64 Ed25519 public key you trust: what
`GET /v1/event-key` serves as `key`, and, after rotations, the keys it lists
under `previous`. Prints `ok: N events, head H` and exits 0, or prints
`broken: seq N: reason` and exits 1: the algorithm of the README's
"Verifying an audit export", with Python's standard library and
`cryptography` (pip install cryptography).
"""

import base64
import hashlib
import json
import struct
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

DOMAIN = b"ENSPACE-EVENT-V1\x00"


class Broken(Exception):
    def __init__(self, seq, reason):
        super().__init__(f"seq {seq}: {reason}")


class Key:
    def __init__(self, b64):
        self.raw = base64.b64decode(b64)
        self.public = Ed25519PublicKey.from_public_bytes(self.raw)
        self.id = hashlib.sha256(self.raw).digest()[:8].hex()


def unpack(data, at=0):
    """The MessagePack value at `at` and where it ends (the subset events use)."""
    b = data[at]
    at += 1
    if b <= 0x7F:
        return b, at
    if b >= 0xE0:
        return b - 0x100, at
    if 0x80 <= b <= 0x8F or b in (0xDE, 0xDF):
        n, at = (b & 0x0F, at) if b <= 0x8F else length(data, at, 2 if b == 0xDE else 4)
        out = {}
        for _ in range(n):
            k, at = unpack(data, at)
            out[k], at = unpack(data, at)
        return out, at
    if 0x90 <= b <= 0x9F or b in (0xDC, 0xDD):
        n, at = (b & 0x0F, at) if b <= 0x9F else length(data, at, 2 if b == 0xDC else 4)
        out = []
        for _ in range(n):
            v, at = unpack(data, at)
            out.append(v)
        return out, at
    if 0xA0 <= b <= 0xBF or b in (0xD9, 0xDA, 0xDB):
        n, at = (b & 0x1F, at) if b <= 0xBF else length(data, at, {0xD9: 1, 0xDA: 2, 0xDB: 4}[b])
        return data[at : at + n].decode("utf-8"), at + n
    if b in (0xC4, 0xC5, 0xC6):
        n, at = length(data, at, {0xC4: 1, 0xC5: 2, 0xC6: 4}[b])
        return data[at : at + n], at + n
    if b == 0xC0:
        return None, at
    if b in (0xC2, 0xC3):
        return b == 0xC3, at
    formats = {0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q", 0xD0: ">b", 0xD1: ">h", 0xD2: ">i", 0xD3: ">q"}
    if b in formats:
        size = struct.calcsize(formats[b])
        return struct.unpack(formats[b], data[at : at + size])[0], at + size
    raise ValueError(f"MessagePack byte {b:#x} is not one events use")


def length(data, at, size):
    return int.from_bytes(data[at : at + size], "big"), at + size


def verify(lines, trusted):
    prev = bytes(32)
    expected = 1
    header = None
    current = None  # the key in force: event 1's, then each rotation's
    unvouched = None  # the first event without a signature since a signed one
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if n == 0 and "export" in obj:
                header = obj
                continue
            if current is None:
                current = next((k for k in trusted if k.id == obj["key_id"]), None)
                if current is None:
                    raise Broken(expected, f"signed by key {obj['key_id']}, which is not among the given keys")
            prev, current = check(obj, expected, prev, current, trusted)
            if obj["signature"]:
                unvouched = None
            elif unvouched is None:
                unvouched = expected
        except (KeyError, ValueError, TypeError, IndexError) as e:
            raise Broken(expected, f"not an audit event: {e!r}")
        expected += 1
    count = expected - 1
    if unvouched is not None:
        raise Broken(unvouched, "no signature, and no signed event after it vouches for it")
    if header is not None:
        head = header["head"]
        if head["seq"] != count or head["hash"] != prev.hex():
            raise Broken(count + 1, f"the export ends at seq {count}, its header names seq {head['seq']}")
    return count, prev.hex()


def check(obj, expected, prev, current, trusted):
    """Checks one event; answers its hash and the key in force after it."""
    if obj["seq"] != expected:
        raise Broken(expected, f"the line is seq {obj['seq']}")
    if bytes.fromhex(obj["prev_hash"]) != prev:
        raise Broken(expected, "prev_hash is not the previous hash")
    payload = base64.b64decode(obj["payload"])
    digest = hashlib.sha256(prev + payload).digest()
    if bytes.fromhex(obj["hash"]) != digest:
        raise Broken(expected, "hash is not SHA-256(prev_hash || payload)")
    event, _ = unpack(payload)
    if event["seq"] != expected:
        raise Broken(expected, "the payload is another seq's")
    signer, after = current, current
    if event["type"] == "signing_key_rotated":
        data = event["data"]
        new = Key(data["key"])
        if new.id != data["key_id"]:
            raise Broken(expected, "the rotation names a key under another id")
        if data.get("previous_lost"):
            # The previous key was lost: the new key signs its own start,
            # and only a key given explicitly may take over.
            signer = next((k for k in trusted if k.id == new.id), None)
            if signer is None:
                raise Broken(expected, f"the key {data['previous_key_id']} was declared lost and replaced by {new.id}")
        elif data["previous_key_id"] != current.id:
            raise Broken(expected, f"a key rotation that does not start from the key in force {current.id}")
        after = new
    if obj["key_id"] != signer.id:
        raise Broken(expected, f"signed by key {obj['key_id']}, not by the key in force {signer.id}")
    if not obj["signature"]:
        # Its key was lost before a signature was kept: the next signed
        # event covers it through the chain.
        return digest, after
    try:
        signer.public.verify(base64.b64decode(obj["signature"]), DOMAIN + digest)
    except InvalidSignature:
        raise Broken(expected, "the signature does not verify")
    return digest, after


def main():
    if len(sys.argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    trusted = [Key(k) for k in sys.argv[2:]]
    with open(sys.argv[1], encoding="utf-8") as export:
        try:
            count, head = verify(export, trusted)
        except Broken as broken:
            print(f"broken: {broken}")
            return 1
    print(f"ok: {count} events, head {head}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
