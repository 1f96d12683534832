"""Campaign and job routes over real HTTP: a campaign over two real agents from upload to
completion, its views (waves, progress, timeline, devices, failures, events), the
operator actions and their conflicts, and a single-device job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from api_helpers import Stack, assert_problem, running_stack, sign
from e2e_helpers import wait_campaign, wait_job


async def _upload(stack: Stack, version: str, sequence: int) -> dict[str, Any]:
    data = sign(b"\x5a" * 4000, stack.key, version=version, sequence=sequence)
    r = await stack.client("operator").post("/api/v1/packages", content=data)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_campaign_from_create_to_completed(tmp_path: Path, sqlite_url: str) -> None:
    async with running_stack(tmp_path, sqlite_url, devices=2) as stack:
        op = stack.client("operator")
        pkg = await _upload(stack, "2.0.0", 2)
        spec = {
            "name": "to 2.0.0",
            "package_id": pkg["id"],
            "target": {"endpoints": ["dev-0", "dev-1"]},
            "canary": 1,
        }
        r = await op.post("/api/v1/campaigns", json=spec)
        assert r.status_code == 201, r.text
        camp = r.json()
        cid = camp["id"]
        assert camp["state"] == "running" and camp["spec"]["canary"] == 1
        assert camp["progress"]["total"] == 2
        # in use while it runs: an admin cannot delete the package
        admin = stack.client("admin")
        body = assert_problem(await admin.delete(f"/api/v1/packages/{pkg['id']}"), 409)
        assert "in use" in body["detail"] or "used" in body["detail"]
        done = await wait_campaign(stack.service, cid, {"completed", "paused", "aborted"}, 60)
        assert done.state == "completed"

        viewer = stack.client("viewer")
        detail = (await viewer.get(f"/api/v1/campaigns/{cid}")).json()
        assert detail["state"] == "completed"
        assert [w["index"] for w in detail["waves"]] == [0, 1]
        assert [w["size"] for w in detail["waves"]] == [1, 1]
        assert all(w["succeeded"] == 1 for w in detail["waves"])
        progress = (await viewer.get(f"/api/v1/campaigns/{cid}/progress")).json()
        assert progress["by_state"] == {"succeeded": 2} and progress["finished"] == 2
        devices = (await viewer.get(f"/api/v1/campaigns/{cid}/devices")).json()
        assert sorted(j["endpoint"] for j in devices["items"]) == ["dev-0", "dev-1"]
        assert {j["state"] for j in devices["items"]} == {"succeeded"}
        assert {j["delivery"] for j in devices["items"]} <= {"pull", "push"}
        failed = (await viewer.get(f"/api/v1/campaigns/{cid}/devices?state=failed")).json()
        assert failed["items"] == []
        assert (await viewer.get(f"/api/v1/campaigns/{cid}/failures")).json() == {"groups": []}
        timeline = (await viewer.get(f"/api/v1/campaigns/{cid}/timeline?buckets=10")).json()
        assert len(timeline["points"]) == 10
        assert timeline["points"][-1]["by_state"] == {"succeeded": 2}
        events = (await viewer.get(f"/api/v1/campaigns/{cid}/events?limit=5")).json()
        assert len(events["items"]) == 5 and events["next_cursor"] is not None
        more = (
            await viewer.get(
                f"/api/v1/campaigns/{cid}/events", params={"cursor": events["next_cursor"]}
            )
        ).json()
        assert more["items"][0]["id"] > events["items"][-1]["id"]
        listed = (await viewer.get("/api/v1/campaigns", params={"state": "completed"})).json()
        assert [c["id"] for c in listed["items"]] == [cid]
        # device views reflect the update
        dev = (await viewer.get("/api/v1/devices/dev-0")).json()
        assert dev["jobs"][0]["campaign_id"] == cid
        fw = (await viewer.get("/api/v1/devices/dev-0/firmware")).json()
        assert fw["history"], fw
        pairs = [(p["state"], p["result"]) for p in fw["history"]]
        assert all(state is not None for state, _ in pairs[1:]), pairs
        assert 3 in {state for state, _ in pairs}, pairs  # Updating was seen
        assert pairs[-1] == (0, 1), pairs  # Idle, "firmware updated successfully"
        dev_events = (await viewer.get("/api/v1/devices/dev-0/events")).json()
        assert dev_events["items"] and all(e["endpoint"] == "dev-0" for e in dev_events["items"])

        # actions a completed campaign does not allow: 409 problem
        for action in ("start", "pause", "resume", "cancel"):
            body = assert_problem(await op.post(f"/api/v1/campaigns/{cid}/{action}"), 409)
            assert "completed" in body["detail"], body
        assert_problem(await op.post(f"/api/v1/campaigns/{cid}/retry"), 409)
        # finished: the package may go now
        assert (await admin.delete(f"/api/v1/packages/{pkg['id']}")).status_code == 204


async def test_draft_pause_resume_cancel_and_errors(stack: Stack) -> None:
    op = stack.client("operator")
    pkg = await _upload(stack, "2.0.0", 2)
    spec = {"name": "d", "package_id": pkg["id"], "target": {"endpoints": ["dev-0"]}}
    r = await op.post("/api/v1/campaigns", json={**spec, "start": False})
    assert r.status_code == 201 and r.json()["state"] == "draft", r.text
    cid = r.json()["id"]
    assert_problem(await op.post(f"/api/v1/campaigns/{cid}/pause"), 409)
    assert_problem(await op.post(f"/api/v1/campaigns/{cid}/resume"), 409)
    r = await op.post(f"/api/v1/campaigns/{cid}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled", r.text

    r = await op.post("/api/v1/campaigns", json={**spec, "rate_per_minute": 0.001})
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    r = await op.post(f"/api/v1/campaigns/{cid}/pause")
    assert r.status_code == 200 and r.json()["state"] == "paused", r.text
    r = await op.post(f"/api/v1/campaigns/{cid}/resume")
    assert r.status_code == 200 and r.json()["state"] == "running", r.text
    r = await op.post(f"/api/v1/campaigns/{cid}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled", r.text

    # invalid specs name the field
    body = assert_problem(await op.post("/api/v1/campaigns", json={**spec, "canary": -1}), 422)
    assert "canary" in body["detail"]
    body = assert_problem(await op.post("/api/v1/campaigns", json={**spec, "bogus": 1}), 422)
    assert "bogus" in body["detail"]
    body = assert_problem(
        await op.post("/api/v1/campaigns", json={**spec, "package_id": "0" * 16}), 422
    )
    assert "package_id" in body["detail"]
    body = assert_problem(await op.post("/api/v1/campaigns", json={"name": "x"}), 422)
    assert "package_id" in body["detail"] or "target" in body["detail"]
    # unknown ids
    for path in ("", "/progress", "/timeline", "/devices", "/failures", "/events"):
        assert_problem(await op.get(f"/api/v1/campaigns/cnope{path}"), 404)
    for action in ("start", "pause", "resume", "cancel", "retry"):
        assert_problem(await op.post(f"/api/v1/campaigns/cnope/{action}"), 404)


async def test_a_campaign_matching_no_device_is_refused(stack: Stack) -> None:
    """A snapshot target that matches nothing is a 422 (nothing stored), not a campaign
    "completed" at once; a continuous campaign may start empty; a draft is refused at its
    start."""
    op = stack.client("operator")
    pkg = await _upload(stack, "2.0.0", 2)
    spec = {"name": "none", "package_id": pkg["id"], "target": {"endpoints": ["no-such-dev"]}}
    body = assert_problem(await op.post("/api/v1/campaigns", json=spec), 422)
    assert body["detail"].startswith("target: no device matches"), body
    assert (await op.get("/api/v1/campaigns")).json()["items"] == []

    r = await op.post("/api/v1/campaigns", json={**spec, "mode": "continuous"})
    assert r.status_code == 201 and r.json()["state"] == "running", r.text

    r = await op.post("/api/v1/campaigns", json={**spec, "start": False})
    assert r.status_code == 201 and r.json()["state"] == "draft", r.text
    cid = r.json()["id"]
    body = assert_problem(await op.post(f"/api/v1/campaigns/{cid}/start"), 422)
    assert "no device matches" in body["detail"]
    assert (await op.get(f"/api/v1/campaigns/{cid}")).json()["state"] == "draft"


async def test_single_device_job(stack: Stack) -> None:
    op = stack.client("operator")
    pkg = await _upload(stack, "2.0.0", 2)
    r = await op.post("/api/v1/devices/dev-0/update", json={"package_id": pkg["id"]})
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["endpoint"] == "dev-0" and job["campaign_id"] is None
    record = await wait_job(stack.service, job["id"], 40)
    assert record.state == "succeeded"
    got = (await op.get(f"/api/v1/jobs/{job['id']}")).json()
    assert got["state"] == "succeeded" and got["node_id"] in (None, "node-a")
    assert_problem(await op.post(f"/api/v1/jobs/{job['id']}/cancel"), 409)
    assert_problem(await op.get("/api/v1/jobs/jnope"), 404)
    assert_problem(await op.post("/api/v1/jobs/jnope/cancel"), 404)
    assert_problem(
        await op.post("/api/v1/devices/dev-0/update", json={"package_id": "0" * 16}), 422
    )
    assert_problem(await op.post("/api/v1/devices/ghost/update", json={"package_id": "x"}), 404)


async def test_cancel_a_running_job(stack: Stack) -> None:
    op = stack.client("operator")
    pkg = await _upload(stack, "2.0.0", 2)
    # the device is not registered yet: the job waits, and can be cancelled
    agent = stack.fleet.agents["dev-0"]
    await agent.stop(deregister=True)
    r = await op.post("/api/v1/devices/dev-0/update", json={"package_id": pkg["id"]})
    assert r.status_code == 201, r.text
    r = await op.post(f"/api/v1/jobs/{r.json()['id']}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "cancelled"


async def test_a_second_update_of_a_busy_device_is_409_naming_the_unfinished_job(
    stack: Stack,
) -> None:
    op = stack.client("operator")
    pkg = await _upload(stack, "2.0.0", 2)
    # the device is away: its job stays unfinished (pending) until it comes back
    await stack.fleet.agents["dev-0"].stop(deregister=True)
    r = await op.post("/api/v1/devices/dev-0/update", json={"package_id": pkg["id"]})
    assert r.status_code == 201, r.text
    first = r.json()["id"]

    r = await op.post("/api/v1/devices/dev-0/update", json={"package_id": pkg["id"]})

    body = assert_problem(r, 409)
    assert body["type"] == "/problems/device-busy"
    assert first in body["detail"] and "dev-0" in body["detail"]
    assert f"/api/v1/jobs/{first}/cancel" in body["detail"]
    jobs = await stack.service.jobs(endpoint="dev-0")
    assert [j.id for j in jobs] == [first]
    # once that job has ended, the device takes a new one
    assert (await op.post(f"/api/v1/jobs/{first}/cancel")).status_code == 200
    r = await op.post("/api/v1/devices/dev-0/update", json={"package_id": pkg["id"]})
    assert r.status_code == 201, r.text
    assert r.json()["id"] != first


async def test_failures_grouped_and_retry(tmp_path: Path, sqlite_url: str) -> None:
    from fotakit.updates.job import JobPolicy

    policy = JobPolicy(max_attempts=1)
    async with running_stack(
        tmp_path,
        sqlite_url,
        devices=2,
        service_kwargs={"policy": policy},
        device_kwargs={"dev-1": {"health_command": ("false",)}},
    ) as stack:
        op = stack.client("operator")
        pkg = await _upload(stack, "2.0.0", 2)
        spec = {"name": "f", "package_id": pkg["id"], "target": {"endpoints": ["dev-0", "dev-1"]}}
        cid = (await op.post("/api/v1/campaigns", json=spec)).json()["id"]
        done = await wait_campaign(stack.service, cid, {"completed", "paused", "aborted"}, 60)
        assert done.state in ("completed", "paused"), done
        failures = (await op.get(f"/api/v1/campaigns/{cid}/failures")).json()["groups"]
        assert len(failures) == 1 and failures[0]["endpoints"] == ["dev-1"], failures
        reason = failures[0]["reason"]
        by_reason = (
            await op.get(f"/api/v1/campaigns/{cid}/devices", params={"reason": reason})
        ).json()
        assert [j["endpoint"] for j in by_reason["items"]] == ["dev-1"]
        r = await op.post(f"/api/v1/campaigns/{cid}/retry")
        assert r.status_code == 201, r.text
        child = r.json()
        assert child["parent_id"] == cid and child["spec"]["target"]["endpoints"] == ["dev-1"]


async def test_pause_reasons_gate_override_and_error_count_across_resume(
    tmp_path: Path, sqlite_url: str
) -> None:
    """A campaign says why it is paused, a wave resumed past its lost gate says "overridden"
    by whom and why (not "met"), and a resume does not silently forget the error count."""
    from fotakit.updates.job import JobPolicy

    async with running_stack(
        tmp_path,
        sqlite_url,
        devices=1,
        service_kwargs={"policy": JobPolicy(max_attempts=1)},
        device_kwargs={"dev-0": {"health_command": ("false",)}},  # its new image fails
    ) as stack:
        op = stack.client("operator")
        pkg = await _upload(stack, "2.0.0", 2)
        target = {"package_id": pkg["id"], "target": {"endpoints": ["dev-0"]}}

        # 1. the canary's gate is lost: paused, saying so; resumed past it: overridden
        cid = await op.post("/api/v1/campaigns", json={"name": "g", **target, "canary": 1})
        cid = cid.json()["id"]
        await wait_campaign(stack.service, cid, {"paused", "completed", "aborted"}, 60)
        camp = (await op.get(f"/api/v1/campaigns/{cid}")).json()
        assert camp["state"] == "paused", camp
        reason = "success gate lost: wave 0: 0 of 1 succeeded, gate needs 1"
        assert camp["paused_reason"] == reason
        assert camp["waves"][0]["gate"] == "pending" and camp["waves"][0]["override"] is None
        listed = (await op.get("/api/v1/campaigns", params={"state": "paused"})).json()
        assert [c["paused_reason"] for c in listed["items"]] == [reason]
        r = await op.post(f"/api/v1/campaigns/{cid}/resume")
        assert r.status_code == 200 and r.json()["paused_reason"] is None, r.text
        await wait_campaign(stack.service, cid, {"completed"}, 30)
        wave0 = (await op.get(f"/api/v1/campaigns/{cid}")).json()["waves"][0]
        assert wave0["gate"] == "overridden", wave0
        assert wave0["override"]["by"] == "operator 'test-operator'"
        assert wave0["override"]["why"] == "0 of 1 succeeded, gate needs 1"

        # 2. the error threshold pauses; a plain resume is refused while it is still
        # crossed; an explicit reset resumes and is in the event log
        spec = {"name": "e", **target, "error_threshold": {"count": 1, "min_sample": 1}}
        cid = (await op.post("/api/v1/campaigns", json=spec)).json()["id"]
        await wait_campaign(stack.service, cid, {"paused", "completed", "aborted"}, 60)
        camp = (await op.get(f"/api/v1/campaigns/{cid}")).json()
        assert camp["paused_reason"] == "error threshold crossed: 1 failed of 1 finished"
        assert camp["error_count"] == {"failed": 1, "finished": 1}
        body = assert_problem(await op.post(f"/api/v1/campaigns/{cid}/resume"), 409)
        assert "error threshold is still crossed (1 failed of 1 finished)" in body["detail"]
        assert (await op.get(f"/api/v1/campaigns/{cid}")).json()["state"] == "paused"
        r = await op.post(f"/api/v1/campaigns/{cid}/resume", params={"reset_errors": "true"})
        assert r.status_code == 200, r.text
        assert r.json()["error_count"] == {"failed": 0, "finished": 0}
        events = (await op.get(f"/api/v1/campaigns/{cid}/events", params={"limit": 500})).json()
        details = [e["data"]["detail"] for e in events["items"] if e["kind"] == "campaign_state"]
        assert (
            "operator 'test-operator'; error count reset (was 1 failed of 1 finished)" in details
        ), details

        # 3. an operator pause says who
        r = await op.post(
            "/api/v1/campaigns",
            json={"name": "p", "package_id": pkg["id"], "target": {"endpoints": ["dev-0"]},
                  "rate_per_minute": 0.001},
        )  # fmt: skip
        cid = r.json()["id"]
        r = await op.post(f"/api/v1/campaigns/{cid}/pause")
        assert r.json()["paused_reason"] == "paused by operator 'test-operator'", r.text
