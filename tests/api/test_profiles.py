"""Device profile routes over real HTTP against a real server, update service and agent
(dev-0; its device class is its /3/0/1 Model Number): CRUD, validation, roles, the
device's profile, and a single-device update that takes the payload form from the
profile an operator set."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from api_helpers import Stack, assert_problem

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "updates"))
from e2e_helpers import all_events, payload_of, wait_job


async def test_profile_crud_validation_and_roles(stack: Stack) -> None:
    viewer, op = stack.client("viewer"), stack.client("operator")
    items = (await viewer.get("/api/v1/profiles")).json()["items"]
    assert [(p["name"], p["stored"], p["payload_form"]) for p in items] == [
        ("default", False, "signed")
    ]
    assert (await viewer.get("/api/v1/profiles/default")).json()["stored"] is False
    assert_problem(await viewer.get("/api/v1/profiles/acme-meter"), 404)

    body = {
        "payload_form": "bare",
        "protocols": ["http", "coap"],
        "push": False,
        "timeouts": {"downloading": 1800},
        "description": "stock Acme firmware",
    }
    assert_problem(await viewer.put("/api/v1/profiles/acme-meter", json=body), 403)
    r = await op.put("/api/v1/profiles/acme-meter", json=body)
    assert r.status_code == 201, r.text
    assert r.json() == {
        "name": "acme-meter",
        "payload_form": "bare",
        "protocols": ["http", "coap"],
        "push": False,
        "timeouts": {"downloading": 1800.0},
        "description": "stock Acme firmware",
        "stored": True,
    }
    r = await op.put("/api/v1/profiles/acme-meter", json={"payload_form": "bare"})
    assert r.status_code == 200, r.text
    assert r.json()["protocols"] == ["coap", "coaps", "http", "https"]  # replaced whole
    names = [p["name"] for p in (await viewer.get("/api/v1/profiles")).json()["items"]]
    assert names == ["default", "acme-meter"]

    for bad, where in [
        ({"payload_form": "zip"}, "payload_form"),
        ({"protocols": ["ftp"]}, "protocols"),
        ({"protocols": []}, "protocols"),
        ({"timeouts": {"start": 0}}, "start"),
        ({"timeouts": {"installing": 5}}, "installing"),
        ({"colour": "red"}, "colour"),
    ]:
        problem = assert_problem(await op.put("/api/v1/profiles/acme-meter", json=bad), 422)
        assert where in str(problem), (bad, problem)
    problem = assert_problem(
        await op.put("/api/v1/profiles/acme-meter", json={"protocols": ["coap", "coap"]}), 422
    )
    assert "at most once" in problem["detail"]
    # nothing stored was lost by the refused writes
    kept = (await viewer.get("/api/v1/profiles/acme-meter")).json()
    assert kept["payload_form"] == "bare"

    assert_problem(await viewer.delete("/api/v1/profiles/acme-meter"), 403)
    assert (await op.delete("/api/v1/profiles/acme-meter")).status_code == 204
    assert_problem(await op.delete("/api/v1/profiles/acme-meter"), 404)
    assert_problem(await op.delete("/api/v1/profiles/default"), 404)  # built in: not stored


async def _device_class(stack: Stack) -> str:
    await asyncio.wait_for(stack.service.inventory.refresh("dev-0"), 20)
    cls = (await stack.client("viewer").get("/api/v1/devices/dev-0")).json()["class"]
    assert isinstance(cls, str) and cls
    return cls


async def test_device_shows_its_profile_and_why(stack: Stack) -> None:
    viewer, op = stack.client("viewer"), stack.client("operator")
    CLASS = await _device_class(stack)
    choice = (await viewer.get("/api/v1/devices/dev-0/profile")).json()
    assert choice["profile"]["name"] == "default" and choice["profile"]["stored"] is False
    assert f"no profile for device class {CLASS!r}" in choice["why"]
    r = await op.put(f"/api/v1/profiles/{CLASS}", json={"payload_form": "bare"})
    assert r.status_code == 201, r.text
    choice = (await viewer.get("/api/v1/devices/dev-0/profile")).json()
    assert choice["profile"]["name"] == CLASS and choice["profile"]["payload_form"] == "bare"
    assert "has its own profile" in choice["why"]
    assert_problem(await viewer.get("/api/v1/devices/never-seen/profile"), 404)
    detail = (await viewer.get("/api/v1/devices/dev-0")).json()
    assert detail["profile"]["name"] == CLASS and detail["profile"]["why"] == choice["why"]


async def test_update_takes_the_payload_form_from_the_profile(stack: Stack) -> None:
    """Item: the bare form is reachable by an operator (a profile set over REST), the
    choice and its reason are in the device's event log."""
    op = stack.client("operator")
    CLASS = await _device_class(stack)
    record = stack.site.publish(payload_of(3000, 3), version="1.1.0", sequence=2)
    r = await op.put(f"/api/v1/profiles/{CLASS}", json={"payload_form": "bare", "push": False})
    assert r.status_code == 201, r.text
    r = await op.post("/api/v1/devices/dev-0/update", json={"package_id": record.id})
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    done = await wait_job(stack.service, job_id, 60)
    events = await all_events(stack.service, job_id=job_id)
    shown = (await op.get(f"/api/v1/jobs/{job_id}")).json()
    later = await stack.service.job(job_id)
    # the device's own words may be added to the detail after the verdict
    assert shown["state"] == done.state
    assert shown["reason_detail"] in (done.reason_detail, later.reason_detail), shown
    chosen = [e.details for e in events if e.kind == "profile"]
    assert len(chosen) == 1, [e.kind for e in events]
    assert chosen[0]["profile"] == CLASS and chosen[0]["payload_form"] == "bare"
    assert "has its own profile" in chosen[0]["why"]
    plans = [e.details for e in events if e.kind == "delivery"]
    assert plans and all(p["form"] == "payload" for p in plans), plans
    assert all(p["choice"] == "pull" for p in plans)
    assert plans[0]["uri"].endswith(f"/fw/{record.id}/payload"), plans[0]


async def test_a_profile_that_prefers_http_gets_an_http_package_uri(stack: Stack) -> None:
    """Item: the protocol preference is the operator's (the agent lists CoAP and HTTP in
    /5/0/8; with the default order it would get coap://)."""
    op = stack.client("operator")
    cls = await _device_class(stack)
    protocols = await stack.site.server.read("dev-0", "/5/0/8")
    record = stack.site.publish(payload_of(3000, 4), version="1.2.0", sequence=3)
    r = await op.put(f"/api/v1/profiles/{cls}", json={"protocols": ["http", "coap"]})
    assert r.status_code == 201, r.text
    r = await op.post("/api/v1/devices/dev-0/update", json={"package_id": record.id})
    assert r.status_code == 201, r.text
    done = await wait_job(stack.service, r.json()["id"], 60)
    events = await all_events(stack.service, job_id=done.id)
    plans = [e.details for e in events if e.kind == "delivery"]
    assert done.state == "succeeded", (done.reason, [e.kind for e in events], protocols)
    assert plans and plans[0]["choice"] == "pull", plans
    assert plans[0]["uri"].startswith("http://"), plans[0]
    assert plans[0]["form"] == "package"
