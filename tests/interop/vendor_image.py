"""The image format of the example third-party device ``peers/vendor_device.js``: VNDR.

A stock device checks its own image format, not fotakit's signed package
(docs/package-format.md); fotakit hands such a device the package's bare payload
(docs/operator-guide.md, "Third-party devices"), which is therefore this image::

    b"VNDR" | version length (1 byte) | version (ASCII) | payload length (4 bytes, big-endian)
            | payload | CRC-32 (4 bytes, big-endian) over everything before it

The CRC-32 is the one of zlib and RFC 1952 §8 (polynomial 0xEDB88320, reflected, initial
and final XOR 0xFFFFFFFF).
"""

from __future__ import annotations

import struct
import zlib

MAGIC = b"VNDR"


def vndr_image(version: str, payload: bytes) -> bytes:
    """The VNDR image of ``payload`` announcing ``version`` (1-255 printable ASCII)."""
    raw = version.encode("utf-8")
    if not 1 <= len(raw) <= 255 or not all(0x21 <= b <= 0x7E for b in raw):
        raise ValueError(f"version must be 1-255 printable ASCII characters: {version!r}")
    body = MAGIC + bytes([len(raw)]) + raw + struct.pack(">I", len(payload)) + payload
    return body + struct.pack(">I", zlib.crc32(body))


def with_bad_crc(image: bytes) -> bytes:
    """``image`` with its CRC-32 off by one bit (the rest untouched)."""
    return image[:-1] + bytes([image[-1] ^ 0x01])
