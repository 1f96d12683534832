"""``fotakit campaign``: create, follow and steer firmware campaigns over the REST API.

``create`` builds the campaign JSON (:meth:`fotakit.updates.campaign.CampaignSpec.from_json`
is the schema) from flags, or from ``--spec FILE.json`` with flags overriding its fields,
validates it locally (a bad flag is exit status 2 before anything is sent) and posts it;
``--watch`` then follows it. ``list``, ``show ID``, ``pause|resume|cancel ID`` and ``retry
ID`` (a child campaign over the failed devices) map one-to-one onto the API.

``watch ID`` draws a live display (rich): state and wave, a bar of finished/total, the
waves, job counts by state and failures grouped by reason with their devices. It follows
the server-sent event stream and refetches on each event (coalesced), and polls every
``--interval`` seconds as a fallback (always, and alone when the stream is unavailable).
Exit status, for scripts: 0 when the campaign completes (1 with ``--strict`` if any device
failed), 1 when it is aborted or cancelled, 3 when it pauses and ``--exit-on-pause`` is
given, 124 when ``--max-wait`` runs out; 1 for an API or network error.

Flag syntax: ``--wave PCT`` (repeatable; ``10`` or ``10%``, each 0 < PCT <= 100, their sum
<= 100; the devices left after them form one last wave), ``--error-threshold N`` (failed
devices) or ``N%`` (of finished ones), ``--success-gate PCT`` (per wave and canary).
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Final

import typer
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from fotakit.cli_remote import (
    DEFAULT_URL,
    AsyncRemoteClient,
    CliError,
    JsonFlag,
    RemoteClient,
    ServerEvent,
    TimeoutOption,
    TokenOption,
    UrlOption,
    fail,
    open_client,
    print_json,
    seg,
)
from fotakit.updates.job import FAILED_STATES, JobState

__all__ = [
    "EXIT_MAX_WAIT",
    "EXIT_PAUSED",
    "build_spec",
    "campaign_app",
    "complete_campaign",
    "parse_percent",
    "parse_threshold",
    "render_campaign",
    "watch_campaign",
]

campaign_app = typer.Typer(
    name="campaign",
    help="Firmware campaigns: roll a package out to a fleet in waves (over the REST API).",
    no_args_is_help=True,
)
console = Console(soft_wrap=True)

EXIT_PAUSED: Final = 3
EXIT_MAX_WAIT: Final = 124
FINISHED: Final = tuple(s.value for s in JobState if s.terminal)
FAILURES: Final = tuple(s.value for s in JobState if s in FAILED_STATES)
TERMINAL_CAMPAIGN: Final = ("completed", "aborted", "cancelled")
WAVE_COLUMNS: Final = {
    "index": "wave",
    "size": "size",
    "started": "started",
    "succeeded": "ok",
    "failed": "failed",
    "finished": "done",
    "success_gate": "gate",
    "gate": "gate?",
    "soak_s": "soak",
    "started_at": "opened",
}
"""The wave fields the display shows (of those the API gives), in this order: their
column titles (short, so the table fits 80 columns)."""
STATE_STYLE: Final = {
    "succeeded": "green",
    "failed": "red",
    "timed_out": "red",
    "cancelled": "yellow",
    "cancelling": "yellow",
    "completed": "green",
    "aborted": "red",
    "paused": "yellow",
    "running": "cyan",
    "draft": "dim",
}


# -- flag parsing (pure) -------------------------------------------------------------------


def parse_percent(text: str, what: str = "percentage") -> float:
    """``"10"``, ``"10%"``, ``"12.5 %"`` -> 10.0 …; 0 < value <= 100 else CliError (exit 2)."""
    raw = text.strip().removesuffix("%").strip()
    try:
        value = float(raw)
    except ValueError:
        raise CliError(f"{what} {text!r} is not a number (like 10 or 10%)", exit_code=2) from None
    if not math.isfinite(value) or not 0 < value <= 100:
        raise CliError(f"{what} {text!r} must be within (0, 100]", exit_code=2)
    return value


def parse_threshold(text: str) -> dict[str, Any]:
    """``--error-threshold``: ``"5"`` -> ``{"count": 5}``, ``"10%"`` -> ``{"percent": 10.0}``."""
    raw = text.strip()
    if raw.endswith("%"):
        return {"percent": parse_percent(raw, "--error-threshold")}
    try:
        count = int(raw)
    except ValueError:
        raise CliError(
            f"--error-threshold {text!r}: give a number of devices (5) or a percentage (10%)",
            exit_code=2,
        ) from None
    if count < 1:
        raise CliError(f"--error-threshold {text!r} must be >= 1", exit_code=2)
    return {"count": count}


def _load_spec_file(path: Path) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read --spec {path}: {exc}", exit_code=2) from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CliError(f"--spec {path} is not valid JSON: {exc}", exit_code=2) from None
    if not isinstance(data, dict):
        raise CliError(f"--spec {path} must hold a JSON object", exit_code=2)
    return data


def build_spec(
    base: Mapping[str, Any] | None = None,
    *,
    package: str | None = None,
    name: str | None = None,
    device_class: str | None = None,
    version: str | None = None,
    tags: Sequence[str] = (),
    devices: Sequence[str] = (),
    canary: int | None = None,
    waves: Sequence[str] = (),
    success_gate: str | None = None,
    soak_s: float | None = None,
    error_threshold: str | None = None,
    min_sample: int | None = None,
    on_error: str | None = None,
    rate: float | None = None,
    burst: int | None = None,
    concurrency: int | None = None,
    continuous: bool | None = None,
) -> dict[str, Any]:
    """The campaign JSON: ``base`` (a ``--spec`` file) with the given flags overriding it.

    Validated with :meth:`CampaignSpec.from_json`; raises :class:`CliError` (exit 2)
    naming the field.
    """
    from fotakit.updates.campaign import CampaignSpec
    from fotakit.updates.targets import SpecError

    spec: dict[str, Any] = dict(base or {})
    if package is not None:
        spec["package_id"] = package
    if not spec.get("package_id"):
        raise CliError("give --package ID (or a --spec file with package_id)", exit_code=2)
    if name is not None:
        spec["name"] = name
    spec.setdefault("name", f"rollout of {spec['package_id']}")
    target = dict(spec.get("target") or {})
    if device_class is not None:
        target["device_class"] = {"name": device_class}
    if version is not None:
        target["current_version"] = version
    if tags:
        target["tags"] = sorted(set(tags))
    if devices:
        if len(set(devices)) != len(devices):
            dup = next(d for d in devices if devices.count(d) > 1)
            raise CliError(f"--device {dup!r} given twice", exit_code=2)
        target["endpoints"] = list(devices)
    if not any(target.get(k) for k in ("device_class", "current_version", "tags", "endpoints")):
        raise CliError(
            "choose the devices: --class, --version, --tag and/or --device (or a --spec "
            "file with a target)",
            exit_code=2,
        )
    spec["target"] = target
    if canary is not None:
        spec["canary"] = canary
    gate = None if success_gate is None else parse_percent(success_gate, "--success-gate") / 100
    if waves:
        percents = [parse_percent(w, "--wave") for w in waves]
        total = sum(percents)
        if total > 100 + 1e-9:
            raise CliError(f"--wave percentages add up to {total:g} > 100", exit_code=2)
        wave_list: list[dict[str, Any]] = [{"percent": p} for p in percents]
        if total < 100 - 1e-9:
            wave_list.append({})  # the rest
        spec["waves"] = wave_list
    if gate is not None or soak_s is not None:
        wave_list = [dict(w) for w in spec.get("waves") or [{}]]
        for w in wave_list:
            if gate is not None:
                w["success_gate"] = gate
            if soak_s is not None:
                w["soak_s"] = soak_s
        spec["waves"] = wave_list
        if gate is not None:
            spec["canary_success_gate"] = gate
        if soak_s is not None:
            spec["canary_soak_s"] = soak_s
    threshold = dict(spec.get("error_threshold") or {})
    if error_threshold is not None:
        threshold.pop("count", None)
        threshold.pop("percent", None)
        threshold.update(parse_threshold(error_threshold))
    if min_sample is not None:
        if not threshold:
            raise CliError("--min-sample needs --error-threshold", exit_code=2)
        threshold["min_sample"] = min_sample
    if on_error is not None:
        spec["gate_action"] = on_error
        if threshold:
            threshold["action"] = on_error
    if threshold:
        spec["error_threshold"] = threshold
    if rate is not None:
        spec["rate_per_minute"] = rate
    if burst is not None:
        spec["burst"] = burst
    if concurrency is not None:
        spec["max_concurrent"] = concurrency
    if continuous is not None:
        spec["mode"] = "continuous" if continuous else "snapshot"
    spec.pop("start", None)
    try:
        CampaignSpec.from_json(spec)
    except SpecError as exc:
        raise CliError(f"invalid campaign: {exc}", exit_code=2) from None
    except (TypeError, ValueError) as exc:
        raise CliError(f"invalid campaign: {exc}", exit_code=2) from None
    return spec


# -- rendering (pure) ----------------------------------------------------------------------


def _cell(value: object) -> str:
    """A value from the server as table text (markup escaped: names may hold brackets)."""
    return "-" if value is None or value == "" else escape(str(value))


def _wave_cell(key: str, value: object) -> str:
    if value is None:
        return "-"
    if key == "success_gate" and isinstance(value, int | float):
        return f"{value * 100:g}%"
    if key == "soak_s" and isinstance(value, int | float):
        return f"{value:g}s"
    if key == "gate" and value == "pending":
        return "-"
    if key == "started_at" and isinstance(value, str) and "T" in value:
        return escape(value.split("T", 1)[1][:8])  # the time of day (UTC) is enough here
    return _cell(value)


def _styled(state: object) -> Text:
    text = str(state)
    return Text(text, style=STATE_STYLE.get(text, ""))


def _progress(campaign: Mapping[str, Any]) -> Mapping[str, Any]:
    progress = campaign.get("progress")
    return progress if isinstance(progress, Mapping) else {}


def _finished(progress: Mapping[str, Any]) -> int:
    if isinstance(progress.get("finished"), int):
        return int(progress["finished"])
    by_state = progress.get("by_state") or {}
    return sum(int(by_state.get(s, 0)) for s in FINISHED)


def render_campaign(
    campaign: Mapping[str, Any],
    failures: Mapping[str, Any] | None = None,
    *,
    note: str | None = None,
) -> RenderableType:
    """The watch display (also ``campaign show``) from the API's campaign JSON."""
    progress = _progress(campaign)
    total = int(progress.get("total") or 0)
    finished = _finished(progress)
    header = Text.assemble(
        ("campaign ", "dim"),
        (str(campaign.get("id")), "bold"),
        "  ",
        str(campaign.get("name") or ""),
        "  ",
        _styled(campaign.get("state")),
        ("  wave ", "dim"),
        str(campaign.get("wave")),
        ("  package ", "dim"),
        str(campaign.get("package_id")),
    )
    bar = Table.grid(padding=(0, 1))
    bar.add_column(width=40)
    bar.add_column()
    bar.add_row(
        ProgressBar(total=max(total, 1), completed=finished if total else 0, width=40),
        f"{finished}/{total} finished",
    )
    parts: list[RenderableType] = [header, bar]
    waves = campaign.get("waves")
    if isinstance(waves, list) and waves:
        present = {k for w in waves if isinstance(w, Mapping) for k in w}
        keys = [k for k in WAVE_COLUMNS if k in present]
        table = Table(title="waves (wave 0 is the canary)", title_justify="left")
        for k in keys:
            table.add_column(WAVE_COLUMNS[k], justify="right")
        for w in waves:
            if isinstance(w, Mapping):
                table.add_row(*(_wave_cell(k, w.get(k)) for k in keys))
        parts.append(table)
        for w in waves:
            override = w.get("override") if isinstance(w, Mapping) else None
            if isinstance(override, Mapping):  # resumed past a lost gate: not a gate met
                parts.append(
                    Text(
                        f"wave {w.get('index')} gate overridden by {override.get('by')}: "
                        f"{override.get('why')}",
                        style="yellow",
                    )
                )
    by_state = progress.get("by_state") or {}
    if by_state:
        table = Table(title="devices by state", title_justify="left")
        table.add_column("state")
        table.add_column("count", justify="right")
        for state, count in sorted(by_state.items(), key=lambda kv: (-int(kv[1]), kv[0])):
            if count:
                table.add_row(_styled(state), str(count))
        parts.append(table)
    groups = (failures or {}).get("groups") or []
    by_reason = progress.get("by_reason") or {}
    if groups or by_reason:
        table = Table(title="failures by reason", title_justify="left")
        table.add_column("reason", style="red")
        table.add_column("count", justify="right")
        table.add_column("devices", overflow="fold")
        if groups:
            for g in groups:
                eps = [str(e) for e in g.get("endpoints") or []]
                shown = ", ".join(eps[:8]) + (f" … (+{len(eps) - 8})" if len(eps) > 8 else "")
                table.add_row(_cell(g.get("reason")), _cell(g.get("count")), escape(shown))
                for ep, detail in list((g.get("details") or {}).items())[:3]:
                    table.add_row("", "", f"[dim]{escape(str(ep))}: {escape(str(detail))}[/dim]")
        else:
            for reason, count in sorted(by_reason.items(), key=lambda kv: -int(kv[1])):
                table.add_row(_cell(reason), _cell(count), "")
        parts.append(table)
    if campaign.get("state") == "paused":
        reason = campaign.get("paused_reason")
        if reason:
            parts.append(Text(f"paused: {reason}", style="yellow"))
        hint = f"`fotakit campaign resume {campaign.get('id')}` continues it"
        if str(reason or "").startswith("error threshold"):
            hint += " once you add --reset-errors (the threshold is still crossed)"
        parts.append(Text(hint, style="yellow"))
    if note:
        parts.append(Text(note, style="dim"))
    return Group(*parts)


