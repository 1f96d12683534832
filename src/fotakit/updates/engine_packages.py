"""Packages as update jobs see them: the :class:`JobTarget` of a stored package, and the
bytes of a push.

The repository serves each package under ``/fw/<id>`` (signed package) and
``/fw/<id>/payload`` (bare payload) over CoAP on the LwM2M port and, when configured,
over HTTP (:mod:`fotakit.repository`). ``base_uris`` are the addresses *devices* use to
reach them (``coap://host:port``, ``http://host:port``): behind NAT or a load balancer
they differ from the address the server binds, so they are configuration, not guessed.

Each node of a multi-node deployment has its own base URIs (its own ``--public-host``
and ports, docs/operator-guide.md "Several processes on PostgreSQL"), and a job's
snapshot keeps the URIs of the node that started it. :func:`rebase_snapshot` points a
job adopted from another node (or resumed after a restart with other base URIs) at this
node's repository, keeping the form (signed package or bare payload) it started with.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from fotakit.repository import PackageRecord, Repository
from fotakit.repository.records import Form
from fotakit.updates.delivery import JobTarget


@dataclass(frozen=True, slots=True)
class BaseUris:
    """Where devices fetch packages: ``coap://host:port`` and/or ``http://host:port``."""

    coap: str | None = None
    http: str | None = None

    def __post_init__(self) -> None:
        if self.coap is not None and not self.coap.startswith(("coap://", "coaps://")):
            raise ValueError(f"coap base URI must start with coap:// or coaps://: {self.coap}")
        if self.http is not None and not self.http.startswith(("http://", "https://")):
            raise ValueError(f"http base URI must start with http:// or https://: {self.http}")


class PackageSource:
    """Resolves package IDs against a repository (records cached: packages are immutable)."""

    def __init__(self, repository: Repository, base_uris: BaseUris) -> None:
        self.repository = repository
        self.base_uris = base_uris
        self._records: dict[str, PackageRecord] = {}

    def record(self, package_id: str) -> PackageRecord:
        """The package's record; :class:`fotakit.repository.UnknownPackage` if absent."""
        rec = self._records.get(package_id)
        if rec is None:
            rec = self.repository.get(package_id)
            self._records[package_id] = rec
        return rec

    def target(self, package_id: str, *, bare_payload: bool = False) -> JobTarget:
        rec = self.record(package_id)
        coap = self.base_uris.coap.rstrip("/") if self.base_uris.coap else None
        http = self.base_uris.http.rstrip("/") if self.base_uris.http else None
        return JobTarget(
            package_id=rec.id,
            version=rec.version,
            size=rec.size,
            uri_coap=f"{coap}{rec.path(Form.PACKAGE)}" if coap else None,
            uri_http=f"{http}{rec.path(Form.PACKAGE)}" if http else None,
            uri_coap_payload=f"{coap}{rec.path(Form.PAYLOAD)}" if coap else None,
            uri_http_payload=f"{http}{rec.path(Form.PAYLOAD)}" if http else None,
            payload_size=rec.payload_size,
            bare_payload=bare_payload,
        )

    def read(self, package_id: str, form: str) -> bytes:
        """The bytes pushed to /5/0/0: the signed package, or the bare payload."""
        rec = self.record(package_id)
        offset, length = rec.span(Form.PAYLOAD if form == "payload" else Form.PACKAGE)
        with open(self.repository.blob_path(rec), "rb") as fh:
            return os.pread(fh.fileno(), length, offset)


_URI_FIELDS = ("uri_coap", "uri_http", "uri_coap_payload", "uri_http_payload")


def rebase_snapshot(snapshot: dict[str, Any], fresh: JobTarget) -> dict[str, Any]:
    """``snapshot`` (an :meth:`UpdateJob.snapshot`) with its target's Package URIs, and
    the URI of its current delivery plan, replaced by ``fresh``'s (this node's).

    ``fresh`` must be the same package in the same form (``bare_payload``) as the
    snapshot's target; everything else in the snapshot is kept. A plan URI that is none
    of the old target's URIs (an older format) is left as it was.
    """
    old = JobTarget.from_json(snapshot["target"])
    if fresh.package_id != old.package_id or fresh.bare_payload != old.bare_payload:
        raise ValueError(
            f"rebase of job target {old.package_id} ({old.form}) onto "
            f"{fresh.package_id} ({fresh.form})"
        )
    out = dict(snapshot)
    out["target"] = fresh.to_json()
    plan = snapshot.get("plan")
    if isinstance(plan, dict) and isinstance(plan.get("uri"), str):
        moved = {
            getattr(old, name): getattr(fresh, name)
            for name in _URI_FIELDS
            if getattr(old, name) is not None and getattr(fresh, name) is not None
        }
        if plan["uri"] in moved:
            out["plan"] = {**plan, "uri": moved[plan["uri"]]}
    return out
