#!/usr/bin/env python3
"""Verifies an ENSPACE tokens audit export without ENSPACE's code.

    python3 verify_export.py EXPORT_FILE EVENT_KEY

EVENT_KEY is the base64 Ed25519 public key you trust (what
`GET /v1/event-key` serves as `key`). Prints `ok: N events, head H` and
exits 0, or prints `broken: seq N: reason` and exits 1: the algorithm of
the README's "Verifying an audit export", with Python's standard library
and `cryptography` (pip install cryptography).
"""

import base64
import hashlib
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

DOMAIN = b"ENSPACE-EVENT-V1\x00"


class Broken(Exception):
    def __init__(self, seq, reason):
        super().__init__(f"seq {seq}: {reason}")


def verify(lines, key_b64):
    raw_key = base64.b64decode(key_b64)
    key = Ed25519PublicKey.from_public_bytes(raw_key)
    key_id = hashlib.sha256(raw_key).digest()[:8].hex()
    prev = bytes(32)
    expected = 1
    header = None
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if n == 0 and "export" in obj:
                header = obj
                continue
            prev = check(obj, expected, prev, key, key_id)
        except (KeyError, ValueError, TypeError) as e:
            raise Broken(expected, f"not an audit event: {e!r}")
        expected += 1
    count = expected - 1
    if header is not None:
        head = header["head"]
        if head["seq"] != count or head["hash"] != prev.hex():
            raise Broken(count + 1, f"the export ends at seq {count}, its header names seq {head['seq']}")
    return count, prev.hex()


def check(obj, expected, prev, key, key_id):
    """Checks one event; answers its hash."""
    if obj["seq"] != expected:
        raise Broken(expected, f"the line is seq {obj['seq']}")
    if bytes.fromhex(obj["prev_hash"]) != prev:
        raise Broken(expected, "prev_hash is not the previous hash")
    payload = base64.b64decode(obj["payload"])
    digest = hashlib.sha256(prev + payload).digest()
    if bytes.fromhex(obj["hash"]) != digest:
        raise Broken(expected, "hash is not SHA-256(prev_hash || payload)")
    if obj["key_id"] != key_id:
        raise Broken(expected, f"signed by key {obj['key_id']}, not {key_id}")
    try:
        key.verify(base64.b64decode(obj["signature"]), DOMAIN + digest)
    except InvalidSignature:
        raise Broken(expected, "the signature does not verify")
    return digest


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as export:
        try:
            count, head = verify(export, sys.argv[2])
        except Broken as broken:
            print(f"broken: {broken}")
            return 1
    print(f"ok: {count} events, head {head}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
