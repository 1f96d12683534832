"""``fotakit profiles`` against a real site (REST API, LwM2M server, update service, real
agents): set, list, show, device, delete, and the errors an operator can make."""

from __future__ import annotations

import json

from cli_helpers import GOOD, CliSite


def test_profiles_set_list_show_device_and_delete(site: CliSite) -> None:
    shown = site.cli("devices", "show", GOOD[0], "--json", role="viewer")
    assert shown.exit_code == 0, shown.output
    cls = json.loads(shown.stdout)["class"]
    assert cls

    viewer_set = site.cli("profiles", "set", cls, "--payload-form", "bare", role="viewer")
    assert viewer_set.exit_code == 1 and "403" in viewer_set.output

    made = site.cli(
        "profiles",
        "set",
        cls,
        "--payload-form",
        "bare",
        "--protocols",
        "http,coap",
        "--no-push",
        "--state-timeout",
        "downloading=1800",
        "--description",
        "stock image",
    )
    assert made.exit_code == 0, made.output
    assert f"profile {cls} stored" in made.stdout and "never" in made.stdout

    listed = site.cli("profiles", "list", "--json", role="viewer")
    assert listed.exit_code == 0, listed.output
    by_name = {p["name"]: p for p in json.loads(listed.stdout)}
    assert by_name[cls] == {
        "name": cls,
        "payload_form": "bare",
        "protocols": ["http", "coap"],
        "push": False,
        "timeouts": {"downloading": 1800.0},
        "description": "stock image",
        "stored": True,
    }
    assert by_name["default"]["stored"] is False

    one = site.cli("profiles", "show", cls, role="viewer")
    assert one.exit_code == 0 and "downloading=1800s" in one.stdout, one.output

    device = site.cli("profiles", "device", GOOD[0], role="viewer")
    assert device.exit_code == 0, device.output
    assert cls in device.stdout and "has its own profile" in device.stdout
    detail = site.cli("devices", "show", GOOD[0], role="viewer")
    assert "profile" in detail.stdout and "bare" in detail.stdout, detail.stdout

    gone = site.cli("profiles", "delete", cls)
    assert gone.exit_code == 0, gone.output
    again = site.cli("profiles", "delete", cls)
    assert again.exit_code == 1 and "404" in again.output


def test_profile_errors_are_one_line_and_non_zero(site: CliSite) -> None:
    bad_timeout = site.cli("profiles", "set", "x-class", "--state-timeout", "forever")
    assert bad_timeout.exit_code == 2, bad_timeout.output
    assert "STATE=SECONDS" in bad_timeout.output
    bad_state = site.cli("profiles", "set", "x-class", "--state-timeout", "installing=5")
    assert bad_state.exit_code == 2 and "installing" in bad_state.output
    bad_protocol = site.cli("profiles", "set", "x-class", "--protocols", "ftp")
    assert bad_protocol.exit_code == 1 and "422" in bad_protocol.output, bad_protocol.output
    missing = site.cli("profiles", "show", "no-such-class", role="viewer")
    assert missing.exit_code == 1 and "404" in missing.output
    # nothing was stored by the refused commands
    listed = site.cli("profiles", "list", "--json", role="viewer")
    assert "x-class" not in listed.stdout
