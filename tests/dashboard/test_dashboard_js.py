"""The dashboard's own JavaScript, run in Chromium: its parsers (Hypothesis properties) and
its name tables, checked against the Python enums they mirror so they cannot drift.

The form parser (``buildSpec`` of pages/new-campaign.js) is fed arbitrary field values
through the real form (the browser sanitizes them as it would for a user); whatever it
produces must be either a precise form error naming a field, or a CampaignSpec JSON that
:meth:`fotakit.updates.campaign.CampaignSpec.from_json` accepts or refuses with a
:class:`~fotakit.updates.campaign.CampaignSpecError` -- never anything else.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from dashboard_helpers import LiveSite
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from playwright.sync_api import expect

from fotakit.lwm2m.objects import NetworkBearer, UpdateResult
from fotakit.lwm2m.objects.firmware import State
from fotakit.updates.campaign import CampaignSpec, CampaignSpecError
from fotakit.updates.job import JobState
from fotakit.updates.reasons import FailureReason
from fotakit.updates.targets import SpecError

JS_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def js_page(browser: Any, site: LiveSite) -> Iterator[Any]:
    """One signed-in page on the create-campaign form (with a package to choose), shared
    by the module's tests."""
    site.publish("1.5.0", 15, seed=15)
    context = browser.new_context(base_url=site.base_url)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"/?token={site.admin_token}#/campaigns/new")
    expect(page.locator("#new-campaign")).to_be_visible()
    try:
        yield page
    finally:
        context.close()
    assert errors == []


def js_tables(page: Any) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(
        """async () => {
            const u = await import('/ui/util.js');
            return {fwStates: u.FW_STATES, fwResults: u.FW_RESULTS, reasons: u.REASONS,
                    bearers: u.BEARERS, jobStates: u.JOB_STATES, colors: u.STATE_COLORS};
        }"""
    )
    return result


def test_name_tables_cover_the_python_enums(js_page: Any) -> None:
    t = js_tables(js_page)
    assert {int(k) for k in t["fwStates"]} == {s.value for s in State}
    assert {int(k) for k in t["fwResults"]} == {r.value for r in UpdateResult}
    assert set(t["reasons"]) == {r.value for r in FailureReason}
    assert {int(k) for k in t["bearers"]} == {b.value for b in NetworkBearer}
    assert set(t["jobStates"]) == {s.value for s in JobState}
    assert set(t["colors"]) == {s.value for s in JobState}
    # the names of the LwM2M registry, not just numbers
    assert t["fwStates"]["3"] == "Updating"
    assert t["fwResults"]["5"] == "Integrity check failure"


def split_list(page: Any, text: str) -> list[str]:
    out: list[str] = page.evaluate("async (t) => (await import('/ui/util.js')).splitList(t)", text)
    return out


# JS's \s: Unicode spaces, line terminators and U+FEFF; kept out of list items
_ITEM = st.text(
    st.characters(
        blacklist_categories=("Zs", "Zl", "Zp", "Cc", "Cs"), blacklist_characters=",\ufeff"
    ),
    min_size=1,
    max_size=12,
)
_SEP = st.sampled_from([",", " ", "\n", ", ", ",\n", "\t", " ,  "])


@JS_SETTINGS
@given(items=st.lists(_ITEM, max_size=8), seps=st.lists(_SEP, min_size=8, max_size=8))
def test_split_list_returns_the_distinct_items_in_order(
    js_page: Any, items: list[str], seps: list[str]
) -> None:
    text = "".join(item + seps[i] for i, item in enumerate(items))
    assert split_list(js_page, text) == list(dict.fromkeys(items))


@JS_SETTINGS
@given(text=st.text(max_size=40))
def test_split_list_items_are_clean_for_any_text(js_page: Any, text: str) -> None:
    out = split_list(js_page, text)
    assert len(out) == len(set(out))
    for item in out:
        assert item and item in text
        assert not any(c in ", \t\n\v\f\r\xa0" for c in item)


