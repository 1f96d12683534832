"""A job's Package URIs rebuilt for the node that adopts it (engine_packages.rebase_snapshot).

A job snapshot keeps the URIs built from the base URIs of the node that started it; the
node that adopts it after that node died must send the device to its own repository,
in the same form (signed package or bare payload) — docs/operator-guide.md "Several
processes on PostgreSQL".
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from job_helpers import TARGET, Driver

from fotakit.updates.delivery import JobTarget
from fotakit.updates.engine_packages import rebase_snapshot
from fotakit.updates.job import JobState, UpdateJob, WriteUri

B = "coap://10.0.0.2:5683"
B_HTTP = "http://10.0.0.2:8080"


def _on(target: JobTarget, coap: str, http: str) -> JobTarget:
    """``target`` as the node with these base URIs builds it."""
    pid = target.package_id
    return dataclasses.replace(
        target,
        uri_coap=f"{coap}/fw/{pid}",
        uri_http=f"{http}/fw/{pid}",
        uri_coap_payload=f"{coap}/fw/{pid}/payload",
        uri_http_payload=f"{http}/fw/{pid}/payload",
    )


def _delivering(target: JobTarget) -> Driver:
    """A job of node A that wrote its Package URI and is in DELIVERING."""
    d = Driver(target=target)
    d.start()
    d.facts()
    d.ok(WriteUri)
    assert d.state is JobState.DELIVERING
    return d


@pytest.mark.parametrize("bare", [False, True])
def test_the_adopted_job_writes_the_adopting_nodes_uri_in_its_own_form(bare: bool) -> None:
    a_target = dataclasses.replace(TARGET, bare_payload=bare)
    d = _delivering(a_target)
    written_on_a = [c.uri for c in d.commands if isinstance(c, WriteUri)]
    assert written_on_a and written_on_a[0] in a_target.offered_uris().values()
    snap = json.loads(json.dumps(d.job.snapshot()))
    fresh = _on(a_target, B, B_HTTP)
    rebased = rebase_snapshot(snap, fresh)
    job = UpdateJob.from_snapshot(rebased, d.job.policy)
    assert job.target == fresh and job.target.form == a_target.form
    assert job.plan is not None and job.plan.uri is not None
    assert job.plan.uri.startswith((B, B_HTTP))
    assert job.plan.uri.endswith("/payload") == bare
    # everything else is as A saved it
    assert {k: v for k, v in rebased.items() if k not in ("target", "plan")} == {
        k: v for k, v in snap.items() if k not in ("target", "plan")
    }
    # the device lost A mid-download (Update Result 4): the retry writes B's URI
    d2 = Driver(job=job, now=d.now)
    d2.fw(1)
    d2.fw(0, 4)
    assert d2.state is JobState.WAITING
    d2.timer()
    d2.facts()
    assert d2.state is JobState.DELIVERING
    retried = [c.uri for c in d2.last if isinstance(c, WriteUri)]
    assert retried and retried[0].startswith((B, B_HTTP))
    assert retried[0].endswith("/payload") == bare


def test_a_rebase_onto_another_package_or_form_is_refused() -> None:
    snap = _delivering(TARGET).job.snapshot()
    with pytest.raises(ValueError, match="payload"):
        rebase_snapshot(snap, dataclasses.replace(_on(TARGET, B, B_HTTP), bare_payload=True))
    with pytest.raises(ValueError, match="other"):
        rebase_snapshot(snap, dataclasses.replace(TARGET, package_id="other"))


def test_a_plan_uri_of_no_known_target_field_is_kept() -> None:
    snap = _delivering(TARGET).job.snapshot()
    snap["plan"] = {**snap["plan"], "uri": "coap://elsewhere/fw/x"}
    out = rebase_snapshot(snap, _on(TARGET, B, B_HTTP))
    assert out["plan"]["uri"] == "coap://elsewhere/fw/x"
    assert out["target"]["uri_coap"].startswith(B)
