"""Package routes over real HTTP: upload (streamed, capped), list, inspect, delete; and the
request-level limits (2 GB Content-Length, chunked upload past the cap, oversized header)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
from collections.abc import AsyncIterator

import httpx
from api_helpers import UPLOAD_CAP, Stack, assert_problem, sign
from e2e_helpers import CLASS, VENDOR

from fotakit.packages import generate_key
from fotakit.packages.build import make_manifest, sign_manifest
from fotakit.packages.manifest import class_id, vendor_id


def _package(stack: Stack, version: str = "2.0.0", size: int = 3000) -> bytes:
    return sign(bytes(range(256)) * (size // 256), stack.key, version=version, sequence=2)


async def test_upload_list_inspect_delete(stack: Stack) -> None:
    op = stack.client("operator")
    data = _package(stack)
    r = await op.post(
        "/api/v1/packages", content=data, headers={"Content-Type": "application/octet-stream"}
    )
    assert r.status_code == 201, r.text
    pkg = r.json()
    assert pkg["version"] == "2.0.0" and pkg["size"] == len(data) and pkg["in_use"] is False
    again = await op.post("/api/v1/packages", content=data)
    assert again.status_code == 200 and again.json()["id"] == pkg["id"]
    listed = (await op.get("/api/v1/packages")).json()
    assert [p["id"] for p in listed["items"]] == [pkg["id"]] and listed["next_cursor"] is None
    detail = (await op.get(f"/api/v1/packages/{pkg['id']}")).json()
    assert detail["manifest"]["version"] == "2.0.0"
    assert detail["manifest"]["sequence"] == 2
    assert detail["manifest"]["payload_size"] == pkg["payload_size"]
    # the stored file is served on /fw without a token
    async with httpx.AsyncClient(base_url=stack.base) as anon:
        fw = await anon.get(f"/fw/{pkg['id']}")
        assert fw.status_code == 200 and fw.content == data
    # operators cannot delete; admins can; then it is gone
    assert_problem(await op.delete(f"/api/v1/packages/{pkg['id']}"), 403)
    admin = stack.client("admin")
    assert (await admin.delete(f"/api/v1/packages/{pkg['id']}")).status_code == 204
    assert_problem(await admin.get(f"/api/v1/packages/{pkg['id']}"), 404)
    assert_problem(await admin.delete(f"/api/v1/packages/{pkg['id']}"), 404)
    assert_problem(await admin.get("/api/v1/packages/not-an-id"), 404)


async def test_upload_with_the_build_names_shows_the_class_by_name(stack: Stack) -> None:
    """The manifest has only UUIDs; names given at upload are kept when they hash to them
    (docs/package-format.md), refused (422, nothing stored) when they do not."""
    op = stack.client("operator")
    data = _package(stack)
    wrong = await op.post(
        "/api/v1/packages", content=data, params={"vendor": VENDOR, "class": "sensor-v3"}
    )
    body = assert_problem(wrong, 422)
    assert "class 'sensor-v3' of vendor 'example.com' is class ID" in body["detail"]
    body = assert_problem(
        await op.post("/api/v1/packages", content=data, params={"class": CLASS}), 422
    )
    assert "both vendor and class" in body["detail"]
    assert (await op.get("/api/v1/packages")).json()["items"] == []

    r = await op.post("/api/v1/packages", content=data, params={"vendor": VENDOR, "class": CLASS})
    assert r.status_code == 201, r.text
    pkg = r.json()
    assert (pkg["vendor_name"], pkg["class_name"]) == (VENDOR, CLASS)
    assert pkg["class"] == str(class_id(vendor_id(VENDOR), CLASS))  # the UUID stays
    # the class is named now: another package of it, uploaded without names, shows it too
    other = _package(stack, version="2.0.1")
    r = await op.post("/api/v1/packages", content=other)
    assert r.status_code == 201 and r.json()["class_name"] == CLASS, r.text
    listed = (await op.get("/api/v1/packages")).json()["items"]
    assert [p["class_name"] for p in listed] == [CLASS, CLASS]
    detail = (await op.get(f"/api/v1/packages/{pkg['id']}")).json()
    assert detail["vendor_name"] == VENDOR


async def test_an_upload_whose_version_breaks_the_rule_is_422(stack: Stack) -> None:
    """A package signed by a trusted key but with a version no device could report (it
    has a space: /3/0/3 is compared exactly) is refused, naming the rule."""
    payload = b"\x42" * 2000
    manifest = dataclasses.replace(
        make_manifest(
            payload_digest=hashlib.sha256(payload).digest(),
            payload_size=len(payload),
            version="1.0.0",
            vendor_domain=VENDOR,
            class_name=CLASS,
            sequence=3,
            key=stack.key,
        ),
        version="1.0 beta",  # what a builder other than fotakit's could sign
    )
    data = sign_manifest(manifest, stack.key) + payload
    body = assert_problem(
        await stack.client("operator").post("/api/v1/packages", content=data), 422
    )
    assert "version must not contain whitespace: '1.0 beta'" in body["detail"]
    assert (await stack.client("viewer").get("/api/v1/packages")).json()["items"] == []


async def test_rejected_uploads(stack: Stack) -> None:
    op = stack.client("operator")
    body = assert_problem(await op.post("/api/v1/packages", content=b"not a package"), 422)
    assert "rejected" in body["detail"]
    other = sign(b"x" * 100, generate_key("ed25519"), version="3.0.0", sequence=3)
    body = assert_problem(await op.post("/api/v1/packages", content=other), 422)
    assert "key" in body["detail"].lower() or "kid" in body["detail"].lower(), body
    assert_problem(await op.post("/api/v1/packages", content=b""), 422)
    assert (await op.get("/api/v1/packages")).json()["items"] == []
    # nothing left behind in the repository's tmp/
    tmp = stack.site.repository.root / "tmp"
    assert [p.name for p in tmp.iterdir() if p.name.startswith("api-upload-")] == []


async def _raw_request(port: int, head: bytes, body_chunks: list[bytes]) -> bytes:
    """Send ``head`` and body pieces on a raw connection while reading the answer; the
    answer's head (sending stops once it arrives)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = bytearray()

    async def send() -> None:
        writer.write(head)
        for chunk in body_chunks:
            writer.write(chunk)
            await writer.drain()

    sender = asyncio.ensure_future(send())
    try:
        async with asyncio.timeout(20):
            while b"\r\n\r\n" not in answer:
                data = await reader.read(65536)
                if not data:
                    break
                answer += data
            # the rest of the (small) problem body
            with contextlib.suppress(ConnectionError):
                while not answer.rstrip().endswith(b"}"):
                    data = await reader.read(65536)
                    if not data:
                        break
                    answer += data
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await sender
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return bytes(answer)


