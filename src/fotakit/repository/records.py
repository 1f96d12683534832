"""What the repository hands out about a stored package, and its short URIs.

A package is named by its *id*: the first 16 hex digits of the SHA-256 of the whole
signed package file. It is stable (the same bytes always get the same id), short enough
for the Package URI resource /5/0/1 (TS Core/Objects: at most 255 bytes; ours are about
50), and 64 bits make an accidental collision within one repository negligible.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Final

ID_LENGTH: Final = 16
ID_PATTERN: Final = re.compile(r"[0-9a-f]{16}")
ETAG_LENGTH: Final = 8
"""Bytes of the digest used as the strong ETag (CoAP allows 1-8, RFC 7252 §5.10.6)."""


def package_id(sha256_hex: str) -> str:
    """The short id of the package whose SHA-256 is ``sha256_hex``."""
    return sha256_hex[:ID_LENGTH]


def is_package_id(text: str) -> bool:
    return ID_PATTERN.fullmatch(text) is not None


class Form(enum.Enum):
    """The two representations served for each package."""

    PACKAGE = "package"
    """The whole signed package (manifest + payload), for agents that verify it."""
    PAYLOAD = "payload"
    """The bare payload, for third-party devices that expect their own image format."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PackageRecord:
    """One stored package: where it is, what its manifest says, how often it was fetched."""

    id: str
    sha256: str
    """SHA-256 (hex) of the whole signed package file; also its storage name."""
    size: int
    payload_offset: int
    payload_size: int
    payload_sha256: str
    """SHA-256 (hex) of the payload, from the signed manifest (checked on upload)."""
    sequence: int
    vendor_id: str
    class_id: str
    version: str
    component: str | None
    base_digest: str | None
    kid: str
    uploaded_at: datetime
    downloads: int = 0
    """Completed downloads, both forms, both transports."""
    bytes_served: int = 0

    def etag(self, form: Form) -> bytes:
        """The strong ETag of one representation: the first 8 bytes of its digest."""
        digest = self.sha256 if form is Form.PACKAGE else self.payload_sha256
        return bytes.fromhex(digest)[:ETAG_LENGTH]

    def span(self, form: Form) -> tuple[int, int]:
        """(offset, length) of one representation inside the package file."""
        if form is Form.PACKAGE:
            return 0, self.size
        return self.payload_offset, self.payload_size

    def path(self, form: Form = Form.PACKAGE) -> str:
        """The URI path of one representation: ``/fw/<id>`` or ``/fw/<id>/payload``."""
        suffix = "/payload" if form is Form.PAYLOAD else ""
        return f"/fw/{self.id}{suffix}"

    def coap_uri(self, host: str, port: int, form: Form = Form.PACKAGE) -> str:
        return f"coap://{_host(host)}:{port}{self.path(form)}"

    def http_uri(self, host: str, port: int, form: Form = Form.PACKAGE) -> str:
        return f"http://{_host(host)}:{port}{self.path(form)}"


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
