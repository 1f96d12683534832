"""fotakit.coap endpoints: every bind gets its own port; a busy port is refused."""

from __future__ import annotations

import asyncio

import aiocoap.resource
import pytest

from fotakit.coap import TransportParams, create_endpoint


async def test_many_endpoints_on_port_0_all_get_distinct_ports() -> None:
    contexts = []
    try:
        for _ in range(300):
            ctx, port = await create_endpoint(aiocoap.resource.Site(), "127.0.0.1", 0)
            contexts.append((ctx, port))
        ports = [port for _, port in contexts]
        assert len(set(ports)) == len(ports)
    finally:
        await asyncio.gather(*(ctx.shutdown() for ctx, _ in contexts))


async def test_binding_a_port_that_is_in_use_fails() -> None:
    ctx, port = await create_endpoint(aiocoap.resource.Site(), "127.0.0.1", 0)
    try:
        with pytest.raises(OSError):
            await create_endpoint(aiocoap.resource.Site(), "127.0.0.1", port)
    finally:
        await ctx.shutdown()


def test_max_transmit_wait_follows_rfc_7252_defaults() -> None:
    # RFC 7252 §4.8.2: MAX_TRANSMIT_WAIT = ACK_TIMEOUT * (2 ** (MAX_RETRANSMIT + 1) - 1)
    # * ACK_RANDOM_FACTOR = 93 s with the default parameters.
    assert TransportParams().max_transmit_wait == pytest.approx(93.0)
    assert TransportParams(ack_timeout=10).max_transmit_wait == pytest.approx(465.0)


def test_tuning_carries_the_parameters_into_aiocoap() -> None:
    tuning = TransportParams(ack_timeout=7.5, ack_random_factor=1.2, max_retransmit=2).tuning()
    assert (tuning.ACK_TIMEOUT, tuning.ACK_RANDOM_FACTOR, tuning.MAX_RETRANSMIT) == (7.5, 1.2, 2)