async def test_two_gigabyte_content_length_is_413_at_once(stack: Stack) -> None:
    token = stack.tokens["operator"]
    head = (
        "POST /api/v1/packages HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\n"
        "Content-Length: 2147483648\r\n\r\n"
    ).encode()
    answer = await _raw_request(stack.http.port, head, [b"\0" * 1024])
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"application/problem+json" in answer
    assert b"2147483648" in answer


async def test_chunked_upload_past_the_cap_is_413(stack: Stack) -> None:
    token = stack.tokens["operator"]
    head = (
        "POST /api/v1/packages HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    piece = b"\0" * 16384
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    # 4x the cap is on offer; the server must answer without waiting for the end
    chunks = [chunk] * (4 * UPLOAD_CAP // len(piece))
    answer = await _raw_request(stack.http.port, head, chunks)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"application/problem+json" in answer
    tmp = stack.site.repository.root / "tmp"
    assert [p.name for p in tmp.iterdir() if p.name.startswith("api-upload-")] == []


async def test_oversized_header_is_431_problem(stack: Stack) -> None:
    c = stack.client("viewer")
    r = await c.get("/api/v1/fleet", headers={"X-Big": "a" * 65536})
    body = assert_problem(r, 431)
    assert "headers" in body["detail"]
    # and the server still serves
    assert (await c.get("/api/v1/health")).json()["status"] == "ok"


async def test_uploads_without_trust_store_are_503(stack: Stack) -> None:
    stack.ctx.uploads = False
    body = assert_problem(
        await stack.client("operator").post("/api/v1/packages", content=b"x"), 503
    )
    assert "trust" in body["detail"]


async def test_upload_memory_stays_bounded(stack: Stack) -> None:
    """A 24 MiB upload (accepted up to the cap, then refused by verification) never holds
    more than a few chunks in memory: the body goes to a file as it arrives."""
    import tracemalloc

    size = 24 * 1024 * 1024
    stack.ctx.max_upload_bytes = 32 * 1024 * 1024
    piece = b"\x7f" * 65536

    async def body() -> AsyncIterator[bytes]:
        for _ in range(size // len(piece)):
            yield piece

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        r = await stack.client("operator").post("/api/v1/packages", content=body())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_problem(r, 422)
    assert peak - before < 4 * 1024 * 1024, f"peak grew by {peak - before} bytes"