def _summary(campaign: Mapping[str, Any]) -> str:
    progress = _progress(campaign)
    by_state = progress.get("by_state") or {}
    counts = ", ".join(f"{by_state[s]} {s}" for s in FINISHED if by_state.get(s))
    reason = campaign.get("paused_reason") if campaign.get("state") == "paused" else None
    return (
        f"campaign {campaign.get('id')} {campaign.get('state')}: "
        f"{_finished(progress)}/{progress.get('total', 0)} finished"
        + (f" ({counts})" if counts else "")
        + (f"; {reason}" if reason else "")
    )


def exit_code_for(campaign: Mapping[str, Any], *, strict: bool) -> int | None:
    """The watch's exit status once the campaign is terminal; None while it runs."""
    state = campaign.get("state")
    if state == "completed":
        by_state = _progress(campaign).get("by_state") or {}
        failed = sum(int(by_state.get(s, 0)) for s in FAILURES)
        return 1 if strict and failed else 0
    if state in ("aborted", "cancelled"):
        return 1
    return None


# -- watching ------------------------------------------------------------------------------


async def _fetch(
    client: AsyncRemoteClient, campaign_id: str
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    campaign: dict[str, Any] = await client.get(f"/campaigns/{seg(campaign_id)}")
    failures: dict[str, Any] | None = None
    by_reason = _progress(campaign).get("by_reason") or {}
    if by_reason:
        failures = await client.get(f"/campaigns/{seg(campaign_id)}/failures")
    return campaign, failures


async def watch_campaign(
    client: AsyncRemoteClient,
    campaign_id: str,
    *,
    out: Console,
    interval: float = 2.0,
    strict: bool = False,
    exit_on_pause: bool = False,
    max_wait: float | None = None,
    use_stream: bool = True,
) -> int:
    """Follow a campaign until it ends; the exit status (see the module docstring)."""
    events: asyncio.Queue[ServerEvent | None] = asyncio.Queue()
    stream_state = {"note": "following the event stream" if use_stream else "polling"}

    async def follow() -> None:
        try:
            async for event in client.stream_events(campaign_id=campaign_id):
                events.put_nowait(event)
            stream_state["note"] = f"event stream ended; polling every {interval:g} s"
        except CliError as exc:
            stream_state["note"] = f"no event stream ({exc.message}); polling every {interval:g} s"
        events.put_nowait(None)

    deadline = None if max_wait is None else time.monotonic() + max_wait
    campaign, failures = await _fetch(client, campaign_id)  # an unknown ID fails here
    reader = asyncio.ensure_future(follow()) if use_stream else None
    code: int | None = None
    try:
        with Live(
            render_campaign(campaign, failures, note=stream_state["note"]),
            console=out,
            refresh_per_second=4,
            transient=False,
        ) as live:
            for _ in range(10_000_000):  # bounded; each pass waits for an event or a poll
                code = exit_code_for(campaign, strict=strict)
                if code is None and exit_on_pause and campaign.get("state") == "paused":
                    code = EXIT_PAUSED
                if code is not None:
                    break
                wait = interval
                if deadline is not None:
                    wait = min(wait, deadline - time.monotonic())
                    if wait <= 0:
                        code = EXIT_MAX_WAIT
                        break
                try:
                    await asyncio.wait_for(events.get(), wait)
                    # coalesce a burst of events into one refetch
                    while not events.empty():
                        events.get_nowait()
                except TimeoutError:
                    pass
                campaign, failures = await _fetch(client, campaign_id)
                live.update(render_campaign(campaign, failures, note=stream_state["note"]))
    finally:
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
    if not out.is_terminal:
        out.line()  # the last frame ends without one when not drawn on a terminal
    if code == EXIT_MAX_WAIT:
        out.print(
            f"gave up after --max-wait {max_wait:g} s; {_summary(campaign)}",
            highlight=False,
            markup=False,
        )
    elif code == EXIT_PAUSED:
        out.print(f"{_summary(campaign)} (paused)", highlight=False, markup=False)
    else:
        out.print(_summary(campaign), highlight=False, markup=False)
    return EXIT_MAX_WAIT if code is None else code


def _run_watch(
    url: str,
    token: str | None,
    timeout: float,
    campaign_id: str,
    *,
    interval: float,
    strict: bool,
    exit_on_pause: bool,
    max_wait: float | None,
    use_stream: bool,
) -> int:
    async def main() -> int:
        async with AsyncRemoteClient(url, token, timeout=timeout) as client:
            return await watch_campaign(
                client,
                campaign_id,
                out=console,
                interval=interval,
                strict=strict,
                exit_on_pause=exit_on_pause,
                max_wait=max_wait,
                use_stream=use_stream,
            )

    try:
        return asyncio.run(main())
    except CliError as exc:
        raise fail(exc) from None
    except KeyboardInterrupt:
        return 130


# -- commands ------------------------------------------------------------------------------


def complete_campaign(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion of campaign IDs (newest first; nothing on any error)."""
    params = ctx.params
    try:
        with RemoteClient(params.get("url") or DEFAULT_URL, params.get("token"), timeout=2) as c:
            return [
                str(item["id"])
                for item in c.paged("/campaigns", limit=100)
                if str(item.get("id", "")).startswith(incomplete)
            ]
    except Exception:  # completion must never print a traceback into the shell
        return []


CampaignArg = Annotated[
    str, typer.Argument(help="The campaign's ID.", autocompletion=complete_campaign)
]
IntervalOption = Annotated[
    float,
    typer.Option(
        "--interval",
        help="Seconds between progress polls (the fallback).",
        min=0.1,
        rich_help_panel="Watching",
    ),
]
StrictOption = Annotated[
    bool,
    typer.Option(
        "--strict",
        help="Exit 1 when the campaign completes with failures.",
        rich_help_panel="Watching",
    ),
]
ExitOnPauseOption = Annotated[
    bool,
    typer.Option(
        "--exit-on-pause",
        help=f"Exit {EXIT_PAUSED} when the campaign pauses.",
        rich_help_panel="Watching",
    ),
]
MaxWaitOption = Annotated[
    float | None,
    typer.Option(
        "--max-wait",
        help=f"Give up (exit {EXIT_MAX_WAIT}) after this many seconds.",
        min=0,
        rich_help_panel="Watching",
    ),
]
StreamOption = Annotated[
    bool,
    typer.Option(
        "--stream/--no-stream",
        help="Follow the event stream (else only poll).",
        rich_help_panel="Watching",
    ),
]


@campaign_app.command("create")
def campaign_create(
    package: Annotated[
        str | None, typer.Option("--package", help="The package ID to roll out.")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="A name for people.")] = None,
    device_class: Annotated[
        str | None,
        typer.Option("--class", help="Devices of this class (/3/0/1).", rich_help_panel="Devices"),
    ] = None,
    version: Annotated[
        str | None,
        typer.Option(
            "--version",
            help="Devices running exactly this firmware version.",
            rich_help_panel="Devices",
        ),
    ] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option(
            "--tag", help="Devices carrying this tag (repeatable).", rich_help_panel="Devices"
        ),
    ] = None,
    device: Annotated[
        list[str] | None,
        typer.Option("--device", help="This device (repeatable).", rich_help_panel="Devices"),
    ] = None,
    canary: Annotated[
        int | None,
        typer.Option(
            "--canary",
            help="Devices in the canary wave first.",
            min=0,
            rich_help_panel="Waves and gates",
        ),
    ] = None,
    wave: Annotated[
        list[str] | None,
        typer.Option(
            "--wave",
            help="A wave of PCT % of the devices (repeatable; the rest form a last wave).",
            rich_help_panel="Waves and gates",
        ),
    ] = None,
    success_gate: Annotated[
        str | None,
        typer.Option(
            "--success-gate",
            help="Share of a wave that must succeed before the next (PCT).",
            rich_help_panel="Waves and gates",
        ),
    ] = None,
    soak: Annotated[
        float | None,
        typer.Option(
            "--soak",
            help="Seconds to wait after a wave's gate is met.",
            min=0,
            rich_help_panel="Waves and gates",
        ),
    ] = None,
    error_threshold: Annotated[
        str | None,
        typer.Option(
            "--error-threshold",
            help="Stop after N failed devices, or N% of finished ones.",
            rich_help_panel="Waves and gates",
        ),
    ] = None,
    min_sample: Annotated[
        int | None,
        typer.Option(
            "--min-sample",
            help="Finished devices before the threshold applies.",
            min=1,
            rich_help_panel="Waves and gates",
        ),
    ] = None,
    on_error: Annotated[
        str | None,
        typer.Option(
            "--on-error",
            help="pause or abort when the threshold or a gate fails (pause).",
            rich_help_panel="Waves and gates",
        ),
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option(
            "--rate",
            help="Devices started per minute at most.",
            min=0.001,
            rich_help_panel="Limits",
        ),
    ] = None,
    burst: Annotated[
        int | None,
        typer.Option(
            "--burst", help="Starts allowed at once (with --rate).", min=1, rich_help_panel="Limits"
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency", help="Downloads in flight at most.", min=1, rich_help_panel="Limits"
        ),
    ] = None,
    continuous: Annotated[
        bool | None,
        typer.Option(
            "--continuous/--snapshot",
            help="Also admit devices that match later (default: members fixed at start).",
            rich_help_panel="Devices",
        ),
    ] = None,
    spec_file: Annotated[
        Path | None,
        typer.Option("--spec", help="A campaign JSON file (- for stdin); flags override it."),
    ] = None,
    start: Annotated[
        bool, typer.Option("--start/--no-start", help="Start at once (else a draft).")
    ] = True,
    watch: Annotated[bool, typer.Option("--watch", help="Then follow it (see watch).")] = False,
    as_json: JsonFlag = False,
    interval: IntervalOption = 2.0,
    strict: StrictOption = False,
    exit_on_pause: ExitOnPauseOption = False,
    max_wait: MaxWaitOption = None,
    stream: StreamOption = True,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Create a campaign (started unless --no-start); --watch follows it to the end."""
    try:
        if on_error is not None and on_error not in ("pause", "abort"):
            raise CliError(f"--on-error must be pause or abort, got {on_error!r}", exit_code=2)
        base = _load_spec_file(spec_file) if spec_file is not None else None
        spec = build_spec(
            base,
            package=package,
            name=name,
            device_class=device_class,
            version=version,
            tags=tag or (),
            devices=device or (),
            canary=canary,
            waves=wave or (),
            success_gate=success_gate,
            soak_s=soak,
            error_threshold=error_threshold,
            min_sample=min_sample,
            on_error=on_error,
            rate=rate,
            burst=burst,
            concurrency=concurrency,
            continuous=continuous,
        )
        with open_client(url, token, timeout) as client:
            created = client.create_campaign(spec, start=start)
    except CliError as exc:
        raise fail(exc) from None
    if as_json and not watch:
        print_json(created)
        return
    total = _progress(created).get("total")
    console.print(
        f"created campaign [bold]{_cell(created.get('id'))}[/bold] "
        f"({_cell(created.get('state'))}): {_cell(created.get('name'))}"
        + (f", {total} device(s)" if total is not None else ""),
        highlight=False,
    )
    if watch:
        code = _run_watch(
            url,
            token,
            timeout,
            str(created.get("id")),
            interval=interval,
            strict=strict,
            exit_on_pause=exit_on_pause,
            max_wait=max_wait,
            use_stream=stream,
        )
        raise typer.Exit(code)


@campaign_app.command("list")
def campaign_list(
    state: Annotated[
        str | None, typer.Option("--state", help="Only campaigns in this state.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many.", min=1)] = 100,
    as_json: JsonFlag = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """List campaigns with their state and progress."""
    try:
        with open_client(url, token, timeout) as client:
            items = list(client.paged("/campaigns", limit=limit, state=state))
    except CliError as exc:
        raise fail(exc) from None
    if as_json:
        print_json(items)
        return
    table = Table(title=f"{len(items)} campaign(s)")
    for column in ("id", "name", "state", "wave", "package", "finished", "created"):
        table.add_column(column, overflow="fold")
    for c in items:
        progress = _progress(c)
        table.add_row(
            _cell(c.get("id")),
            _cell(c.get("name")),
            _styled(c.get("state")),
            _cell(c.get("wave")),
            _cell(c.get("package_id")),
            f"{_finished(progress)}/{progress.get('total', 0)}",
            _cell(c.get("created_at")),
        )
    console.print(table)


@campaign_app.command("show")
def campaign_show(
    campaign_id: CampaignArg,
    as_json: JsonFlag = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """One campaign: state, waves, counts by state, failures by reason with devices."""
    try:
        with open_client(url, token, timeout) as client:
            campaign = client.campaign(campaign_id)
            failures = client.failures(campaign_id)
    except CliError as exc:
        raise fail(exc) from None
    if as_json:
        print_json({**campaign, "failures": failures})
        return
    console.print(render_campaign(campaign, failures))


@campaign_app.command("watch")
def campaign_watch(
    campaign_id: CampaignArg,
    interval: IntervalOption = 2.0,
    strict: StrictOption = False,
    exit_on_pause: ExitOnPauseOption = False,
    max_wait: MaxWaitOption = None,
    stream: StreamOption = True,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Follow a campaign live until it ends; exit 0 completed, 1 aborted/cancelled."""
    code = _run_watch(
        url,
        token,
        timeout,
        campaign_id,
        interval=interval,
        strict=strict,
        exit_on_pause=exit_on_pause,
        max_wait=max_wait,
        use_stream=stream,
    )
    raise typer.Exit(code)


def _action(
    action: str,
    campaign_id: str,
    url: str,
    token: str | None,
    timeout: float,
    as_json: bool,
    params: dict[str, Any] | None = None,
) -> None:
    try:
        with open_client(url, token, timeout) as client:
            campaign = client.campaign_action(campaign_id, action, params)
    except CliError as exc:
        raise fail(exc) from None
    if as_json:
        print_json(campaign)
        return
    if action == "retry":
        console.print(
            f"retry campaign [bold]{_cell(campaign.get('id'))}[/bold] "
            f"({_cell(campaign.get('state'))}) over the failed devices of {escape(campaign_id)}",
            highlight=False,
        )
    else:
        console.print(
            f"campaign {campaign.get('id')} is {campaign.get('state')}",
            highlight=False,
            markup=False,
        )


def _action_command(action: str, doc: str) -> None:
    """Register ``campaign <action> ID``: one POST /campaigns/{id}/<action>."""

    def command(
        campaign_id: CampaignArg,
        as_json: JsonFlag = False,
        url: UrlOption = DEFAULT_URL,
        token: TokenOption = None,
        timeout: TimeoutOption = 30.0,
    ) -> None:
        _action(action, campaign_id, url, token, timeout, as_json)

    command.__doc__ = doc
    command.__name__ = f"campaign_{action}"
    campaign_app.command(action)(command)


@campaign_app.command("resume")
def campaign_resume(
    campaign_id: CampaignArg,
    reset_errors: Annotated[
        bool,
        typer.Option(
            "--reset-errors",
            help="Restart the error threshold's count (refused without it while the "
            "threshold is still crossed; the campaign's event log records the reset).",
        ),
    ] = False,
    as_json: JsonFlag = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Resume a paused campaign; its error threshold keeps counting."""
    params = {"reset_errors": "true"} if reset_errors else None
    _action("resume", campaign_id, url, token, timeout, as_json, params)


for _name, _doc in (
    ("pause", "Pause: no new device starts; running jobs finish."),
    ("start", "Start a draft campaign (one created with --no-start)."),
    ("cancel", "Cancel: running jobs are cancelled, no device starts any more."),
    ("retry", "Start a child campaign over the failed and timed-out devices."),
):
    _action_command(_name, _doc)
