"""Pull downloads over real sockets from the fotakit repository's CoAP and HTTP servers."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_download_helpers import (
    FileSink,
    coap_repository,
    http_app,
    http_repository,
    https_app,
    make_repository,
    package_bytes,
    range_ignoring_app,
    served_bytes,
    truncating_http_server,
)

from fotakit.agent.download import (
    HTTP_CHUNK,
    MAX_RESTARTS,
    Backoff,
    Downloader,
    DownloadError,
    DownloadProgress,
)
from fotakit.lwm2m.objects import UpdateProtocol, UpdateResult
from fotakit.repository import Form, PackageRecord, Repository
from fotakit.repository.coap import coap_etag

pytestmark = pytest.mark.timeout(60)
BLOCK = 1024


@pytest.fixture
def repository(tmp_path: Path) -> Iterator[tuple[Repository, PackageRecord]]:
    repo, record = make_repository(tmp_path)
    try:
        yield repo, record
    finally:
        repo.close()


@pytest.fixture
async def coap_uri(repository: tuple[Repository, PackageRecord]) -> AsyncIterator[str]:
    repo, record = repository
    async with coap_repository(repo) as port:
        yield record.coap_uri("127.0.0.1", port)


@pytest.fixture
async def http_uri(repository: tuple[Repository, PackageRecord]) -> AsyncIterator[str]:
    repo, record = repository
    async with http_app(http_repository(repo)) as port:
        yield record.http_uri("127.0.0.1", port)


@pytest.fixture
async def downloader() -> AsyncIterator[Downloader]:
    async with Downloader(backoff=Backoff(initial=0.01, max_delay=0.05), seed=1) as d:
        yield d


@pytest.fixture
def sink(tmp_path: Path) -> FileSink:
    return FileSink(tmp_path / "image.bin")


# -- URIs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("coap://127.0.0.1:5683/fw/1", UpdateProtocol.COAP),
        ("http://example.com/fw.bin", UpdateProtocol.HTTP),
        ("HTTPS://[::1]:8443/fw", UpdateProtocol.HTTPS),
    ],
)
def test_check_uri_accepts_coap_http_https(uri: str, expected: UpdateProtocol) -> None:
    assert Downloader.check_uri(uri) is expected


@pytest.mark.parametrize(
    ("uri", "result"),
    [
        ("coaps://127.0.0.1/fw", UpdateResult.UNSUPPORTED_PROTOCOL),
        ("coap+tcp://127.0.0.1/fw", UpdateResult.UNSUPPORTED_PROTOCOL),
        ("ftp://127.0.0.1/fw", UpdateResult.UNSUPPORTED_PROTOCOL),
        ("", UpdateResult.INVALID_URI),
        ("not a uri", UpdateResult.INVALID_URI),
        ("coap://", UpdateResult.INVALID_URI),
        ("coap:///fw/1", UpdateResult.INVALID_URI),
        ("http://[::1/fw", UpdateResult.INVALID_URI),
        ("coap://127.0.0.1:99999/fw", UpdateResult.INVALID_URI),
        ("coap://127.0.0.1/" + "a" * 250, UpdateResult.INVALID_URI),
        ("/fw/1", UpdateResult.INVALID_URI),
    ],
)
def test_check_uri_rejects_with_the_update_result(uri: str, result: UpdateResult) -> None:
    with pytest.raises(DownloadError) as caught:
        Downloader.check_uri(uri)
    assert caught.value.result is result


@given(st.text(max_size=300))
def test_check_uri_never_fails_other_than_with_7_or_9(uri: str) -> None:
    try:
        protocol = Downloader.check_uri(uri)
    except DownloadError as exc:
        assert exc.result in (UpdateResult.INVALID_URI, UpdateResult.UNSUPPORTED_PROTOCOL)
    else:
        assert protocol in (UpdateProtocol.COAP, UpdateProtocol.HTTP, UpdateProtocol.HTTPS)
        assert len(uri.encode()) <= 255


async def test_coaps_uri_answers_9_without_touching_the_network(
    downloader: Downloader, sink: FileSink
) -> None:
    with pytest.raises(DownloadError) as caught:
        await downloader.download("coaps://127.0.0.1:5684/fw/1", sink)
    assert caught.value.result is UpdateResult.UNSUPPORTED_PROTOCOL
    assert sink.writes == [] and downloader.stats.requests == 0


# -- CoAP -----------------------------------------------------------------------------------


async def test_coap_pull_writes_the_package_byte_for_byte(
    repository: tuple[Repository, PackageRecord], coap_uri: str, sink: FileSink
) -> None:
    repo, record = repository
    seen: list[DownloadProgress] = []
    async with Downloader(on_progress=seen.append) as downloader:
        final = await downloader.download(coap_uri, sink)
    expected = package_bytes(repo, record)
    assert sink.data() == expected
    assert final == DownloadProgress(
        coap_uri, len(expected), coap_etag(record, Form.PACKAGE), len(expected)
    )
    offsets = [p.offset for p in seen]
    assert offsets == sorted(offsets) and offsets[-1] == len(expected)
    assert len(seen) == -(-len(expected) // BLOCK)  # one report per block
    assert served_bytes(repo, record) == len(expected)
    assert downloader.stats.requests == len(seen)


async def test_coap_pull_resumes_at_the_block_boundary_and_fetches_only_the_rest(
    repository: tuple[Repository, PackageRecord], coap_uri: str, sink: FileSink
) -> None:
    repo, record = repository
    expected = package_bytes(repo, record)
    sink.write(0, expected[:10_500])  # the file may hold more than the persisted offset
    resume = DownloadProgress(coap_uri, 10_300, coap_etag(record, Form.PACKAGE), len(expected))
    async with Downloader() as downloader:
        await downloader.download(coap_uri, sink, resume=resume)
    assert sink.data() == expected
    assert downloader.stats.resumed_from == 10 * BLOCK
    assert served_bytes(repo, record) == len(expected) - 10 * BLOCK


async def test_coap_resume_with_a_changed_etag_restarts_from_zero(
    repository: tuple[Repository, PackageRecord], coap_uri: str, sink: FileSink
) -> None:
    repo, record = repository
    expected = package_bytes(repo, record)
    sink.write(0, b"\xee" * 20_000)  # an image of another package
    resume = DownloadProgress(coap_uri, 20_000, b"\x01" * 8, len(expected))
    async with Downloader() as downloader:
        final = await downloader.download(coap_uri, sink, resume=resume)
    assert sink.data() == expected
    assert final.etag == coap_etag(record, Form.PACKAGE)
    assert sink.truncates[-1] == 0 and downloader.stats.restarts == 1
    # one block at the old offset revealed the new ETag, then everything from zero
    assert served_bytes(repo, record) == len(expected) + BLOCK


async def test_coap_resume_of_a_complete_download_refetches_only_the_last_block(
    repository: tuple[Repository, PackageRecord], coap_uri: str, sink: FileSink
) -> None:
    repo, record = repository
    expected = package_bytes(repo, record)
    sink.write(0, expected)
    resume = DownloadProgress(
        coap_uri, len(expected), coap_etag(record, Form.PACKAGE), len(expected)
    )
    async with Downloader() as downloader:
        await downloader.download(coap_uri, sink, resume=resume)
    assert sink.data() == expected
    assert served_bytes(repo, record) == len(expected) - (len(expected) - 1) // BLOCK * BLOCK


async def test_coap_smaller_block_size_is_honoured(
    repository: tuple[Repository, PackageRecord], coap_uri: str, sink: FileSink
) -> None:
    repo, record = repository
    async with Downloader(block_size=256) as downloader:
        await downloader.download(coap_uri, sink)
    assert sink.data() == package_bytes(repo, record)
    assert max(n for _, n in sink.writes) == 256


async def test_coap_unknown_package_answers_invalid_uri(
    coap_uri: str, downloader: Downloader, sink: FileSink
) -> None:
    missing = coap_uri.rsplit("/", 1)[0] + "/0000000000000000"
    with pytest.raises(DownloadError) as caught:
        await downloader.download(missing, sink)
    assert caught.value.result is UpdateResult.INVALID_URI
    assert downloader.stats.attempts == 1  # not retried: the link is fine


async def test_coap_package_larger_than_storage_answers_2_before_writing(
    repository: tuple[Repository, PackageRecord], coap_uri: str, sink: FileSink
) -> None:
    _repo, record = repository
    async with Downloader(max_size=record.size - 1) as downloader:
        with pytest.raises(DownloadError) as caught:
            await downloader.download(coap_uri, sink)
    assert caught.value.result is UpdateResult.NOT_ENOUGH_FLASH
    assert sink.writes == []


async def test_coap_server_not_listening_gives_4_after_bounded_retries(sink: FileSink) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backoff = Backoff(initial=0.01, max_delay=0.02)
    async with Downloader(retries=2, backoff=backoff) as downloader:
        with pytest.raises(DownloadError) as caught:
            await downloader.download(f"coap://127.0.0.1:{port}/fw/x", sink)
    assert caught.value.result is UpdateResult.CONNECTION_LOST
    assert downloader.stats.attempts == 3
    assert caught.value.progress is not None and caught.value.progress.offset == 0


# -- HTTP -----------------------------------------------------------------------------------


async def test_http_pull_writes_the_package_byte_for_byte(
    repository: tuple[Repository, PackageRecord], http_uri: str, sink: FileSink
) -> None:
    repo, record = repository
    seen: list[DownloadProgress] = []
    async with Downloader(on_progress=seen.append) as downloader:
        final = await downloader.download(http_uri, sink)
    expected = package_bytes(repo, record)
    assert sink.data() == expected
    assert final.offset == final.total == len(expected)
    assert final.etag == f'"{record.etag(Form.PACKAGE).hex()}"'.encode()
    assert seen[-1] == final


async def test_http_pull_resumes_with_range_and_fetches_only_the_rest(
    repository: tuple[Repository, PackageRecord], http_uri: str, sink: FileSink
) -> None:
    repo, record = repository
    expected = package_bytes(repo, record)
    sink.write(0, expected[:12_345])
    etag = f'"{record.etag(Form.PACKAGE).hex()}"'.encode()
    resume = DownloadProgress(http_uri, 12_345, etag, len(expected))
    async with Downloader() as downloader:
        await downloader.download(http_uri, sink, resume=resume)
    assert sink.data() == expected
    assert sink.writes[1][0] == 12_345  # writes[0] is the test's own prefix
    assert sink.written - 12_345 == len(expected) - 12_345
    assert downloader.stats.restarts == 0


async def test_http_resume_with_a_changed_etag_restarts_from_zero(
    repository: tuple[Repository, PackageRecord], http_uri: str, sink: FileSink
) -> None:
    repo, record = repository
    expected = package_bytes(repo, record)
    sink.write(0, b"\xee" * 30_000)
    resume = DownloadProgress(http_uri, 30_000, b'"0000000000000000"', len(expected))
    async with Downloader() as downloader:
        await downloader.download(http_uri, sink, resume=resume)
    assert sink.data() == expected
    assert 0 in sink.truncates and downloader.stats.restarts == 1
    assert sink.writes[1][0] == 0


async def test_http_server_ignoring_range_restarts_from_zero(sink: FileSink) -> None:
    body = bytes(range(256)) * 300
    async with http_app(range_ignoring_app(body, '"abc"')) as port:
        uri = f"http://127.0.0.1:{port}/fw"
        sink.write(0, body[:5000])
        resume = DownloadProgress(uri, 5000, b'"abc"', len(body))
        async with Downloader() as downloader:
            await downloader.download(uri, sink, resume=resume)
    assert sink.data() == body
    assert downloader.stats.restarts == 1 and sink.writes[1][0] == 0


async def test_a_server_claiming_a_long_body_ending_early_ignoring_range_gives_4(
    sink: FileSink,
) -> None:
    sent = bytes(range(256)) * 800  # 204800 bytes of a claimed 1 MB, again and again
    kept = len(sent) // HTTP_CHUNK * HTTP_CHUNK  # whole chunks reach the sink; then the cut
    async with truncating_http_server(sent, claimed=1_000_000) as (port, ranges):
        uri = f"http://127.0.0.1:{port}/fw/lying"
        backoff = Backoff(initial=0.01, max_delay=0.02)
        async with Downloader(backoff=backoff, seed=1, max_size=2_000_000) as downloader:
            with pytest.raises(DownloadError) as caught:
                await asyncio.wait_for(downloader.download(uri, sink), 30)
    assert caught.value.result is UpdateResult.CONNECTION_LOST
    assert f"restarted {MAX_RESTARTS + 1} times" in str(caught.value)
    # the first GET, then one ranged GET per restart: each got 200 from zero
    assert ranges == [""] + [f"bytes={kept}-"] * (MAX_RESTARTS + 1)
    assert downloader.stats.restarts == MAX_RESTARTS + 1
    assert caught.value.progress is not None and caught.value.progress.offset == kept


async def test_a_claimed_length_beyond_the_slot_gives_2_at_the_first_response(
    sink: FileSink,
) -> None:
    async with truncating_http_server(b"x" * 1000, claimed=1_000_000) as (port, ranges):
        async with Downloader(max_size=500_000) as downloader:
            with pytest.raises(DownloadError) as caught:
                await asyncio.wait_for(downloader.download(f"http://127.0.0.1:{port}/fw", sink), 30)
    assert caught.value.result is UpdateResult.NOT_ENOUGH_FLASH
    assert ranges == [""] and sink.written == 0


async def test_http_offset_past_the_end_416_restarts(
    repository: tuple[Repository, PackageRecord], http_uri: str, sink: FileSink
) -> None:
    repo, record = repository
    expected = package_bytes(repo, record)
    etag = f'"{record.etag(Form.PACKAGE).hex()}"'.encode()
    resume = DownloadProgress(http_uri, len(expected) + 10, etag, None)
    async with Downloader() as downloader:
        await downloader.download(http_uri, sink, resume=resume)
    assert sink.data() == expected and downloader.stats.restarts == 1


async def test_http_404_answers_invalid_uri(
    http_uri: str, downloader: Downloader, sink: FileSink
) -> None:
    with pytest.raises(DownloadError) as caught:
        await downloader.download(http_uri.rsplit("/", 1)[0] + "/0000000000000000", sink)
    assert caught.value.result is UpdateResult.INVALID_URI


async def test_http_package_larger_than_storage_answers_2(http_uri: str, sink: FileSink) -> None:
    async with Downloader(max_size=1000) as downloader:
        with pytest.raises(DownloadError) as caught:
            await downloader.download(http_uri, sink)
    assert caught.value.result is UpdateResult.NOT_ENOUGH_FLASH
    assert sink.written == 0


async def test_https_pull_verifies_the_server_and_writes_the_package(
    repository: tuple[Repository, PackageRecord], sink: FileSink, tmp_path: Path
) -> None:
    repo, record = repository
    async with https_app(http_repository(repo), tmp_path) as (port, cert):
        uri = "https://127.0.0.1:" + str(port) + record.path()
        trusting = ssl.create_default_context(cafile=str(cert))
        async with Downloader(verify=trusting) as downloader:
            await downloader.download(uri, sink)
        assert sink.data() == package_bytes(repo, record)
        backoff = Backoff(initial=0.01, max_delay=0.02)
        async with Downloader(retries=1, backoff=backoff) as untrusting:  # system CAs only
            with pytest.raises(DownloadError) as caught:
                await untrusting.download(uri, FileSink(tmp_path / "other.bin"))
        assert caught.value.result is UpdateResult.CONNECTION_LOST


def test_progress_round_trips_through_json() -> None:
    progress = DownloadProgress("coap://h/fw", 4096, b"\x00\xff", 10_000)
    assert DownloadProgress.from_json(progress.to_json()) == progress
    bare = DownloadProgress("http://h/fw", 0, None, None)
    assert DownloadProgress.from_json(bare.to_json()) == bare
