"""The dashboard end to end in headless Chromium against a real fotakit site.

The main flow is the issue's: sign in with a token, upload a signed package on the
packages page, create a campaign against the fleet simulator's devices in the form, open
its page and watch it finish with every device succeeded (live over SSE), then save a
screenshot of the campaign page (under FOTAKIT_ARTIFACT_DIR, or a pytest tmp dir; also
copied to docs/img/campaign-page.png when FOTAKIT_UPDATE_SCREENSHOT=1). Smaller tests
cover the fleet overview, the device page (Object 5 names, live radio figures, an offline
device), failures grouped by reason (a device whose new image fails its health check),
the token handling and readable problem+json errors.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from dashboard_helpers import (
    BAD,
    MAX_UPLOAD,
    OFFLINE,
    SIM,
    SIM_RSSI,
    SLOW,
    SOLO,
    Console,
    LiveSite,
)
from playwright.sync_api import expect

from fotakit.updates.campaign import CampaignSpec
from fotakit.updates.targets import TargetSpec

REPO = Path(__file__).resolve().parents[2]
CAMPAIGN_WAIT_MS = 60_000


def sign_in(page: Any, site: LiveSite, route: str = "#/fleet", token: str | None = None) -> None:
    """Open the dashboard with the token given once in the URL (as the demo prints it)."""
    page.goto(f"/?token={token or site.admin_token}{route}")
    expect(page.locator("#who")).to_contain_text("(")
    assert "token" not in page.url


def api_get(site: LiveSite, path: str) -> Any:
    r = httpx.get(
        f"{site.base_url}/api/v1{path}",
        headers={"Authorization": f"Bearer {site.admin_token}"},
        timeout=10,
    )
    r.raise_for_status()
    return r.json()


def test_upload_create_campaign_and_watch_it_finish(
    page: Any, site: LiveSite, tmp_path: Path, artifact_dir: Path
) -> None:
    sign_in(page, site, "#/packages")
    package = tmp_path / "sensor-2.0.0.fota"
    package.write_bytes(site.signed_package("2.0.0", 2, seed=1))

    page.set_input_files("#package-file", str(package))
    page.get_by_role("button", name="Upload").click()
    status = page.locator("#upload-status")
    expect(status).to_contain_text("Uploaded:")
    package_id = status.locator("code").inner_text()
    expect(page.locator("#main table")).to_contain_text(package_id)

    page.get_by_role("link", name="New campaign").click()
    page.get_by_label("Name").fill("sensors to 2.0.0")
    expect(page.locator(f'#nc-package option[value="{package_id}"]')).to_have_count(1)
    page.get_by_label("Package").select_option(package_id)
    page.get_by_label("Devices", exact=True).fill("\n".join(SIM))
    page.get_by_label("Canary devices").fill("1")
    page.get_by_label("Wave sizes (%)").fill("50")
    page.get_by_label("Start immediately").uncheck()
    page.get_by_role("button", name="Create campaign").click()

    # the page opens on the draft; its live stream is connected before the start
    expect(page).to_have_url(re.compile(r"#/campaigns/[^/]+$"))
    state = page.locator("#campaign-state")
    expect(state).to_have_text("draft")
    expect(page.locator("#live")).to_have_text("live")
    page.get_by_role("button", name="Start").click()
    expect(state).to_have_text("completed", timeout=CAMPAIGN_WAIT_MS)
    expect(page.locator("#campaign-summary")).to_contain_text(
        f"{len(SIM)} of {len(SIM)} devices succeeded"
    )
    # live: job events arrived over SSE; the waves, chart, failures and log are filled in
    expect(page.locator("#live")).to_have_text("live")
    assert int(page.locator("#live").get_attribute("data-events") or 0) > 0
    waves = page.locator("#waves tbody tr")
    expect(waves).to_have_count(3)  # canary, 50 %, the rest
    expect(waves.first).to_contain_text("0 (canary)")
    expect(page.locator("#timeline svg path[data-state='succeeded']")).to_have_count(1)
    expect(page.locator("#failures")).to_have_text("No failures.")
    expect(page.locator("#state-counts")).to_contain_text("succeeded")
    expect(page.locator("#event-log tbody tr").first).not_to_contain_text("No events")
    devices = page.locator("#campaign-devices tbody tr")
    expect(devices).to_have_count(len(SIM))
    for ep in SIM:
        expect(page.locator("#campaign-devices")).to_contain_text(ep)
    # no action is offered for a completed campaign without failures
    expect(page.locator("#main .actions button")).to_have_count(0)

    # what the page shows is what the devices did
    assert {d.endpoint: d.version for d in site.sim.devices} == dict.fromkeys(SIM, "2.0.0")

    shot = artifact_dir / "campaign-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("FOTAKIT_UPDATE_SCREENSHOT") == "1":
        target = REPO / "docs" / "img" / "campaign-page.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)


def test_a_package_uploaded_with_its_names_shows_the_class_by_name(
    page: Any, site: LiveSite, tmp_path: Path, console: Console
) -> None:
    console.allow("status of 422")  # the browser logs the refused upload
    sign_in(page, site, "#/packages")
    package = tmp_path / "sensor-2.7.0.fota"
    package.write_bytes(site.signed_package("2.7.0", 27, seed=27))
    page.set_input_files("#package-file", str(package))
    page.get_by_label("Vendor (optional)").fill("example.com")
    page.get_by_label("Class name (optional)").fill("not-the-class")
    page.get_by_role("button", name="Upload").click()
    status = page.locator("#upload-status")
    expect(status).to_contain_text("class 'not-the-class' of vendor 'example.com'")

    page.set_input_files("#package-file", str(package))
    page.get_by_label("Vendor (optional)").fill("example.com")
    page.get_by_label("Class name (optional)").fill("sensor-v2")
    page.get_by_role("button", name="Upload").click()
    expect(status).to_contain_text("Uploaded:")
    package_id = status.locator("code").inner_text()
    row = page.locator("#main table tr", has_text=package_id)
    expect(row.locator("[data-class]")).to_have_text("sensor-v2")


def test_swagger_ui_renders_with_every_other_host_unreachable(page: Any, site: LiveSite) -> None:
    """/api/docs on a server without internet: any request off the site is refused."""
    site_host = urlsplit(site.base_url).netloc
    outside: list[str] = []

    def only_the_site(route: Any) -> None:
        if urlsplit(route.request.url).netloc == site_host:
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_site)
    page.goto("/api/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("fotakit")
    expect(page.locator(".swagger-ui .opblock-summary-path").first).to_be_visible()
    assert outside == []


def test_fleet_overview_shows_totals_versions_and_filters(page: Any, site: LiveSite) -> None:
    fleet = api_get(site, "/fleet")
    sign_in(page, site, "#/fleet")
    expect(page.locator("#stat-total .n")).to_have_text(str(fleet["total"]))
    expect(page.locator("#stat-online .n")).to_have_text(str(fleet["online"]))
    expect(page.locator("#stat-offline .n")).to_have_text(str(fleet["offline"]))
    assert fleet["online"] >= len(SIM) + 1 and fleet["offline"] >= 1
    chart = page.get_by_role("img", name="Devices by firmware version")
    for version in fleet["by_version"]:
        expect(chart).to_contain_text(version)

    table = page.locator("#main table").last
    for ep in (*SIM, BAD, OFFLINE, *SLOW):
        expect(table).to_contain_text(ep)
    page.get_by_label("Status").select_option("false")
    page.get_by_role("button", name="Filter").click()
    rows = table.locator("tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(OFFLINE)
    expect(rows.first).to_contain_text("offline")

    page.get_by_role("button", name="Clear").click()
    page.get_by_label("Endpoint contains").fill(SIM[1])
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    rows.first.get_by_role("link", name=SIM[1]).click()
    expect(page.locator("#main h1")).to_contain_text(SIM[1])


def test_device_page_shows_object5_names_radio_and_offline(
    page: Any, site: LiveSite, console: Console
) -> None:
    console.allow("status of 404")  # the read of a path the device does not have
    sign_in(page, site, f"#/devices/{SIM[1]}")
    expect(page.locator("#main h1")).to_contain_text("online")
    expect(page.locator("#fw-state")).to_have_text("Idle (0)")
    expect(page.locator("#fw-result")).to_have_text(
        re.compile(r"^(Initial value \(0\)|Firmware updated successfully \(1\))$")
    )
    radio = page.locator("#radio")
    expect(radio.locator("[data-rid='2']")).to_have_text(f"{SIM_RSSI} dBm")
    expect(radio.locator("[data-rid='0']")).to_have_text("WLAN (21)")
    objects = page.get_by_role("region", name="Objects")
    expect(objects).to_contain_text("/5/0")
    expect(objects).to_contain_text("/4/0")

    # a live read through the passthrough route
    page.get_by_label("Read a path live").fill("3/0/3")
    page.get_by_role("button", name="Read", exact=True).click()
    expect(objects.locator("pre")).to_contain_text('"/3/0/3"')
    page.get_by_label("Read a path live").fill("3303/0/5700")
    page.get_by_role("button", name="Read", exact=True).click()
    expect(objects.locator(".problem")).to_contain_text("Reading /3303/0/5700")
    expect(objects.locator(".problem")).to_contain_text("HTTP 404")

    page.goto(f"/#/devices/{OFFLINE}")
    expect(page.locator("#main h1")).to_contain_text("offline")
    expect(page.locator("#radio-offline")).to_contain_text("offline")
    expect(page.locator("#fw-state")).to_be_visible()


def test_device_page_follows_a_single_device_update_live(page: Any, site: LiveSite) -> None:
    record = site.publish("2.3.0", 23, seed=23)
    sign_in(page, site, f"#/devices/{SOLO}")
    expect(page.locator("#live")).to_have_text("live")
    expect(page.locator("#device-jobs")).to_contain_text("No update jobs.")
    page.get_by_label("Update this device to").select_option(record.id)
    page.get_by_role("button", name="Start update").click()
    # no reload: the event stream brings the job's progress to the page
    jobs = page.locator("#device-jobs tbody tr")
    expect(jobs).to_have_count(1)
    expect(jobs.first).to_contain_text("succeeded", timeout=CAMPAIGN_WAIT_MS)
    expect(page.locator("#fw-result")).to_have_text("Firmware updated successfully (1)")
    history = page.get_by_role("region", name="Firmware update (Object 5)")
    expect(history).to_contain_text("Updating (3)")
    assert site.fleet.agents[SOLO].running_version == "2.3.0"


def test_failures_are_grouped_by_reason_with_their_devices(page: Any, site: LiveSite) -> None:
    record = site.publish("3.0.0", 3, seed=3)
    spec = CampaignSpec(
        name="health check fails", package_id=record.id, target=TargetSpec(endpoints=(BAD,))
    )

    async def create() -> str:
        cid = await site.service.create_campaign(spec)
        await site.service.start_campaign(cid)
        return str(cid)

    cid = site.call(create())
    sign_in(page, site, f"#/campaigns/{cid}")
    group = page.locator("#failures li[data-reason]")
    expect(group).to_have_count(1, timeout=CAMPAIGN_WAIT_MS)
    expect(group).to_have_attribute("data-reason", "rolled_back")
    expect(group).to_contain_text("Rolled back to the old firmware")
    expect(group).to_contain_text("1 device")
    expect(page.locator("#campaign-summary")).to_contain_text("1 failed")
    expect(page.locator("#campaign-devices")).to_contain_text("rolled_back")
    group.get_by_role("link", name=BAD).click()
    expect(page.locator("#main h1")).to_contain_text(BAD)
    jobs = page.get_by_role("region", name="Update jobs")
    expect(jobs).to_contain_text("rolled_back")
    history = page.get_by_role("region", name="Firmware update (Object 5)")
    expect(history).to_contain_text("Downloading (1)")

    # retry failed: a child campaign over the failed device, linked to its parent
    page.go_back()
    retry = page.locator("#action-retry")
    expect(retry).to_be_enabled()
    retry.click()
    expect(page).not_to_have_url(re.compile(f"#/campaigns/{cid}$"))
    expect(page.get_by_role("region", name="Campaign")).to_contain_text(f"Retry of{cid}")
    # the child fails the same way; waiting for it leaves the site quiet for other tests
    expect(page.locator("#failures li[data-reason='rolled_back']")).to_contain_text(
        BAD, timeout=CAMPAIGN_WAIT_MS
    )


def test_campaign_actions_follow_its_state(page: Any, site: LiveSite) -> None:
    record = site.publish("2.2.0", 22, seed=22)
    sign_in(page, site, "#/campaigns/new")
    page.on("dialog", lambda dialog: dialog.accept())  # "Cancel this campaign?"
    page.get_by_label("Name").fill("slowly")
    page.get_by_label("Package").select_option(record.id)
    page.get_by_label("Devices", exact=True).fill(", ".join(SLOW))
    # one device per 10 minutes: the second waits, so the campaign stays running meanwhile
    page.get_by_label("Rate (devices/min)").fill("0.1")
    page.get_by_label("Burst").fill("1")
    page.get_by_role("button", name="Create campaign").click()

    state = page.locator("#campaign-state")
    expect(state).to_have_text("running")
    # the first device goes through (the rate limit lets one start), the second waits
    expect(page.locator("#campaign-summary")).to_contain_text(
        f"1 of {len(SLOW)} devices succeeded", timeout=CAMPAIGN_WAIT_MS
    )
    expect(state).to_have_text("running")
    buttons = page.locator("#main .actions button")
    expect(buttons).to_have_text(["Pause", "Cancel"])
    page.get_by_role("button", name="Pause").click()
    expect(state).to_have_text("paused")
    expect(buttons).to_have_text(["Resume", "Cancel"])
    page.get_by_role("button", name="Resume").click()
    expect(state).to_have_text("running")
    page.get_by_role("button", name="Cancel").click()
    expect(state).to_have_text("cancelled")
    expect(page.locator("#campaign-summary")).to_contain_text("1 cancelled")
    expect(page.get_by_role("region", name="Campaign")).to_contain_text("0.1/min (burst 1)")
    page.get_by_role("link", name="← Campaigns").click()
    page.get_by_label("State").select_option("cancelled")
    expect(page.locator("#main table")).to_contain_text("slowly")


def test_paused_reason_and_an_overridden_gate_are_shown(
    page: Any, site: LiveSite, console: Console
) -> None:
    """The canary (BAD, whose new image fails) loses its gate: the page says why the
    campaign paused; resumed, the wave reads "overridden by ...", not "met". Then the error
    threshold pauses another campaign: a plain resume is refused, the explicit reset works."""
    console.allow("status of 409")  # the browser logs the refused plain resume
    record = site.publish("3.1.0", 31, seed=31)

    async def create(**kw: Any) -> str:
        spec = CampaignSpec.from_json(
            {"name": "gate", "package_id": record.id, "target": {"endpoints": [BAD]}, **kw}
        )
        cid = await site.service.create_campaign(spec)
        await site.service.start_campaign(cid)
        return str(cid)

    cid = site.call(create(canary=1))
    sign_in(page, site, f"#/campaigns/{cid}")
    state = page.locator("#campaign-state")
    expect(state).to_have_text("paused", timeout=CAMPAIGN_WAIT_MS)
    expect(page.locator("#paused-reason")).to_have_text(
        "Paused: success gate lost: wave 0: 0 of 1 succeeded, gate needs 1"
    )
    page.locator("#action-resume").click()
    expect(state).to_have_text("completed", timeout=CAMPAIGN_WAIT_MS)
    expect(page.locator("#paused-reason")).to_be_hidden()
    verdict = page.locator("#waves [data-gate]").first
    expect(verdict).to_have_attribute("data-gate", "overridden")
    expect(verdict).to_have_text("overridden by operator 'admin': 0 of 1 succeeded, gate needs 1")

    cid = site.call(create(error_threshold={"count": 1, "min_sample": 1}))
    sign_in(page, site, f"#/campaigns/{cid}")
    expect(state).to_have_text("paused", timeout=CAMPAIGN_WAIT_MS)
    expect(page.locator("#paused-reason")).to_contain_text(
        "error threshold crossed: 1 failed of 1 finished"
    )
    page.locator("#action-resume").click()
    expect(page.locator("#main .problem")).to_contain_text("still crossed")
    expect(state).to_have_text("paused")
    page.get_by_role("button", name="Resume and reset error count").click()
    expect(state).not_to_have_text("paused", timeout=CAMPAIGN_WAIT_MS)


def test_device_table_pages_with_cursors(page: Any, site: LiveSite) -> None:
    total = len(api_get(site, "/devices?limit=1000")["items"])
    assert total > 3
    sign_in(page, site, "#/fleet?limit=3")
    table = page.locator("#main table").last
    rows = table.locator("tbody tr")
    expect(rows).to_have_count(3)
    seen: list[str] = []
    next_button = page.get_by_role("button", name="Next")
    pager = page.locator(".pager")
    for n in range(1, total + 1):  # bounded: one page per click
        expect(pager).to_contain_text(f"page {n},")
        seen += rows.locator("td:first-child").all_inner_texts()
        if next_button.is_disabled():
            break
        next_button.click()
    assert len(seen) == total and len(set(seen)) == total
    page.get_by_role("button", name="Previous").click()
    expect(pager).to_contain_text(f"page {-(-total // 3) - 1},")


def test_login_box_viewer_role_and_bad_token(page: Any, site: LiveSite, console: Console) -> None:
    console.allow("status of 401")  # the refused token
    page.goto("/#/fleet")
    login = page.get_by_role("region", name="Sign in")
    expect(login).to_be_visible()
    page.get_by_label("API token").fill("fk_not-a-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#login-error")).to_contain_text("refused")

    page.get_by_label("API token").fill(site.viewer_token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who")).to_have_text("watcher (viewer)")
    expect(page.locator("#stat-total")).to_be_visible()
    page.goto("/#/packages")
    expect(page.get_by_role("region", name="Stored packages")).to_be_visible()
    expect(page.locator("#package-file")).to_have_count(0)  # no upload for a viewer
    page.goto("/#/campaigns/new")
    expect(page.locator("#main")).to_contain_text("needs the operator role")

    page.get_by_role("button", name="Log out").click()
    expect(login).to_be_visible()
    assert page.evaluate("localStorage.getItem('fotakit.token')") is None

    # the other form of a sign-in link: the token in the fragment, then removed
    page.goto(f"/#token={site.viewer_token}")
    expect(page.locator("#who")).to_have_text("watcher (viewer)")
    expect(page).to_have_url(re.compile(r"/#/fleet$"))
    assert page.evaluate("localStorage.getItem('fotakit.token')") == site.viewer_token


def test_problem_details_are_shown_readably(
    page: Any, site: LiveSite, console: Console, tmp_path: Path
) -> None:
    console.allow("status of 422")  # the browser logs each refused request
    console.allow("status of 413")
    sign_in(page, site, "#/packages")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"this is not a signed package" * 10)
    page.set_input_files("#package-file", str(junk))
    page.get_by_role("button", name="Upload").click()
    problem = page.locator("#upload-status .problem")
    expect(problem).to_contain_text("Upload refused")
    expect(problem).to_contain_text("HTTP 422")

    # too large: refused from its Content-Length, before the body is read
    big = tmp_path / "big.bin"
    big.write_bytes(b"\0" * (MAX_UPLOAD * 8))
    page.set_input_files("#package-file", str(big))
    page.get_by_role("button", name="Upload").click()
    expect(problem).to_contain_text("HTTP 413")
    expect(problem).to_contain_text(str(MAX_UPLOAD))  # the detail names the cap

    record = site.publish("2.1.0", 21, seed=21)
    page.goto("/#/campaigns/new")
    page.get_by_label("Name").fill("no target")
    page.get_by_label("Package").select_option(record.id)
    page.get_by_role("button", name="Create campaign").click()
    result = page.locator("#nc-result .problem")
    expect(result).to_contain_text("The campaign was not created")
    expect(result).to_contain_text("target")
    expect(page.locator("#nc-class")).to_have_attribute("aria-invalid", "true")
    expect(page).to_have_url(re.compile(r"#/campaigns/new$"))


@pytest.mark.parametrize("route", ["#/nowhere", "#/campaigns/c-unknown", "#/devices/nobody"])
def test_unknown_pages_and_ids_say_so(
    page: Any, site: LiveSite, console: Console, route: str
) -> None:
    console.allow("status of 404")
    sign_in(page, site, route)
    expect(page.locator("#main")).to_contain_text(re.compile("Not found|404"))
