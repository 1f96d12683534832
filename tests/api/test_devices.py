"""Device routes over real HTTP against a real server and a real agent (dev-0)."""

from __future__ import annotations

import asyncio

from api_helpers import Stack, assert_problem


async def test_fleet_list_detail_and_filters(stack: Stack) -> None:
    c = stack.client("viewer")
    # the inventory reads /3/0 of each device after it registers
    await asyncio.wait_for(stack.service.inventory.refresh("dev-0"), 20)
    fleet = (await c.get("/api/v1/fleet")).json()
    assert fleet["total"] == 1 and fleet["online"] == 1 and fleet["offline"] == 0
    assert fleet["by_version"] == {"1.0.0": 1}
    page = (await c.get("/api/v1/devices")).json()
    assert [d["endpoint"] for d in page["items"]] == ["dev-0"]
    dev = page["items"][0]
    assert dev["online"] is True and dev["firmware_version"] == "1.0.0"
    assert dev["registration_id"] and dev["address"].startswith("127.0.0.1:")
    assert (await c.get("/api/v1/devices", params={"online": "false"})).json()["items"] == []
    assert (await c.get("/api/v1/devices", params={"q": "ev-"})).json()["items"]
    assert (await c.get("/api/v1/devices", params={"version": "9.9"})).json()["items"] == []
    detail = (await c.get("/api/v1/devices/dev-0")).json()
    assert detail["registration"]["lifetime"] == 60
    paths = {o["path"] for o in detail["objects"]}
    assert {"/3/0", "/5/0"} <= paths
    assert detail["jobs"] == []
    assert_problem(await c.get("/api/v1/devices/nope"), 404)
    assert_problem(await c.get("/api/v1/devices", params={"limit": 0}), 422)
    assert_problem(await c.get("/api/v1/devices", params={"cursor": "!!"}), 400)


async def test_paging_walks_every_device_once(tmp_path, sqlite_url) -> None:  # type: ignore[no-untyped-def]
    from api_helpers import running_stack

    async with running_stack(tmp_path, sqlite_url, devices=5) as s:
        c = s.client("viewer")
        seen: list[str] = []
        cursor = None
        for _ in range(10):
            params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
            page = (await c.get("/api/v1/devices", params=params)).json()
            seen += [d["endpoint"] for d in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == [f"dev-{i}" for i in range(5)]


async def test_passthrough_read_write_execute_observe(stack: Stack) -> None:
    op = stack.client("operator")
    r = await op.get("/api/v1/devices/dev-0/resources/3/0/3")
    assert r.status_code == 200, r.text
    assert r.json() == {"path": "/3/0/3", "value": "1.0.0"}
    r = await op.get("/api/v1/devices/dev-0/resources/5/0")
    assert r.status_code == 200, r.text
    values = r.json()["values"]
    assert values["/5/0/3"] == 0 and "/5/0/5" in values
    # Write the lifetime, read it back
    r = await op.put("/api/v1/devices/dev-0/resources/1/0/1", json={"value": 90})
    assert r.status_code == 204, r.text
    assert (await op.get("/api/v1/devices/dev-0/resources/1/0/1")).json()["value"] == 90
    # Execute Registration Update Trigger
    r = await op.post("/api/v1/devices/dev-0/execute/1/0/8", json={"args": None})
    assert r.status_code == 204, r.text
    # device error codes
    body = assert_problem(await op.get("/api/v1/devices/dev-0/resources/3/7"), 404)
    assert "4.04" in body["detail"]
    assert_problem(await op.get("/api/v1/devices/dev-0/resources/3/x"), 422)
    assert_problem(await op.put("/api/v1/devices/dev-0/resources/3/0", json={"value": 1}), 422)
    assert_problem(
        await op.put("/api/v1/devices/dev-0/resources/1/0/1", json={"value": "nope"}), 422
    )
    too_big = await op.put("/api/v1/devices/dev-0/resources/1/0/1", json={"value": 2**70})
    assert_problem(too_big, 422)
    assert_problem(await op.get("/api/v1/devices/ghost/resources/3/0/3"), 404)
    # Observe, see the observation, cancel it, cancel again -> 404
    r = await op.post("/api/v1/devices/dev-0/observe/3/0/3")
    assert r.status_code == 201, r.text
    obs = r.json()
    assert obs["path"] == "/3/0/3" and obs["value"] == "1.0.0"
    assert obs["observation_id"] in stack.site.server.observations
    r = await op.delete(f"/api/v1/devices/dev-0/observe/{obs['observation_id']}")
    assert r.status_code == 204
    assert obs["observation_id"] not in stack.site.server.observations
    assert_problem(await op.delete(f"/api/v1/devices/dev-0/observe/{obs['observation_id']}"), 404)


async def test_offline_device_is_503(stack: Stack) -> None:
    agent = stack.fleet.agents["dev-0"]
    async with stack.site.server.subscribe() as events:
        await agent.stop(deregister=True)
        async with asyncio.timeout(10):
            while stack.site.server.get("dev-0") is not None:
                await events.get()
    c = stack.client("operator")
    body = assert_problem(await c.get("/api/v1/devices/dev-0/resources/3/0/3"), 503)
    assert "offline" in body["detail"]
    dev = (await c.get("/api/v1/devices/dev-0")).json()
    assert dev["online"] is False and dev["registration"] is None
    fleet = (await c.get("/api/v1/fleet")).json()
    assert fleet["offline"] == 1


async def test_tags_events_and_firmware(stack: Stack) -> None:
    op = stack.client("operator")
    r = await op.put("/api/v1/devices/dev-0/tags", json={"tags": ["beta", "lab"]})
    assert r.status_code == 200, r.text
    assert r.json()["tags"] == ["beta", "lab"]
    page = (await op.get("/api/v1/devices", params={"tag": "beta"})).json()
    assert [d["endpoint"] for d in page["items"]] == ["dev-0"]
    assert (await op.get("/api/v1/devices", params={"tag": "x"})).json()["items"] == []
    assert_problem(await op.put("/api/v1/devices/dev-0/tags", json={"tags": [" x"]}), 422)
    assert_problem(await op.put("/api/v1/devices/nope/tags", json={"tags": ["a"]}), 404)
    malformed = await op.put(
        "/api/v1/devices/dev-0/tags",
        content=b'{"tags": [',
        headers={"Content-Type": "application/json"},
    )
    assert "not valid JSON" in assert_problem(malformed, 400)["detail"]
    fw = (await op.get("/api/v1/devices/dev-0/firmware")).json()
    assert fw["live"] is True and fw["state"] == 0 and fw["history"] == []
    events = (await op.get("/api/v1/devices/dev-0/events")).json()
    assert events == {"items": [], "next_cursor": None}
    assert_problem(await op.get("/api/v1/devices/nope/events"), 404)
    assert_problem(await op.get("/api/v1/devices/nope/firmware"), 404)
