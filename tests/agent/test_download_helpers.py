"""Shared parts of the download tests (no tests here): real servers, a recording file sink.

Named ``test_download_*`` to sit with the files it serves; imported by bare name.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiocoap
import aiocoap.resource
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fotakit.coap import create_endpoint
from fotakit.packages import TrustStore, build_package_in_memory, generate_key
from fotakit.repository import PackageRecord, Repository
from fotakit.repository.coap import coap_resources
from fotakit.repository.http import create_http_app, serve_http
from fotakit.store import default_db_url


def payload_of(size: int, seed: int = 0) -> bytes:
    """Deterministic, non-repeating bytes (a misplaced block can never look right)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def make_repository(root: Path, payload_size: int = 100_000) -> tuple[Repository, PackageRecord]:
    """A repository on disk holding one real signed package."""
    key = generate_key("ed25519")
    trust = TrustStore()
    trust.add(None, key.public_key())
    repo = Repository(root / "repository", default_db_url(root / "data"), trust)
    data = build_package_in_memory(
        payload_of(payload_size),
        version="2.0.0",
        vendor_domain="example.com",
        class_name="sensor-v2",
        sequence=2,
        key=key,
    )
    return repo, repo.add(data)


def package_bytes(repo: Repository, record: PackageRecord) -> bytes:
    return repo.blob_path(record).read_bytes()


def served_bytes(repo: Repository, record: PackageRecord) -> int:
    """Bytes the repository counted as served for ``record`` (CoAP counts per block)."""
    return repo.get(record.id).bytes_served  # row + counts not yet flushed


@asynccontextmanager
async def coap_repository(repo: Repository) -> AsyncIterator[int]:
    """The repository's CoAP ``/fw`` resource on 127.0.0.1; yields the port."""
    site = aiocoap.resource.Site()
    for path, resource in coap_resources(repo):
        site.add_resource(path, resource)
    ctx, port = await create_endpoint(site, "127.0.0.1", 0)
    try:
        yield port
    finally:
        await ctx.shutdown()


@asynccontextmanager
async def http_app(app: Starlette) -> AsyncIterator[int]:
    """Any Starlette app on uvicorn on 127.0.0.1; yields the port."""
    server = await serve_http(app, "127.0.0.1", 0)
    try:
        yield server.port
    finally:
        await server.stop()


@asynccontextmanager
async def https_app(app: Starlette, tmp: Path) -> AsyncIterator[tuple[int, Path]]:
    """``app`` over TLS on 127.0.0.1 with a fresh self-signed certificate for that IP.

    Yields the port and the certificate's path (the client's trust anchor).
    """
    cert, key = _self_signed(tmp)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        lifespan="off",
        log_level="warning",
        access_log=False,
        ssl_certfile=str(cert),
        ssl_keyfile=str(key),
    )
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)  # as fotakit.repository.http.HttpServer
    await server.startup()
    main = asyncio.get_running_loop().create_task(server.main_loop())
    try:
        yield int(server.servers[0].sockets[0].getsockname()[1]), cert
    finally:
        server.should_exit = True
        await main
        await server.shutdown()


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "tls-cert.pem", tmp / "tls-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def http_repository(repo: Repository) -> Starlette:
    return create_http_app(repo)


def range_ignoring_app(data: bytes, etag: str) -> Starlette:
    """An HTTP server that answers every GET with 200 and the whole body (no Range)."""

    async def whole(request: Request) -> Response:
        return Response(data, headers={"ETag": etag}, media_type="application/octet-stream")

    return Starlette(routes=[Route("/fw", whole)])


@asynccontextmanager
async def truncating_http_server(sent: bytes, claimed: int) -> AsyncIterator[tuple[int, list[str]]]:
    """A misbehaving HTTP/1.1 server on 127.0.0.1: every GET gets 200 with
    ``Content-Length: claimed`` (Range ignored), only ``sent`` of the body, then the
    connection closed. Yields the port and the Range header of every request (or "")."""
    ranges: list[str] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
            found = [ln for ln in head.split("\r\n") if ln.startswith("range:")]
            ranges.append(found[0].partition(":")[2].strip() if found else "")
            writer.write(
                f'HTTP/1.1 200 OK\r\nContent-Length: {claimed}\r\nETag: "lying"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n".encode()
                + sent
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], ranges
    finally:
        server.close()
        await server.wait_closed()


class FileSink:
    """A file-backed DownloadSink that records every write and truncate."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()
        self.writes: list[tuple[int, int]] = []
        self.truncates: list[int] = []

    def write(self, offset: int, data: bytes) -> None:
        with open(self.path, "r+b") as fh:
            fh.seek(offset)
            fh.write(data)
        self.writes.append((offset, len(data)))

    def truncate(self, size: int) -> None:
        with open(self.path, "r+b") as fh:
            fh.truncate(size)
        self.truncates.append(size)

    @property
    def written(self) -> int:
        return sum(n for _, n in self.writes)

    def data(self) -> bytes:
        return self.path.read_bytes()
