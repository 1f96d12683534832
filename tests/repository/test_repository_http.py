"""HTTP delivery: Range, If-Range, ETag, 206/304/416 as RFC 9110 says; curl interop."""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import shutil
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from repo_helpers import BuildFn, payload_of, skip_or_fail

from fotakit.packages import TrustStore, verify_package
from fotakit.repository import Form, PackageRecord, Repository
from fotakit.repository.http import (
    MAX_RANGE_SPECS,
    MAX_RANGES,
    Problem,
    create_http_app,
    parse_range,
    serve_http,
)

TIMEOUT = 10.0


@pytest.fixture
async def base_url(repo: Repository) -> AsyncIterator[str]:
    server = await serve_http(create_http_app(repo), "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        yield client


@pytest.fixture
def package(repo: Repository, build: BuildFn) -> tuple[PackageRecord, bytes]:
    data = build(payload_of(300_000), version="4.0.0")
    return repo.add(data), data


def _url(base: str, record: PackageRecord, form: Form = Form.PACKAGE) -> str:
    return base + record.path(form)


async def test_get_returns_the_whole_package_with_validators(
    base_url: str, http: httpx.AsyncClient, package: tuple[PackageRecord, bytes]
) -> None:
    record, data = package
    response = await http.get(_url(base_url, record))
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["etag"] == f'"{record.sha256[:16]}"'
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-length"] == str(len(data))
    assert response.headers["content-type"] == "application/octet-stream"
    modified = email.utils.parsedate_to_datetime(response.headers["last-modified"])
    assert abs(modified - record.uploaded_at) < timedelta(seconds=1)


async def test_payload_form_is_the_bare_payload(
    base_url: str, http: httpx.AsyncClient, package: tuple[PackageRecord, bytes]
) -> None:
    record, data = package
    response = await http.get(_url(base_url, record, Form.PAYLOAD))
    assert response.content == data[record.payload_offset :] == payload_of(300_000)
    assert response.headers["etag"] == f'"{record.payload_sha256[:16]}"'
    ranged = await http.get(_url(base_url, record, Form.PAYLOAD), headers={"Range": "bytes=10-19"})
    assert ranged.content == payload_of(300_000)[10:20]
    assert ranged.headers["content-range"] == "bytes 10-19/300000"


async def test_head_has_the_headers_of_get_and_no_body(
    base_url: str, http: httpx.AsyncClient, package: tuple[PackageRecord, bytes]
) -> None:
    record, data = package
    response = await http.head(_url(base_url, record))
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == str(len(data))
    ranged = await http.head(_url(base_url, record), headers={"Range": "bytes=0-9"})
    assert ranged.status_code == 206
    assert ranged.headers["content-length"] == "10"


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=1000-1999", 1000, 1999),
        ("bytes=-500", None, None),  # suffix: the last 500 bytes
        ("bytes=299000-", 299000, None),  # open-ended
        ("bytes=100-99999999", 100, None),  # clipped to the end
    ],
)
async def test_a_single_range_gets_206_with_content_range(
    base_url: str,
    http: httpx.AsyncClient,
    package: tuple[PackageRecord, bytes],
    header: str,
    first: int | None,
    last: int | None,
) -> None:
    record, data = package
    size = len(data)
    start = size - 500 if first is None else first
    end = size - 1 if last is None else last
    response = await http.get(_url(base_url, record), headers={"Range": header})
    assert response.status_code == 206
    assert response.content == data[start : end + 1]
    assert response.headers["content-range"] == f"bytes {start}-{end}/{size}"
    assert response.headers["etag"] == f'"{record.sha256[:16]}"'


async def test_several_ranges_get_a_multipart_byteranges_body(
    base_url: str, http: httpx.AsyncClient, package: tuple[PackageRecord, bytes]
) -> None:
    record, data = package
    size = len(data)
    response = await http.get(_url(base_url, record), headers={"Range": "bytes=0-9,-5,100-109"})
    assert response.status_code == 206
    media, _, param = response.headers["content-type"].partition("; boundary=")
    assert media == "multipart/byteranges"
    parts = response.content.split(f"--{param}".encode())
    assert parts[-1] == b"--\r\n"
    bodies = []
    for part in parts[1:-1]:
        head, _, body = part.partition(b"\r\n\r\n")
        bodies.append((head.decode(), body.removesuffix(b"\r\n")))
    assert [b for _, b in bodies] == [data[0:10], data[size - 5 :], data[100:110]]
    assert f"Content-Range: bytes {size - 5}-{size - 1}/{size}" in bodies[1][0]
    assert int(response.headers["content-length"]) == len(response.content)


@pytest.mark.parametrize("header", ["bytes={size}-", "bytes={size}-{size}0", "bytes=-0"])
async def test_an_unsatisfiable_range_gets_416_with_the_size(
    base_url: str, http: httpx.AsyncClient, package: tuple[PackageRecord, bytes], header: str
) -> None:
    record, data = package
    header = header.format(size=len(data))
    response = await http.get(_url(base_url, record), headers={"Range": header})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{len(data)}"
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 416