_NUMBERISH = st.one_of(
    st.just(""),
    st.integers(-5, 500).map(str),
    st.floats(-1, 200, allow_nan=False).map(lambda f: f"{f:g}"),
    st.text(max_size=6),
)
FIELDS = {
    "nc-name": st.one_of(st.just("rollout"), st.text(max_size=10)),
    "nc-package": st.just(""),  # filled in below: a real package id or nothing
    "nc-class": st.one_of(st.just(""), st.just("sensor-v2"), st.text(max_size=8)),
    "nc-version": st.one_of(st.just(""), st.just("1.0.0"), st.text(max_size=8)),
    "nc-tags": st.text(max_size=16),
    "nc-endpoints": st.one_of(
        st.just(""), st.lists(_ITEM, max_size=4).map("\n".join), st.text(max_size=20)
    ),
    "nc-mode": st.sampled_from(["snapshot", "continuous"]),
    "nc-cap": _NUMBERISH,
    "nc-canary": _NUMBERISH,
    "nc-canary-gate": _NUMBERISH,
    "nc-canary-soak": _NUMBERISH,
    "nc-waves": st.one_of(
        st.just(""),
        st.lists(st.integers(-10, 120).map(str), max_size=4).map(", ".join),
        st.text(max_size=10),
    ),
    "nc-wave-gate": _NUMBERISH,
    "nc-wave-soak": _NUMBERISH,
    "nc-gate-action": st.sampled_from(["pause", "abort"]),
    "nc-err-percent": _NUMBERISH,
    "nc-err-count": _NUMBERISH,
    "nc-err-min": _NUMBERISH,
    "nc-err-action": st.sampled_from(["pause", "abort"]),
    "nc-rate": _NUMBERISH,
    "nc-burst": _NUMBERISH,
    "nc-concurrent": _NUMBERISH,
    "nc-jitter": _NUMBERISH,
    "nc-retries": _NUMBERISH,
}


#: Some fields changed from a plausible start (all fields random would nearly always fail).
_FORMS = st.lists(st.sampled_from(sorted(FIELDS)), unique=True, max_size=6).flatmap(
    lambda keys: st.fixed_dictionaries({k: FIELDS[k] for k in keys})
)


@JS_SETTINGS
@given(changes=_FORMS, with_package=st.booleans())
def test_create_form_yields_a_form_error_or_a_spec_the_server_judges(
    js_page: Any, site: LiveSite, changes: dict[str, str], with_package: bool
) -> None:
    package = js_page.evaluate(
        "() => document.querySelector('#nc-package option:last-child').value"
    )
    values = {"nc-name": "rollout", "nc-endpoints": "dev-1\ndev-2"}
    values["nc-package"] = package if with_package else ""
    values.update(changes)
    out = js_page.evaluate(
        """async (values) => {
            const m = await import('/ui/pages/new-campaign.js');
            const form = document.getElementById('new-campaign');
            form.reset();
            for (const [id, v] of Object.entries(values)) form.querySelector('#' + id).value = v;
            try { return {spec: m.buildSpec(form)}; }
            catch (e) { return {error: e.constructor.name, field: e.field, message: e.message}; }
        }""",
        values,
    )
    if "error" in out:
        assert out["error"] == "FormError", out
        assert out["field"] and out["message"].startswith(out["field"]), out
        event("form error")
        return
    spec = out["spec"]
    assert isinstance(spec.pop("start"), bool)
    try:
        parsed = CampaignSpec.from_json(spec)
    except CampaignSpecError as exc:
        assert exc.field  # a precise refusal, as the REST API reports it (422)
        event("spec refused")
        return
    except SpecError as exc:  # the target's own errors
        assert exc.field.startswith("target")
        event("target refused")
        return
    event("spec accepted")
    assert parsed.name == spec["name"]
    if "endpoints" in spec["target"]:
        assert parsed.target.endpoints == tuple(spec["target"]["endpoints"])
    sizes = [w["percent"] for w in spec["waves"] if w.get("percent") is not None]
    assert len(parsed.waves) == len(sizes) + (0 if sizes and sum(sizes) >= 100 else 1)


def test_static_files_are_served_whole_and_need_no_network(site: LiveSite) -> None:
    """Every module the page imports is served with a JavaScript type, and no file refers
    to another site (no CDN: the dashboard works without Internet access)."""
    from fotakit.dashboard import INDEX_HTML, STATIC_DIR

    with httpx.Client(base_url=site.base_url, timeout=10) as client:
        index = client.get("/")
        assert index.status_code == 200
        assert index.headers["content-type"].startswith("text/html")
        assert index.text == INDEX_HTML.read_text()
        files = sorted(p for p in STATIC_DIR.rglob("*") if p.is_file())
        assert {p.suffix for p in files} <= {".html", ".js", ".css"}
        for path in files:
            text = path.read_text()
            # a namespace name, never fetched
            text = text.replace("http://www.w3.org/2000/svg", "")
            assert not re.search(r"(?i)\b(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text), path
            if path.suffix != ".js":
                continue
            url = "/ui/" + path.relative_to(STATIC_DIR).as_posix()
            r = client.get(url)
            assert r.status_code == 200, url
            assert "javascript" in r.headers["content-type"], (url, r.headers["content-type"])
            for target in re.findall(r'^import .* from "(\.{1,2}/[^"]+)";', text, re.M):
                assert (path.parent / target).resolve().is_file(), (path, target)
