"""CoAP pulls through the in-process impairment relay: outages, retries, adaptive timers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from test_download_helpers import (
    FileSink,
    coap_repository,
    make_repository,
    package_bytes,
    served_bytes,
)

from fotakit.agent.cocoa import CocoaConfig
from fotakit.agent.download import Backoff, Downloader, DownloadError, DownloadProgress
from fotakit.lwm2m.objects import UpdateResult
from fotakit.repository import Form, PackageRecord, Repository
from fotakit.repository.coap import coap_etag
from fotakit.sim import Impairment, UdpRelay

pytestmark = pytest.mark.timeout(60)
BLOCK = 1024
WAIT = 20.0


@pytest.fixture
def repository(tmp_path: Path) -> Iterator[tuple[Repository, PackageRecord]]:
    repo, record = make_repository(tmp_path, payload_size=60_000)
    try:
        yield repo, record
    finally:
        repo.close()


@pytest.fixture
async def coap_port(repository: tuple[Repository, PackageRecord]) -> AsyncIterator[int]:
    async with coap_repository(repository[0]) as port:
        yield port


@pytest.fixture
def sink(tmp_path: Path) -> FileSink:
    return FileSink(tmp_path / "image.bin")


def _quick_giving_up() -> Downloader:
    """Short exchanges (CoCoA MAX_RETRANSMIT 1) and short pauses, so outages show fast."""
    return Downloader(
        cocoa=CocoaConfig(max_retransmit=1),
        backoff=Backoff(initial=0.05, max_delay=0.2),
        seed=7,
    )


async def test_outage_mid_transfer_is_retried_and_resumes_where_it_stopped(
    repository: tuple[Repository, PackageRecord], coap_port: int, sink: FileSink
) -> None:
    repo, record = repository
    expected = package_bytes(repo, record)
    async with UdpRelay(("127.0.0.1", coap_port), seed=3) as relay:
        uri = record.coap_uri("127.0.0.1", relay.address[1])
        cut = asyncio.Event()

        def on_progress(progress: DownloadProgress) -> None:
            if progress.offset >= 20 * BLOCK and not cut.is_set():
                relay.outage_for(1.5)  # longer than one exchange's retransmissions
                cut.set()

        downloader = _quick_giving_up()
        downloader.on_progress = on_progress
        async with downloader:
            final = await asyncio.wait_for(downloader.download(uri, sink), WAIT)
        assert cut.is_set()
        assert relay.upstream.outage_dropped >= 2  # the request and its retransmission(s)
    assert sink.data() == expected and final.offset == len(expected)
    assert downloader.stats.attempts >= 2  # the downloader itself retried
    refetched = downloader.stats.bytes_received - len(expected)
    assert 0 <= refetched <= 3 * BLOCK
    assert served_bytes(repo, record) - len(expected) <= 3 * BLOCK


async def test_outage_beyond_the_retry_budget_gives_4_and_keeps_progress_for_a_resume(
    repository: tuple[Repository, PackageRecord], coap_port: int, sink: FileSink
) -> None:
    repo, record = repository
    expected = package_bytes(repo, record)
    async with UdpRelay(("127.0.0.1", coap_port), seed=3) as relay:
        uri = record.coap_uri("127.0.0.1", relay.address[1])

        def on_progress(progress: DownloadProgress) -> None:
            if progress.offset >= 25 * BLOCK:
                relay.set_outage(True)  # and it stays down

        downloader = Downloader(
            cocoa=CocoaConfig(max_retransmit=1),
            retries=2,
            backoff=Backoff(initial=0.05, max_delay=0.1),
            on_progress=on_progress,
        )
        async with downloader:
            with pytest.raises(DownloadError) as caught:
                await asyncio.wait_for(downloader.download(uri, sink), WAIT)
        assert caught.value.result is UpdateResult.CONNECTION_LOST
        assert downloader.stats.attempts == 3
        kept = caught.value.progress
        assert kept is not None and kept.offset == 25 * BLOCK
        assert kept.etag == coap_etag(record, Form.PACKAGE)

        relay.set_outage(False)
        served_before = served_bytes(repo, record)
        async with Downloader() as later:  # e.g. after the agent restarted
            await asyncio.wait_for(later.download(uri, sink, resume=kept), WAIT)
    assert sink.data() == expected
    assert served_bytes(repo, record) - served_before == len(expected) - kept.offset


async def test_lost_blocks_cost_about_one_rto_with_adaptive_timers(
    repository: tuple[Repository, PackageRecord], coap_port: int, sink: FileSink
) -> None:
    repo, record = repository
    expected = package_bytes(repo, record)
    lossy = Impairment(delay=0.005, loss=0.05)
    async with UdpRelay(("127.0.0.1", coap_port), uplink=lossy, seed=11) as relay:
        uri = record.coap_uri("127.0.0.1", relay.address[1])
        async with Downloader() as downloader:
            await asyncio.wait_for(downloader.download(uri, sink), WAIT)
        lost = relay.upstream.dropped + relay.downstream.dropped
    assert sink.data() == expected
    stats = downloader.stats
    assert lost >= 3 and stats.retransmissions >= 3
    assert downloader.estimator.rto() < 0.5  # learned the ~10 ms path, not RFC 7252's 2 s
    blocks = -(-len(expected) // BLOCK)
    # With RFC 7252 timers every loss costs 2-3 s; here well under half a second each.
    assert stats.elapsed < blocks * 0.02 + 2.0 + lost * 0.5
