"""The firmware repository: signed packages stored content-addressed, served over CoAP and HTTP.

Upload (:meth:`Repository.add`) verifies the package signature before storing it; delivery
serves two forms per package — the whole signed package at ``/fw/<id>`` and the bare
payload at ``/fw/<id>/payload`` — over CoAP Block2 with random access (RFC 7959,
:mod:`fotakit.repository.coap`) and HTTP with Range requests (RFC 9110 §14,
:mod:`fotakit.repository.http`), both with strong ETags.
"""

from fotakit.repository.errors import (
    RepositoryClosed,
    RepositoryError,
    UnknownPackage,
    UploadRejected,
)
from fotakit.repository.records import Form, PackageRecord, is_package_id, package_id
from fotakit.repository.repository import MAX_PACKAGE_SIZE, Repository

__all__ = [
    "MAX_PACKAGE_SIZE",
    "Form",
    "PackageRecord",
    "Repository",
    "RepositoryClosed",
    "RepositoryError",
    "UnknownPackage",
    "UploadRejected",
    "is_package_id",
    "package_id",
]
