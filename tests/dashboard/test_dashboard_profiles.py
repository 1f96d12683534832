"""The device profiles page and the device page's profile line, in headless Chromium
against a real fotakit site (see dashboard_helpers)."""

from __future__ import annotations

from typing import Any

import httpx
from dashboard_helpers import SOLO, Console, LiveSite
from playwright.sync_api import expect


def _device_class(site: LiveSite) -> str:
    r = httpx.get(
        f"{site.base_url}/api/v1/devices/{SOLO}",
        headers={"Authorization": f"Bearer {site.admin_token}"},
        timeout=10,
    )
    r.raise_for_status()
    cls = r.json()["class"]
    assert isinstance(cls, str) and cls
    return cls


def test_operator_sets_a_profile_and_the_device_page_shows_it(
    page: Any, site: LiveSite, console: Console
) -> None:
    console.allow("status of 422")  # the refused value below, on purpose
    cls = _device_class(site)
    page.goto(f"/?token={site.admin_token}#/profiles")
    listing = page.locator("#profiles-list")
    expect(listing).to_contain_text("built in")
    expect(listing).to_contain_text("default")

    page.locator("#pf-name").fill(cls)
    page.locator("#pf-form").select_option("bare")
    page.locator("#pf-protocols").fill("http,coap")
    page.locator("#pf-push").uncheck()
    page.locator("#pf-t-downloading").fill("1800")
    page.get_by_role("button", name="Save profile").click()
    expect(page.locator("#profile-status")).to_contain_text(f"Profile {cls} saved")
    expect(listing).to_contain_text(cls)
    expect(listing).to_contain_text("http > coap")
    expect(listing).to_contain_text("downloading=1800s")

    # a refused value shows the server's reason, and nothing stored is lost
    page.locator("#pf-protocols").fill("ftp")
    page.get_by_role("button", name="Save profile").click()
    expect(page.locator("#profile-status .problem")).to_be_visible()
    expect(listing).to_contain_text("http > coap")

    page.goto(f"/#/devices/{SOLO}")
    line = page.locator("#device-profile")
    expect(line).to_contain_text(cls)
    expect(line).to_contain_text("bare payload")
    expect(line).to_contain_text("push never")
    expect(line).to_contain_text("has its own profile")

    # the link opens the profile in the form; delete falls back to the default
    line.get_by_role("link", name=cls).click()
    expect(page.locator("#pf-name")).to_have_value(cls)
    page.on("dialog", lambda d: d.accept())
    page.get_by_role("button", name=f"Delete profile {cls}").click()
    expect(page.locator("#profile-status")).to_contain_text(f"Profile {cls} deleted")
    expect(listing).not_to_contain_text("http > coap")