@pytest.mark.parametrize("header", ["bytes=5-1", "items=0-1", "bytes=abc", "bytes=", "0-1"])
async def test_an_invalid_range_is_ignored_and_the_whole_body_sent(
    base_url: str, http: httpx.AsyncClient, package: tuple[PackageRecord, bytes], header: str
) -> None:
    record, data = package
    response = await http.get(_url(base_url, record), headers={"Range": header})
    assert response.status_code == 200
    assert response.content == data


async def test_if_range_with_the_current_etag_or_date_honours_the_range(
    base_url: str, http: httpx.AsyncClient, package: tuple[PackageRecord, bytes]
) -> None:
    record, data = package
    first = await http.head(_url(base_url, record))
    for validator in (first.headers["etag"], first.headers["last-modified"]):
        response = await http.get(
            _url(base_url, record), headers={"Range": "bytes=10-20", "If-Range": validator}
        )
        assert response.status_code == 206
        assert response.content == data[10:21]


@pytest.mark.parametrize(
    "validator",
    ['"0000000000000000"', 'W/"{etag}"', "Thu, 01 Jan 1970 00:00:00 GMT", "not a date"],
)
async def test_if_range_mismatch_sends_the_whole_new_body(
    base_url: str,
    http: httpx.AsyncClient,
    package: tuple[PackageRecord, bytes],
    validator: str,
) -> None:
    record, data = package
    headers = {"Range": "bytes=10-20", "If-Range": validator.format(etag=record.sha256[:16])}
    response = await http.get(_url(base_url, record), headers=headers)
    assert response.status_code == 200
    assert response.content == data


async def test_if_none_match_gets_304_without_body(
    base_url: str, http: httpx.AsyncClient, package: tuple[PackageRecord, bytes]
) -> None:
    record, _ = package
    etag = f'"{record.sha256[:16]}"'
    for value in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        response = await http.get(_url(base_url, record), headers={"If-None-Match": value})
        assert response.status_code == 304
        assert response.content == b""
        assert response.headers["etag"] == etag
    other = await http.get(_url(base_url, record), headers={"If-None-Match": '"other"'})
    assert other.status_code == 200


