"""Package routes: list, upload (streamed, size-capped), inspect, delete when unused.

Upload: the body is the signed package (``application/octet-stream``). A declared
``Content-Length`` above the cap is refused with 413 before a byte of the body is read;
otherwise the body is streamed chunk by chunk into a temporary file under the
repository's ``tmp/`` (swept by the repository if the process dies mid-upload) and
refused with 413 as soon as the bytes received pass the cap, without reading the rest.
Memory per upload is one chunk. The file is then handed to :meth:`Repository.add` (off
the event loop), which verifies it against the trust store: a package that does not
verify is a 422 problem naming the verifier's reason; without a trust store, uploads are
a 503 problem. 201 for a new package, 200 when the same bytes were stored already.

Delete is refused (409) while an unfinished campaign or a running job uses the package.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import tempfile
from collections.abc import Mapping
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from fotakit.api import models
from fotakit.api.auth import Role, require
from fotakit.api.campaigns import in_use_packages
from fotakit.api.common import API_PREFIX, DEFAULT_LIMIT, Cursor, Limit, iso, page_by_key
from fotakit.api.context import ApiContext, get_ctx
from fotakit.api.problems import ApiProblem, not_found
from fotakit.packages import TrustDirectory
from fotakit.repository.errors import RepositoryError, UnknownPackage, UploadRejected
from fotakit.repository.names import MAX_NAME, ClassName
from fotakit.repository.records import PackageRecord, is_package_id

router = APIRouter(prefix=API_PREFIX, tags=["packages"])
Ctx = Annotated[ApiContext, Depends(get_ctx)]
PackageId = Annotated[str, Path(min_length=1, max_length=64)]

TEMP_PREFIX: Final = "api-upload-"

_UPLOAD_BODY: Final = {
    "requestBody": {
        "required": True,
        "description": "The signed package file (as built by `fotakit package build`).",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


def package_json(
    rec: PackageRecord, in_use: bool, names: Mapping[str, ClassName] | None = None
) -> dict[str, Any]:
    named = (names or {}).get(rec.class_id)
    return {
        "id": rec.id,
        "vendor": rec.vendor_id,
        "class": rec.class_id,
        "vendor_name": None if named is None else named.vendor,
        "class_name": None if named is None else named.name,
        "version": rec.version,
        "sequence": rec.sequence,
        "size": rec.size,
        "payload_size": rec.payload_size,
        "payload_sha256": rec.payload_sha256,
        "sha256": rec.sha256,
        "component": rec.component,
        "base_digest": rec.base_digest,
        "kid": rec.kid,
        "uploaded_at": iso(rec.uploaded_at),
        "downloads": rec.downloads,
        "bytes_served": rec.bytes_served,
        "in_use": in_use,
    }


async def _in_use(ctx: ApiContext) -> set[str]:
    service = ctx.service
    if service is None:
        return set()
    campaigns = await service.campaigns()
    active = await service.engine.store.list_jobs(active_only=True)
    return in_use_packages(campaigns, active)


@router.get(
    "/packages", response_model=models.PackagePage, dependencies=[Depends(require(Role.VIEWER))]
)
async def list_packages(
    ctx: Ctx, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> dict[str, Any]:
    """Stored packages, oldest upload first."""
    repository = ctx.need_repository()
    records = await asyncio.to_thread(repository.list)
    page, nxt = page_by_key(records, lambda r: [iso(r.uploaded_at), r.id], limit, cursor)
    used = await _in_use(ctx)
    names = await asyncio.to_thread(repository.class_names)
    return {"items": [package_json(r, r.id in used, names) for r in page], "next_cursor": nxt}


async def _get(ctx: ApiContext, package_id: str) -> PackageRecord:
    repository = ctx.need_repository()
    if not is_package_id(package_id):
        raise not_found("package", package_id)
    try:
        return await asyncio.to_thread(repository.get, package_id)
    except UnknownPackage:
        raise not_found("package", package_id) from None


def _manifest(path: os.PathLike[str] | str) -> dict[str, Any]:
    from fotakit.packages import PackageReader, decode_manifest

    with open(path, "rb") as fh:
        envelope = PackageReader(fh).read_envelope()
    m = decode_manifest(envelope.manifest_bytes)
    return {
        "sequence": m.sequence,
        "vendor_id": str(m.vendor_id),
        "class_id": str(m.class_id),
        "version": m.version,
        "payload_digest": m.payload_digest.hex(),
        "payload_size": m.payload_size,
        "base_digest": m.base_digest.hex() if m.base_digest is not None else None,
        "component": m.component,
        "manifest_digest": envelope.manifest_digest.hex(),
        "signers": [{"kid": b.kid.hex(), "algorithm": b.algorithm} for b in envelope.blocks],
    }


@router.get(
    "/packages/{package_id}",
    response_model=models.PackageDetail,
    dependencies=[Depends(require(Role.VIEWER))],
)
async def get_package(ctx: Ctx, package_id: PackageId) -> dict[str, Any]:
    """A package with its signed manifest (decoded from the stored file)."""
    rec = await _get(ctx, package_id)
    repository = ctx.need_repository()
    try:
        manifest = await asyncio.to_thread(_manifest, repository.blob_path(rec))
    except FileNotFoundError:
        raise not_found("package", package_id) from None
    used = await _in_use(ctx)
    names = await asyncio.to_thread(repository.class_names)
    return {**package_json(rec, rec.id in used, names), "manifest": manifest}


def _declared_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    if not raw.strip().isdigit():
        raise ApiProblem(400, f"invalid Content-Length {raw[:32]!r}", kind="bad-request")
    return int(raw)


def _too_large(cap: int, what: str) -> ApiProblem:
    return ApiProblem(
        413,
        f"{what}; packages of at most {cap} bytes are accepted",
        kind="too-large",
        headers={"Connection": "close"},
    )


async def _receive(request: Request, cap: int, directory: str) -> str:
    """Stream the body into a temporary file; its path (the caller removes it)."""
    fd, path = await asyncio.to_thread(tempfile.mkstemp, prefix=TEMP_PREFIX, dir=directory)
    received = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            async for chunk in request.stream():
                if not chunk:
                    continue
                received += len(chunk)
                if received > cap:
                    raise _too_large(cap, f"the upload passed {cap} bytes")
                await asyncio.to_thread(fh.write, chunk)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    if received == 0:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise ApiProblem(422, "the request body is empty: expected a signed package", kind="upload")
    return path


@router.post(
    "/packages",
    status_code=201,
    response_model=models.Package,
    responses={200: {"model": models.Package, "description": "already stored"}},
    openapi_extra=_UPLOAD_BODY,
    dependencies=[Depends(require(Role.OPERATOR))],
)
async def upload_package(
    ctx: Ctx,
    request: Request,
    vendor: Annotated[
        str | None,
        Query(
            max_length=MAX_NAME,
            description="The vendor domain the package was built for (`--vendor`); with "
            "`class`, kept as the class's name if it hashes to the package's IDs, else 422.",
        ),
    ] = None,
    class_name: Annotated[
        str | None,
        Query(
            alias="class",
            max_length=MAX_NAME,
            description="The class name the package was built for (`--class`).",
        ),
    ] = None,
) -> Any:
    """Upload a signed package (streamed to disk, verified, then stored)."""
    repository = ctx.need_repository()
    if (vendor is None) != (class_name is None):
        raise ApiProblem(
            422,
            "give both vendor and class (the names the package was built with), or neither",
            kind="validation",
        )
    if not ctx.uploads_enabled:
        raise ApiProblem(
            503,
            "no trust store configured: uploads are refused (start the server with --trust)",
            kind="unavailable",
        )
    trust = repository.trust
    if isinstance(trust, TrustDirectory) and not len(trust):  # len() re-reads the directory
        raise ApiProblem(
            503,
            f"no trusted signer key in {trust.path}: copy the signer's public key (PEM) "
            "there; it is read at the next upload",
            kind="unavailable",
        )
    cap = ctx.max_upload_bytes
    declared = _declared_length(request)
    if declared is not None and declared > cap:
        raise _too_large(cap, f"Content-Length is {declared} bytes")
    directory = repository.root / "tmp"
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    path = await _receive(request, cap, str(directory))
    try:
        before = {r.id for r in await asyncio.to_thread(repository.list)}
        try:
            rec = await asyncio.to_thread(
                functools.partial(repository.add, path, vendor_name=vendor, class_name=class_name)
            )
        except UploadRejected as exc:
            raise ApiProblem(422, f"the package was rejected: {exc}", kind="upload") from None
        except RepositoryError as exc:
            raise ApiProblem(409, str(exc), kind="conflict") from None
    finally:
        with contextlib.suppress(OSError):
            await asyncio.to_thread(os.unlink, path)
    existed = rec.id in before
    used = await _in_use(ctx)
    names = await asyncio.to_thread(repository.class_names)
    body = models.Package.model_validate(package_json(rec, rec.id in used, names))
    return JSONResponse(body.model_dump(by_alias=True), status_code=200 if existed else 201)


@router.delete(
    "/packages/{package_id}", status_code=204, dependencies=[Depends(require(Role.ADMIN))]
)
async def delete_package(ctx: Ctx, package_id: PackageId) -> Response:
    """Delete a package (409 while an unfinished campaign or a running job uses it)."""
    rec = await _get(ctx, package_id)
    if rec.id in await _in_use(ctx):
        raise ApiProblem(
            409,
            f"package {package_id!r} is used by an unfinished campaign or a running job",
            kind="conflict",
        )
    try:
        await asyncio.to_thread(ctx.need_repository().delete, rec.id)
    except UnknownPackage:
        raise not_found("package", package_id) from None
    return Response(status_code=204)
