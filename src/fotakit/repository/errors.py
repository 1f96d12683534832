"""Errors of the firmware repository (:mod:`fotakit.repository`).

Whenever one of these is raised by :meth:`Repository.add` or :meth:`Repository.delete`,
nothing visible has changed: no row, no file, no temporary file left behind.
"""

from __future__ import annotations


class RepositoryError(Exception):
    """Base class of every error the repository raises on purpose."""


class UnknownPackage(RepositoryError, LookupError):
    """No package with this id is stored."""

    def __init__(self, package_id: str) -> None:
        self.package_id = package_id
        super().__init__(f"no package with id {package_id!r}")


class UploadRejected(RepositoryError):
    """An upload that is not a valid signed package for this repository's trust anchors.

    ``cause`` is the :class:`fotakit.packages.PackageError` raised by the verifier (its
    ``update_result`` says which LwM2M Update Result a device would report), or ``None``
    when the upload was refused for another reason (too large, no trust store).
    """

    def __init__(self, message: str, cause: Exception | None = None) -> None:
        self.cause = cause
        super().__init__(message)


class RepositoryClosed(RepositoryError):
    """A call on a repository after :meth:`Repository.close`."""