@pytest.mark.parametrize(
    "path", ["/fw/0123456789abcdef", "/fw/xyz", "/fw/0123456789abcdef/payload"]
)
async def test_unknown_packages_get_404_problem_json(
    base_url: str, http: httpx.AsyncClient, path: str
) -> None:
    response = await http.get(base_url + path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert (body["status"], body["title"]) == (404, "Not Found")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
async def test_other_methods_get_405_with_allow(
    base_url: str, http: httpx.AsyncClient, package: tuple[PackageRecord, bytes], method: str
) -> None:
    record, _ = package
    response = await http.request(method, _url(base_url, record))
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert response.headers["content-type"] == "application/problem+json"


async def test_downloads_count_once_the_last_byte_is_sent(
    base_url: str,
    http: httpx.AsyncClient,
    repo: Repository,
    package: tuple[PackageRecord, bytes],
) -> None:
    record, data = package
    await http.get(_url(base_url, record), headers={"Range": "bytes=0-99"})
    assert (repo.get(record.id).downloads, repo.get(record.id).bytes_served) == (0, 100)
    await http.get(_url(base_url, record), headers={"Range": "bytes=100-"})  # the resumption
    await http.get(_url(base_url, record, Form.PAYLOAD))
    await http.head(_url(base_url, record))
    got = repo.get(record.id)
    assert got.downloads == 2
    assert got.bytes_served == len(data) + record.payload_size


async def _curl(*args: str) -> tuple[int, bytes, bytes]:
    tool = shutil.which("curl")
    if tool is None:
        skip_or_fail("curl is not installed")
    proc = await asyncio.create_subprocess_exec(
        str(tool),
        "--silent",
        "--show-error",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, stdout, stderr


async def test_curl_range_and_resumed_download_give_the_exact_package(
    base_url: str,
    package: tuple[PackageRecord, bytes],
    trust: TrustStore,
    tmp_path: Path,
) -> None:
    record, data = package
    url = _url(base_url, record)
    code, part, err = await _curl("--range", "1000-1999", url)
    assert code == 0, err
    assert part == data[1000:2000]

    # An interrupted download: the first 123 457 bytes are on disk, curl -C - resumes.
    out = tmp_path / "resumed.suit"
    out.write_bytes(data[:123_457])
    code, _, err = await _curl("--fail", "-C", "-", "-o", str(out), url)
    assert code == 0, err
    assert hashlib.sha256(out.read_bytes()).hexdigest() == record.sha256
    assert verify_package(out, trust).manifest.version == "4.0.0"


@given(st.text(max_size=60), st.integers(min_value=0, max_value=10_000))
def test_parse_range_never_crashes_and_stays_within_the_representation(
    header: str, size: int
) -> None:
    try:
        ranges = parse_range(header, size)
    except Problem as problem:
        assert problem.status == 416
        assert problem.headers == {"Content-Range": f"bytes */{size}"}
        return
    for r in ranges or []:
        assert 0 <= r.first <= r.last < size


@given(st.integers(min_value=1, max_value=10_000), st.data())
def test_parse_range_returns_exactly_the_bytes_asked_for(size: int, data: st.DataObject) -> None:
    first = data.draw(st.integers(min_value=0, max_value=size - 1))
    last = data.draw(st.integers(min_value=first, max_value=size * 2))
    ranges = parse_range(f"bytes={first}-{last}", size)
    assert ranges is not None
    assert [(r.first, r.last) for r in ranges] == [(first, min(last, size - 1))]


@pytest.mark.parametrize(
    ("header", "status", "span"),
    [
        ("bytes=0-" + "9" * 5000, 206, (0, None)),  # a last-pos past any file: to the end
        ("bytes=" + "9" * 5000 + "-", 416, None),  # a first-pos past the end
        ("bytes=-" + "9" * 5000, 206, (0, None)),  # a suffix longer than the file: all of it
        ("bytes=" + "0" * 5000 + "7-9", 206, (7, 9)),  # leading zeros are still a number
        ("bytes=" + "9" * 5000 + "-1", 200, None),  # last < first: invalid, ignored
    ],
)
async def test_positions_of_any_length_never_fail_the_request(
    base_url: str,
    http: httpx.AsyncClient,
    package: tuple[PackageRecord, bytes],
    header: str,
    status: int,
    span: tuple[int, int | None] | None,
) -> None:
    record, data = package
    response = await http.get(_url(base_url, record), headers={"Range": header})
    assert response.status_code == status
    if status == 200:
        assert response.content == data
    if span is not None:
        first, last = span
        end = len(data) - 1 if last is None else last
        assert response.content == data[first : end + 1]
        assert response.headers["content-range"] == f"bytes {first}-{end}/{len(data)}"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (",".join(["bytes=0-"] + ["0-"] * 15), [(0, None)]),  # 16 x the whole file: once
        ("bytes=0-99,50-149,150-199", [(0, 199)]),  # overlapping and adjacent: one range
        ("bytes=100-109,0-9,5-20", [(100, 109), (0, 20)]),  # merged ones keep their place
        ("bytes=0-9, ,20-29", [(0, 9), (20, 29)]),  # an empty list element is skipped
    ],
)
async def test_overlapping_ranges_are_coalesced_so_no_byte_is_sent_twice(
    base_url: str,
    http: httpx.AsyncClient,
    package: tuple[PackageRecord, bytes],
    header: str,
    expected: list[tuple[int, int | None]],
) -> None:
    record, data = package
    size = len(data)
    spans = [(first, size - 1 if last is None else last) for first, last in expected]
    response = await http.get(_url(base_url, record), headers={"Range": header})
    assert response.status_code == 206
    if len(spans) == 1:
        ((first, last),) = spans
        assert response.headers["content-range"] == f"bytes {first}-{last}/{size}"
        assert response.content == data[first : last + 1]
        return
    boundary = response.headers["content-type"].partition("; boundary=")[2]
    parts = response.content.split(f"--{boundary}".encode())[1:-1]
    heads = [part.partition(b"\r\n\r\n")[0].decode() for part in parts]
    bodies = [part.partition(b"\r\n\r\n")[2].removesuffix(b"\r\n") for part in parts]
    assert bodies == [data[first : last + 1] for first, last in spans]
    for head, (first, last) in zip(heads, spans, strict=True):
        assert f"Content-Range: bytes {first}-{last}/{size}" in head
    assert len(response.content) < 2 * size


@pytest.mark.parametrize("count", [MAX_RANGES + 1, MAX_RANGE_SPECS + 1])
async def test_too_many_ranges_get_the_whole_body_once(
    base_url: str, http: httpx.AsyncClient, package: tuple[PackageRecord, bytes], count: int
) -> None:
    record, data = package
    header = "bytes=" + ",".join(f"{i * 100}-{i * 100 + 9}" for i in range(count))
    response = await http.get(_url(base_url, record), headers={"Range": header})
    assert response.status_code == 200
    assert response.content == data


def test_non_ascii_digits_are_not_digit_and_the_range_is_ignored() -> None:
    assert parse_range("bytes=\u0661-\u0662", 10) is None  # ARABIC-INDIC ONE, TWO
    assert parse_range("bytes=0-1\u00a0", 10) is None  # NO-BREAK SPACE is not OWS


def test_as_many_distinct_ranges_as_allowed_are_served() -> None:
    header = "bytes=" + ",".join(f"{i * 100}-{i * 100 + 9}" for i in range(MAX_RANGES))
    ranges = parse_range(header, 10_000)
    assert ranges is not None and len(ranges) == MAX_RANGES
