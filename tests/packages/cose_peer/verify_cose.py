"""Independent check of a fotakit package with the ``cwt`` COSE implementation.

Runs in its own virtualenv (cwt 3.3.0 pins cbor2 < 6; fotakit uses cbor2 6), so it shares
no code with fotakit: it parses the SUIT envelope with cbor2 5.x, checks the manifest
digest with hashlib, verifies the COSE_Sign1 over the detached bstr-wrapped SUIT_Digest
with ``cwt.COSE.decode(..., detached_payload=...)``, and checks the payload's SHA-256 and
size against the image-digest / image-size SUIT parameters.

Usage: verify_cose.py PACKAGE PUBLIC_KEY.pem
Prints one JSON object; exit status 0 if everything verifies, 1 if not, 2 on bad usage.
"""

from __future__ import annotations

import hashlib
import json
import sys

import cbor2
from cwt import COSE, COSEKey  # type: ignore[import-not-found]

ALG_NAMES = {-8: "EdDSA", -7: "ES256"}


def check(package_path: str, key_path: str) -> dict[str, object]:
    result: dict[str, object] = {"signature": False, "manifest_digest": False, "payload": False}
    with open(package_path, "rb") as fh:
        envelope = cbor2.load(fh)  # exactly one CBOR item; the payload follows it
        payload_offset = fh.tell()
        payload_hash = hashlib.sha256()
        payload_size = 0
        while chunk := fh.read(1 << 16):
            payload_hash.update(chunk)
            payload_size += len(chunk)
    if not isinstance(envelope, cbor2.CBORTag) or envelope.tag != 107:
        raise ValueError("not a tag-107 SUIT envelope")
    auth = cbor2.loads(envelope.value[2])
    manifest_bytes = envelope.value[3]
    digest_item, sign1_bytes = auth[0], auth[1]
    alg_id, manifest_digest = cbor2.loads(digest_item)
    result["manifest_digest"] = (
        alg_id == -16 and hashlib.sha256(manifest_bytes).digest() == manifest_digest
    )

    sign1 = cbor2.loads(sign1_bytes)
    protected = cbor2.loads(sign1.value[0])
    alg, kid = protected[1], protected[4]
    result["alg"] = alg
    result["kid"] = kid.hex()
    with open(key_path, "rb") as fh:
        key = COSEKey.from_pem(fh.read(), alg=ALG_NAMES[alg], kid=kid)
    try:
        COSE.new().decode(sign1_bytes, key, detached_payload=digest_item)
        result["signature"] = True
    except Exception as exc:  # cwt raises VerifyError, DecodeError, ValueError...
        result["error"] = f"{type(exc).__name__}: {exc}"

    manifest = cbor2.loads(manifest_bytes)
    common = cbor2.loads(manifest[3])
    sequence = cbor2.loads(common[4])
    params: dict[int, object] = {}
    for i in range(0, len(sequence), 2):
        if sequence[i] in (19, 20):
            params.update(sequence[i + 1])
    image_digest_item = params[3]
    assert isinstance(image_digest_item, bytes)
    image_alg, image_digest = cbor2.loads(image_digest_item)
    result["payload"] = (
        image_alg == -16 and image_digest == payload_hash.digest() and params[14] == payload_size
    )
    result["payload_offset"] = payload_offset
    result["sequence"] = manifest[2]
    return result


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        result = check(argv[1], argv[2])
    except Exception as exc:
        print(json.dumps({"signature": False, "error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps(result))
    ok = result["signature"] and result["manifest_digest"] and result["payload"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
