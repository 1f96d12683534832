"""An update job leaves no observation behind on the device (TS Core 1.1.1 §6.4.5).

The job observes /5/0 while it runs (and again after the device re-registers from its new
image); when it ends, the engine cancels what it observes. The cancel must reach the
device (RFC 7641 §3.6: GET with Observe=1 under the observation's token), so that the
agent's observation registry is empty afterwards and a later change of /5 sends nothing.

A real :class:`fotakit.agent.Agent` registers through a tap (``tests/coap_tap.py``: a
relay that decodes every datagram), which counts what the agent sends after the job.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from e2e_helpers import WAIT, Fleet, make_service, payload_of, running_site, trust_for, wait_job

from coap_tap import CoapTap
from fotakit.lwm2m.objects import UpdateResult
from fotakit.packages import generate_key
from fotakit.updates.job import JobPolicy

POLICY = JobPolicy(backoff_base_s=0.5, backoff_max_s=1.0, transfer_floor_s=5.0)


async def test_a_finished_update_job_leaves_no_observation_on_the_agent(
    tmp_path: Path, sqlite_url: str
) -> None:
    key = generate_key("ed25519")
    async with running_site(tmp_path, sqlite_url, key) as site:
        server = site.server
        package = site.publish(payload_of(16_000, 3), version="2.0.0", sequence=2)
        fleet = Fleet(tmp_path / "agents", trust_for(key))
        async with CoapTap(("127.0.0.1", server.port)) as tap:
            agent = fleet.make("d1", tap.address[1])
            try:
                await fleet.start(server, ["d1"])
                async with make_service(site, sqlite_url, policy=POLICY) as service:
                    job = await wait_job(service, await service.start_job("d1", package.id))
                    assert (job.state, job.reason) == ("succeeded", None)
                    assert agent.running_version == "2.0.0"
                    # The job observed /5/0 on the agent that came back on 2.0.0 ...
                    observed = [s.message for s in tap.seen if s.message.opt.observe == 0]
                    assert any(m.opt.uri_path[:1] == ("5",) for m in observed), observed
                    # ... and its end cancels that on the agent too (awaited, bounded).
                    await agent.client.observations.wait_for_count(0, WAIT)
                assert agent.client.observations.observed_paths() == []
                assert [o for o in server.observations.values() if o.endpoint == "d1"] == []

                # A change of /5 now: nobody observes it, so the agent sends nothing.
                mark = len(tap.seen)
                await asyncio.wait_for(server.write("d1", "/5/0/1", ""), WAIT)  # TS E.6 reset
                result = await asyncio.wait_for(server.read_value("d1", "/5/0/5"), WAIT)
                assert result == int(UpdateResult.INITIAL)  # it changed (from 1, success)
                assert tap.notifications_after(mark) == []
            finally:
                await fleet.stop()
