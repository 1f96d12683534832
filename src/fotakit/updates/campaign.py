"""The campaign engine, pure: which devices to update now, wave by wave, and when to stop.

Theory of operation
-------------------
A :class:`CampaignSpec` names a package, a :class:`~fotakit.updates.targets.TargetSpec`,
waves, gates and limits. A :class:`Campaign` holds one campaign's state and is driven by the
I/O shell (the update engine) with three kinds of input, each taking the clock ``now``
(epoch seconds) as an argument and returning a :class:`Decision`:

- operator triggers: :meth:`Campaign.start`, :meth:`~Campaign.pause`,
  :meth:`~Campaign.resume`, :meth:`~Campaign.cancel` (a trigger the table does not allow
  raises :class:`InvalidCampaignTransition` naming state and trigger, and changes nothing);
- job reports: :meth:`~Campaign.on_job_state` whenever a member's job changes state (the
  job itself is :mod:`fotakit.updates.job`); late devices: :meth:`~Campaign.offer`;
- time: :meth:`~Campaign.tick`.

A Decision lists the endpoints to start now (each with a jittered ``not_before``), the
endpoints whose running jobs must be cancelled, at most one wave advance (``from_wave`` ->
``to_wave``: the store applies it with ``UPDATE ... WHERE wave = from_wave``, so it happens
exactly once), at most one state change, and when to tick next.

The campaign's states and triggers form one table, :data:`TRANSITIONS`::

    DRAFT -> RUNNING -> (PAUSED <-> RUNNING) -> COMPLETED | ABORTED | CANCELLED

Waves (docs/operator-guide.md, "Campaigns"): wave 0 is the canary (``canary`` devices, when
> 0), then one wave per :class:`WaveSpec` (a percentage of the population or a count; the
last wave takes the rest). A wave's *success gate* is the ratio of its devices that
succeeded; when it is met, the *soak time* runs, then the next wave opens. Devices of
earlier waves not yet started (outside their window, say) stay eligible. When every device
of a wave has finished and its gate can no longer be met, the campaign pauses or aborts
(``gate_action``): a failing canary stops the campaign at the canary.

The *error threshold* counts FAILED and TIMED_OUT jobs (a CANCELLED job is no verdict on
the package) among the finished ones since the start; it fires only once ``min_sample``
jobs have finished, and pauses or aborts. A resume keeps counting: resuming while the
threshold is still crossed is refused (:class:`ErrorThresholdCrossed`) unless the operator
resets the count explicitly (``reset_errors``, recorded in the state change's detail).
Abort and cancel both cancel the running jobs; pause only stops new starts.

Starting is limited by wave size, the campaign's token bucket and any shared ones
(:mod:`fotakit.updates.ratelimit`; devices started per minute, burst), the cap on
concurrent transfers (jobs started and not yet past DELIVERING), and maintenance windows
in each device's time zone (:mod:`fotakit.updates.windows`). A device refused by any of
them is deferred: it stays pending and nothing counts it as failed (§2 #5, #6, #9).

Counters (jobs by state, by failure reason) are changed by each report, never recounted
(§2 #14). Everything is JSON-serialisable (:meth:`Campaign.snapshot` /
:meth:`Campaign.restore`) so a restarted server continues exactly where it was.
Everything that affects the campaign state machine lives in this file.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Final, TypeVar

from fotakit.updates.job import JobState
from fotakit.updates.ratelimit import (
    BucketConfig,
    BucketState,
    Jitter,
    Limiter,
    RateLimitError,
    TokenBucket,
    combined_grant,
)
from fotakit.updates.targets import DeviceView, SelectionMode, SpecError, TargetSpec
from fotakit.updates.windows import (
    MaintenanceWindow,
    UnknownTimeZone,
    WindowSpecError,
    resolve_zone,
)

__all__ = [
    "PENDING",
    "TERMINAL_STATES",
    "TRANSFER_STATES",
    "TRANSITIONS",
    "Campaign",
    "CampaignSpec",
    "CampaignSpecError",
    "CampaignState",
    "Counters",
    "Decision",
    "ErrorThreshold",
    "GateAction",
    "InvalidCampaignTransition",
    "Start",
    "StateChange",
    "Trigger",
    "WaveAdvance",
    "WaveProgress",
    "WaveSpec",
]

# Job states are compared as their stable strings (``JobState`` is a StrEnum, so its members
# and the strings stored by the update store are interchangeable here).
PENDING: Final = JobState.PENDING.value
SUCCEEDED: Final = JobState.SUCCEEDED.value
FAILED: Final = JobState.FAILED.value
TIMED_OUT: Final = JobState.TIMED_OUT.value
CANCELLED: Final = JobState.CANCELLED.value
TERMINAL_STATES: Final = frozenset({SUCCEEDED, FAILED, TIMED_OUT, CANCELLED})
TRANSFER_STATES: Final = frozenset(
    s.value for s in (JobState.PENDING, JobState.WAITING, JobState.STARTING, JobState.DELIVERING)
)
"""A started job in one of these holds a transfer slot (``max_concurrent``): it has not
reached Downloaded yet (WAITING included: a job in retry backoff will transfer again)."""
_FAILURES: Final = frozenset({FAILED, TIMED_OUT})

SNAPSHOT_VERSION: Final = 1


class CampaignSpecError(SpecError):
    """A field of a :class:`CampaignSpec` is invalid; ``field`` names it."""


class CampaignState(StrEnum):
    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    ABORTED = "aborted"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (CampaignState.COMPLETED, CampaignState.ABORTED, CampaignState.CANCELLED)


class Trigger(StrEnum):
    START = "start"
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"
    ERROR_THRESHOLD_PAUSE = "error_threshold_pause"
    ERROR_THRESHOLD_ABORT = "error_threshold_abort"
    GATE_FAILED_PAUSE = "gate_failed_pause"
    GATE_FAILED_ABORT = "gate_failed_abort"
    COMPLETE = "complete"


class GateAction(StrEnum):
    """What a crossed error threshold or a failed success gate does."""

    PAUSE = "pause"
    ABORT = "abort"


_C = CampaignState
_T = Trigger

TRANSITIONS: Final[dict[tuple[CampaignState, Trigger], CampaignState]] = {
    (_C.DRAFT, _T.START): _C.RUNNING,
    (_C.DRAFT, _T.CANCEL): _C.CANCELLED,
    (_C.RUNNING, _T.PAUSE): _C.PAUSED,
    (_C.RUNNING, _T.CANCEL): _C.CANCELLED,
    (_C.RUNNING, _T.ERROR_THRESHOLD_PAUSE): _C.PAUSED,
    (_C.RUNNING, _T.ERROR_THRESHOLD_ABORT): _C.ABORTED,
    (_C.RUNNING, _T.GATE_FAILED_PAUSE): _C.PAUSED,
    (_C.RUNNING, _T.GATE_FAILED_ABORT): _C.ABORTED,
    (_C.RUNNING, _T.COMPLETE): _C.COMPLETED,
    (_C.PAUSED, _T.RESUME): _C.RUNNING,
    (_C.PAUSED, _T.CANCEL): _C.CANCELLED,
    # jobs still running while paused keep reporting; an abort threshold still fires
    (_C.PAUSED, _T.ERROR_THRESHOLD_ABORT): _C.ABORTED,
}
"""Every allowed (state, trigger) pair and the state it leads to; nothing else is allowed."""

_CANCELS_JOBS: Final = frozenset({_C.ABORTED, _C.CANCELLED})


class InvalidCampaignTransition(ValueError):
    """The table does not allow ``trigger`` in ``state``; nothing was changed."""

    def __init__(self, state: CampaignState, trigger: Trigger) -> None:
        super().__init__(f"campaign is {state.value}: {trigger.value} is not allowed")
        self.state = state
        self.trigger = trigger


class NoMatchingDevices(ValueError):
    """A snapshot campaign's target matches no device: starting it would "complete" at once
    having updated nothing, which hides a typo in the target. Nothing was changed. (A
    continuous campaign may start empty: devices join as they register.)"""

    def __init__(self, population: int) -> None:
        super().__init__(
            f"no device matches the campaign's target (of {population} known device(s)); "
            'check the target, or use mode "continuous" to admit devices that match later'
        )
        self.population = population


class ErrorThresholdCrossed(ValueError):
    """A resume while the error threshold is still crossed: the campaign would pause again
    at once. The operator resets the count explicitly (``reset_errors``). Nothing changed."""

    def __init__(self, failures: int, sample: int) -> None:
        super().__init__(
            f"the error threshold is still crossed ({failures} failed of {sample} finished): "
            "resume with reset_errors to count afresh from now"
        )
        self.failures = failures
        self.sample = sample


# -- the spec ------------------------------------------------------------------------------


def _number(value: object, name: str, *, lo: float, hi: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CampaignSpecError(name, "must be a finite number")
    if not lo <= value <= hi:
        raise CampaignSpecError(name, f"must be within {lo:g}..{hi:g}")
    return float(value)


def _integer(value: object, name: str, *, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CampaignSpecError(name, "must be an integer")
    if value < lo:
        raise CampaignSpecError(name, f"must be >= {lo}")
    return value


def _opt_integer(value: object, name: str, *, lo: int) -> int | None:
    return None if value is None else _integer(value, name, lo=lo)


@dataclass(frozen=True, slots=True)
class WaveSpec:
    """One wave after the canary: ``percent`` of the population or ``count`` devices.

    The last wave takes the rest whatever its size says (it may give neither).
    ``success_gate``: the ratio of this wave's devices that must succeed before the next
    wave may start; ``soak_s``: how long to wait after the gate is met.
    """

    percent: float | None = None
    count: int | None = None
    success_gate: float = 1.0
    soak_s: float = 0.0

    def validate(self, where: str, *, last: bool) -> None:
        if self.percent is not None and self.count is not None:
            raise CampaignSpecError(where, "give percent or count, not both")
        if self.percent is None and self.count is None and not last:
            raise CampaignSpecError(where, "give percent or count (only the last wave may omit)")
        if self.percent is not None:
            _number(self.percent, f"{where}.percent", lo=0, hi=100)
            if self.percent <= 0:
                raise CampaignSpecError(f"{where}.percent", "must be > 0")
        _opt_integer(self.count, f"{where}.count", lo=1)
        _number(self.success_gate, f"{where}.success_gate", lo=0, hi=1)
        _number(self.soak_s, f"{where}.soak_s", lo=0)

    def to_json(self) -> dict[str, Any]:
        return {
            "percent": self.percent,
            "count": self.count,
            "success_gate": self.success_gate,
            "soak_s": self.soak_s,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str) -> WaveSpec:
        _no_unknown(data, {"percent", "count", "success_gate", "soak_s"}, where)
        return cls(
            percent=data.get("percent"),
            count=data.get("count"),
            success_gate=data.get("success_gate", 1.0),
            soak_s=data.get("soak_s", 0.0),
        )


@dataclass(frozen=True, slots=True)
class ErrorThreshold:
    """Fire when ``count`` failures, or ``percent`` % of finished jobs failed, are reached.

    Both may be given (either fires). Nothing fires before ``min_sample`` jobs finished
    (AWS ``minNumberOfExecutedThings``). Failures are FAILED and TIMED_OUT jobs.
    """

    count: int | None = None
    percent: float | None = None
    min_sample: int = 1
    action: GateAction = GateAction.PAUSE

    def __post_init__(self) -> None:
        object.__setattr__(self, "action", _enum(GateAction, self.action, "error_threshold.action"))

    def validate(self) -> None:
        w = "error_threshold"
        if self.count is None and self.percent is None:
            raise CampaignSpecError(w, "give count and/or percent")
        _opt_integer(self.count, f"{w}.count", lo=1)
        if self.percent is not None:
            _number(self.percent, f"{w}.percent", lo=0, hi=100)
        _integer(self.min_sample, f"{w}.min_sample", lo=1)

    def crossed(self, sample: int, failures: int) -> bool:
        if sample < self.min_sample or failures <= 0:
            return False
        if self.count is not None and failures >= self.count:
            return True
        return self.percent is not None and failures * 100.0 >= self.percent * sample

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "percent": self.percent,
            "min_sample": self.min_sample,
            "action": str(self.action),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ErrorThreshold:
        _no_unknown(data, {"count", "percent", "min_sample", "action"}, "error_threshold")
        return cls(
            count=data.get("count"),
            percent=data.get("percent"),
            min_sample=data.get("min_sample", 1),
            action=_enum(GateAction, data.get("action", "pause"), "error_threshold.action"),
        )


_E = TypeVar("_E", bound=StrEnum)


def _enum(kind: type[_E], value: object, name: str) -> _E:
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return kind(value)
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise CampaignSpecError(name, f"must be one of {allowed}, got {value!r}") from None


def _no_unknown(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    if not isinstance(data, Mapping):
        raise CampaignSpecError(where, "must be an object")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise CampaignSpecError(f"{where}.{unknown[0]}", "unknown field")


@dataclass(frozen=True, slots=True)
class CampaignSpec:
    """Everything an operator decides about a campaign. Validated on construction.

    ``rate_per_minute``/``burst``: the campaign's own token bucket (None: no limit; burst
    defaults to 1). ``jitter_s``: each start is delayed by a per-device amount in
    ``[0, jitter_s)``. ``max_concurrent``: cap on jobs in flight before Downloaded.
    ``window``: maintenance window in each device's zone (``default_tz`` for devices
    without one). ``retry_budget``: attempts per job (handed to the job policy).
    ``parent_id``: the campaign this one retries. ``seed``: orders members and jitter.
    """

    name: str
    package_id: str
    target: TargetSpec
    mode: SelectionMode = SelectionMode.SNAPSHOT
    cap: int | None = None
    canary: int = 0
    canary_success_gate: float = 1.0
    canary_soak_s: float = 0.0
    waves: tuple[WaveSpec, ...] = (WaveSpec(),)
    error_threshold: ErrorThreshold | None = None
    gate_action: GateAction = GateAction.PAUSE
    rate_per_minute: float | None = None
    burst: int | None = None
    jitter_s: float = 0.0
    max_concurrent: int | None = None
    window: MaintenanceWindow | None = None
    default_tz: str = "UTC"
    retry_budget: int = 3
    parent_id: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("name", "package_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip() or len(value) > 255:
                raise CampaignSpecError(name, "must be a non-empty string (at most 255)")
        if not isinstance(self.target, TargetSpec):
            raise CampaignSpecError("target", "must be a TargetSpec")
        object.__setattr__(self, "mode", _enum(SelectionMode, self.mode, "mode"))
        _opt_integer(self.cap, "cap", lo=1)
        _integer(self.canary, "canary", lo=0)
        _number(self.canary_success_gate, "canary_success_gate", lo=0, hi=1)
        _number(self.canary_soak_s, "canary_soak_s", lo=0)
        if not isinstance(self.waves, tuple) or not self.waves:
            raise CampaignSpecError("waves", "must be a non-empty tuple of WaveSpec")
        total_percent = 0.0
        for i, wave in enumerate(self.waves):
            if not isinstance(wave, WaveSpec):
                raise CampaignSpecError(f"waves[{i}]", "must be a WaveSpec")
            last = i == len(self.waves) - 1
            wave.validate(f"waves[{i}]", last=last)
            if not last and wave.percent is not None:
                total_percent += wave.percent
        if total_percent > 100:
            raise CampaignSpecError("waves", "percentages before the last wave exceed 100")
        if self.error_threshold is not None:
            if not isinstance(self.error_threshold, ErrorThreshold):
                raise CampaignSpecError("error_threshold", "must be an ErrorThreshold")
            self.error_threshold.validate()
        object.__setattr__(self, "gate_action", _enum(GateAction, self.gate_action, "gate_action"))
        if self.rate_per_minute is not None:
            _number(self.rate_per_minute, "rate_per_minute", lo=0)
            if self.rate_per_minute <= 0:
                raise CampaignSpecError("rate_per_minute", "must be > 0 (None: no limit)")
        _opt_integer(self.burst, "burst", lo=1)
        if self.burst is not None and self.rate_per_minute is None:
            raise CampaignSpecError("burst", "needs rate_per_minute")
        _number(self.jitter_s, "jitter_s", lo=0)
        _opt_integer(self.max_concurrent, "max_concurrent", lo=1)
        if self.window is not None and not isinstance(self.window, MaintenanceWindow):
            raise CampaignSpecError("window", "must be a MaintenanceWindow")
        try:
            resolve_zone(self.default_tz, field="default_tz")
        except UnknownTimeZone as exc:
            raise CampaignSpecError("default_tz", str(exc)) from None
        _integer(self.retry_budget, "retry_budget", lo=0)
        if self.parent_id is not None and (
            not isinstance(self.parent_id, str) or not self.parent_id
        ):
            raise CampaignSpecError("parent_id", "must be a non-empty string or None")
        _integer(self.seed, "seed", lo=0)

    @property
    def bucket(self) -> BucketConfig | None:
        if self.rate_per_minute is None:
            return None
        return BucketConfig(self.rate_per_minute, self.burst or 1)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "package_id": self.package_id,
            "target": self.target.to_json(),
            "mode": str(self.mode),
            "cap": self.cap,
            "canary": self.canary,
            "canary_success_gate": self.canary_success_gate,
            "canary_soak_s": self.canary_soak_s,
            "waves": [w.to_json() for w in self.waves],
            "error_threshold": None
            if self.error_threshold is None
            else self.error_threshold.to_json(),
            "gate_action": str(self.gate_action),
            "rate_per_minute": self.rate_per_minute,
            "burst": self.burst,
            "jitter_s": self.jitter_s,
            "max_concurrent": self.max_concurrent,
            "window": None if self.window is None else self.window.to_json(),
            "default_tz": self.default_tz,
            "retry_budget": self.retry_budget,
            "parent_id": self.parent_id,
            "seed": self.seed,
        }

    @classmethod
    def from_json(cls, data: object) -> CampaignSpec:
        """Parse :meth:`to_json` output (missing optional fields take their defaults)."""
        if not isinstance(data, Mapping):
            raise CampaignSpecError("campaign", "must be an object")
        allowed = {f for f in cls.__dataclass_fields__}
        _no_unknown(data, allowed, "campaign")
        for required in ("name", "package_id", "target"):
            if required not in data:
                raise CampaignSpecError(required, "is required")
        kwargs: dict[str, Any] = {k: v for k, v in data.items() if v is not None}
        kwargs["target"] = TargetSpec.from_json(data["target"])
        if "mode" in kwargs:
            kwargs["mode"] = _enum(SelectionMode, kwargs["mode"], "mode")
        if "gate_action" in kwargs:
            kwargs["gate_action"] = _enum(GateAction, kwargs["gate_action"], "gate_action")
        if "waves" in kwargs:
            waves = kwargs["waves"]
            if not isinstance(waves, list):
                raise CampaignSpecError("waves", "must be a list")
            kwargs["waves"] = tuple(
                WaveSpec.from_json(w, f"waves[{i}]") for i, w in enumerate(waves)
            )
        if "error_threshold" in kwargs:
            kwargs["error_threshold"] = ErrorThreshold.from_json(kwargs["error_threshold"])
        if "window" in kwargs:
            try:
                kwargs["window"] = MaintenanceWindow.from_json(kwargs["window"])
            except WindowSpecError as exc:
                raise CampaignSpecError(exc.field, str(exc)) from None
        try:
            return cls(**kwargs)
        except RateLimitError as exc:  # pragma: no cover - validated above
            raise CampaignSpecError(exc.field, str(exc)) from None


# -- decisions -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    """Start ``endpoint``'s job (member of ``wave``) at ``not_before`` (now + its jitter)."""

    endpoint: str
    wave: int
    not_before: float


@dataclass(frozen=True, slots=True)
class WaveAdvance:
    """The current wave moves from ``from_wave`` to ``to_wave`` (= from_wave + 1), once."""

    from_wave: int
    to_wave: int
    at: float


@dataclass(frozen=True, slots=True)
class StateChange:
    """The campaign moved ``previous`` -> ``state`` because of ``trigger``."""

    previous: CampaignState
    state: CampaignState
    trigger: Trigger
    at: float
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Decision:
    """What the I/O shell must do after one input; persist it before acting on it.

    ``deferred``: how many members eligible now are kept back by their maintenance window (not a
    failure). ``wake_at``: when :meth:`Campaign.tick` has something to do next without any
    job report (a soak ends, a token refills, a window opens); None: only a report can
    change anything. ``ignored``: why an input changed nothing (for the event log).
    """

    starts: tuple[Start, ...] = ()
    cancels: tuple[str, ...] = ()
    advance: WaveAdvance | None = None
    changes: tuple[StateChange, ...] = ()
    deferred: int = 0
    wake_at: float | None = None
    ignored: str | None = None

    @property
    def change(self) -> StateChange | None:
        """The last state change, if any."""
        return self.changes[-1] if self.changes else None

    @property
    def empty(self) -> bool:
        return not (self.starts or self.cancels or self.advance or self.changes)


# -- progress ------------------------------------------------------------------------------


@dataclass(slots=True)
class Counters:
    """Jobs per state and per current failure reason, changed incrementally."""

    total: int = 0
    by_state: dict[str, int] = field(default_factory=dict)
    by_reason: dict[str, int] = field(default_factory=dict)

    def _add(self, table: dict[str, int], key: str | None, delta: int) -> None:
        if key is None:
            return
        value = table.get(key, 0) + delta
        if value:
            table[key] = value
        else:
            table.pop(key, None)

    def added(self, state: str, reason: str | None) -> None:
        self.total += 1
        self._add(self.by_state, state, 1)
        self._add(self.by_reason, reason, 1)

    def moved(self, old: tuple[str, str | None], new: tuple[str, str | None]) -> None:
        self._add(self.by_state, old[0], -1)
        self._add(self.by_reason, old[1], -1)
        self._add(self.by_state, new[0], 1)
        self._add(self.by_reason, new[1], 1)

    def as_store_keys(self) -> dict[str, int]:
        """The keys of the update store's counters: total, state:<s>, reason:<r>."""
        out = {"total": self.total}
        out.update({f"state:{k}": v for k, v in self.by_state.items()})
        out.update({f"reason:{k}": v for k, v in self.by_reason.items()})
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "by_state": dict(self.by_state),
            "by_reason": dict(self.by_reason),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Counters:
        return cls(int(data["total"]), dict(data["by_state"]), dict(data["by_reason"]))


@dataclass(slots=True)
class WaveProgress:
    """One wave's plan and progress. ``size`` grows when continuous members join it."""

    size: int
    success_gate: float
    soak_s: float
    started: int = 0
    succeeded: int = 0
    failed: int = 0
    finished: int = 0
    gate_met_at: float | None = None
    overridden: bool = False
    override: dict[str, Any] | None = None
    """When ``overridden``: ``{"by", "at", "why"}`` — who resumed past the lost gate, when,
    and what the gate lacked (a wave whose gate was overridden is not a wave that met it)."""

    @property
    def required(self) -> int:
        """Successes the gate needs."""
        return math.ceil(self.success_gate * self.size - 1e-9)

    @property
    def gate_met(self) -> bool:
        return self.overridden or self.succeeded >= self.required

    @property
    def gate_lost(self) -> bool:
        """Every device finished and the gate is not met: it never will be."""
        return not self.gate_met and self.finished >= self.size

    def to_json(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "success_gate": self.success_gate,
            "soak_s": self.soak_s,
            "started": self.started,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "finished": self.finished,
            "gate_met_at": self.gate_met_at,
            "overridden": self.overridden,
            "override": None if self.override is None else dict(self.override),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WaveProgress:
        return cls(**dict(data))


@dataclass(slots=True)
class _Member:
    endpoint: str
    wave: int
    tz: str | None
    state: str = PENDING
    reason: str | None = None
    started: bool = False

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def transferring(self) -> bool:
        return self.started and self.state in TRANSFER_STATES

    def row(self) -> list[Any]:
        return [self.endpoint, self.wave, self.tz, self.state, self.reason, self.started]


def _order_key(seed: int, endpoint: str) -> bytes:
    return hashlib.sha256(f"{seed}:{endpoint}".encode()).digest()


# -- the campaign --------------------------------------------------------------------------


class Campaign:
    """One campaign's state; every input returns a :class:`Decision`. Pure, no I/O."""

    def __init__(self, campaign_id: str, spec: CampaignSpec) -> None:
        if not isinstance(campaign_id, str) or not campaign_id:
            raise CampaignSpecError("id", "must be a non-empty string")
        self.id = campaign_id
        self.spec = spec
        self.state = CampaignState.DRAFT
        self.wave = 0
        self.waves: list[WaveProgress] = []
        self.counters = Counters()
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self._members: dict[str, _Member] = {}
        self._planned: list[int] = []  # wave sizes planned at start
        # per wave, per time zone group (see _group): members never started, in order
        self._queues: list[dict[str | None, dict[str, None]]] = []
        self._in_transfer = 0
        self._terminal = 0
        self.paused: dict[str, Any] | None = None
        """While PAUSED: ``{"trigger", "detail", "at"}`` of the change that paused it."""
        self._sample = 0  # finished (succeeded/failed/timed out) since start or error reset
        self._failures = 0
        self._bucket = None if spec.bucket is None else TokenBucket(spec.bucket)
        self._jitter = Jitter(spec.jitter_s, spec.seed)

    # -- read-only views -------------------------------------------------------------------

    @property
    def in_transfer(self) -> int:
        """Started jobs not yet past DELIVERING (what ``max_concurrent`` caps)."""
        return self._in_transfer

    @property
    def members(self) -> list[str]:
        return list(self._members)

    def member_state(self, endpoint: str) -> tuple[str, str | None] | None:
        m = self._members.get(endpoint)
        return None if m is None else (m.state, m.reason)

    def member_wave(self, endpoint: str) -> int | None:
        m = self._members.get(endpoint)
        return None if m is None else m.wave

    def is_started(self, endpoint: str) -> bool:
        m = self._members.get(endpoint)
        return m is not None and m.started

    # -- the table -------------------------------------------------------------------------

    def _fire(self, trigger: Trigger, now: float, detail: str = "") -> StateChange:
        target = TRANSITIONS.get((self.state, trigger))
        if target is None:
            raise InvalidCampaignTransition(self.state, trigger)
        change = StateChange(self.state, target, trigger, now, detail)
        self.state = target
        self.paused = (
            {"trigger": str(trigger), "detail": detail, "at": now}
            if target is CampaignState.PAUSED
            else None
        )
        if target.terminal:
            self.finished_at = now
        return change

    def can(self, trigger: Trigger) -> bool:
        return (self.state, trigger) in TRANSITIONS

    def _cancel_list(self) -> tuple[str, ...]:
        return tuple(m.endpoint for m in self._members.values() if m.started and not m.terminal)

    # -- operator triggers -----------------------------------------------------------------

    def start(
        self, now: float, population: Iterable[DeviceView], *, limiters: Sequence[Limiter] = ()
    ) -> Decision:
        """DRAFT -> RUNNING: fix the members (snapshot, or the initial ones), plan the waves.

        ``population``: every device the server knows; the target spec filters it. Members
        are ordered by a seeded hash (the canary is a pseudo-random sample), then cut to
        ``cap``. Raises :class:`UnknownTimeZone` if a matching device names an unknown zone,
        :class:`NoMatchingDevices` if a snapshot campaign would have no member.
        """
        if not self.can(Trigger.START):
            raise InvalidCampaignTransition(self.state, Trigger.START)
        population = list(population)
        chosen = self.spec.target.select(population)
        if not chosen and self.spec.mode is not SelectionMode.CONTINUOUS:
            raise NoMatchingDevices(len(population))
        for view in chosen:
            if view.tz is not None:
                resolve_zone(view.tz, field=f"device {view.endpoint!r} tz")
        chosen.sort(key=lambda v: _order_key(self.spec.seed, v.endpoint))
        if self.spec.cap is not None:
            chosen = chosen[: self.spec.cap]
        self._plan(len(chosen))
        bounds = [0]
        for size in self._planned:
            bounds.append(bounds[-1] + size)
        for i, view in enumerate(chosen):
            w = next(k for k in range(len(self.waves)) if i < bounds[k + 1])
            self._add_member(view, w)
        change = self._fire(Trigger.START, now)
        self.started_at = now
        if self._bucket is not None:
            self._bucket.state = BucketState.full(self._bucket.config, now)
        return self._merge(Decision(changes=(change,)), self.tick(now, limiters=limiters))

    def _plan(self, n: int) -> None:
        spec = self.spec
        plans: list[tuple[int, float, float]] = []
        remaining = n
        if spec.canary > 0:
            size = min(spec.canary, remaining)
            plans.append((size, spec.canary_success_gate, spec.canary_soak_s))
            remaining -= size
        for i, wave in enumerate(spec.waves):
            if i == len(spec.waves) - 1:
                size = remaining
            elif wave.count is not None:
                size = min(wave.count, remaining)
            else:
                size = min(math.ceil((wave.percent or 0.0) * n / 100.0 - 1e-9), remaining)
            plans.append((size, wave.success_gate, wave.soak_s))
            remaining -= size
        # sizes start at 0 and grow as members join; the planned sizes cut the population
        self.waves = [WaveProgress(0, gate, soak) for _, gate, soak in plans]
        self._planned = [size for size, _, _ in plans]
        self._queues = [{} for _ in self.waves]

    def _add_member(self, view: DeviceView, wave: int) -> None:
        m = _Member(view.endpoint, wave, view.tz)
        self._members[view.endpoint] = m
        self._queues[wave].setdefault(self._group(m), {})[view.endpoint] = None
        self.waves[wave].size += 1
        self.counters.added(m.state, m.reason)

    def pause(self, now: float, *, by: str = "operator") -> Decision:
        """RUNNING -> PAUSED: no new starts; running jobs continue. ``by``: who (the
        state change's detail)."""
        return Decision(changes=(self._fire(Trigger.PAUSE, now, by),))

    @property
    def error_count(self) -> tuple[int, int]:
        """What the error threshold counts: (failed or timed out, finished) jobs since the
        start or the last explicit reset."""
        return self._failures, self._sample

    def resume(
        self,
        now: float,
        *,
        limiters: Sequence[Limiter] = (),
        reset_errors: bool = False,
        by: str = "operator",
    ) -> Decision:
        """PAUSED -> RUNNING; a failed gate of the current wave is overridden (the operator
        decided to go on). The error threshold keeps counting: while it is crossed the
        resume raises :class:`ErrorThresholdCrossed`, unless ``reset_errors`` starts the
        count afresh (said in the state change's detail, so the event log keeps it).
        ``by``: who resumed (the detail; and the wave's override, if it overrides a gate)."""
        if not self.can(Trigger.RESUME):
            raise InvalidCampaignTransition(self.state, Trigger.RESUME)
        threshold = self.spec.error_threshold
        detail = by
        if reset_errors:
            detail = (
                f"{by}; error count reset (was {self._failures} failed of {self._sample} finished)"
            )
        elif threshold is not None and threshold.crossed(self._sample, self._failures):
            raise ErrorThresholdCrossed(self._failures, self._sample)
        change = self._fire(Trigger.RESUME, now, detail)
        if reset_errors:
            self._sample = self._failures = 0
        current = self.waves[self.wave] if self.waves else None
        if current is not None and current.gate_lost:
            current.override = {
                "by": by,
                "at": now,
                "why": f"{current.succeeded} of {current.size} succeeded, "
                f"gate needs {current.required}",
            }
            current.overridden = True
            current.gate_met_at = now
        return self._merge(Decision(changes=(change,)), self.tick(now, limiters=limiters))

    def cancel(self, now: float) -> Decision:
        """-> CANCELLED: no new jobs; every started, unfinished job gets a cancel."""
        change = self._fire(Trigger.CANCEL, now, "operator")
        return Decision(changes=(change,), cancels=self._cancel_list())

    # -- late devices ----------------------------------------------------------------------

    def offer(self, view: DeviceView, now: float) -> bool:
        """A device registered or changed: in continuous mode it joins if it matches and
        the cap allows (into the last wave). Returns whether it joined."""
        if (
            self.spec.mode is not SelectionMode.CONTINUOUS
            or self.state not in (CampaignState.RUNNING, CampaignState.PAUSED)
            or view.endpoint in self._members
            or (self.spec.cap is not None and len(self._members) >= self.spec.cap)
            or not self.spec.target.matches(view)
        ):
            return False
        if view.tz is not None:
            resolve_zone(view.tz, field=f"device {view.endpoint!r} tz")
        self._add_member(view, len(self.waves) - 1)
        return True

    # -- job reports -----------------------------------------------------------------------

    def on_job_state(self, endpoint: str, state: str, reason: str | None, now: float) -> Decision:
        """A member's job is now in ``state`` (a ``JobState``) with ``reason``.

        Terminal states are final: later reports for that member are ignored, as are
        reports for non-members. Counters change by exactly this move.
        """
        m = self._members.get(endpoint)
        if m is None:
            return Decision(ignored=f"{endpoint!r} is not a member")
        if m.terminal:
            return Decision(ignored=f"{endpoint!r} already finished ({m.state})")
        state, reason = str(state), None if reason is None else str(reason)
        if (state, reason) == (m.state, m.reason) and (m.started or state == PENDING):
            return Decision(ignored="no change")
        was_transfer = m.transferring
        if not m.started and state != PENDING:
            # a job we did not see start (e.g. created before a restart): count it started
            self._mark_started(m)
        self.counters.moved((m.state, m.reason), (state, reason))
        m.state, m.reason = state, reason
        self._in_transfer += int(m.transferring) - int(was_transfer)
        if not m.terminal:
            return Decision()
        self._terminal += 1
        wave = self.waves[m.wave]
        wave.finished += 1
        if state == SUCCEEDED:
            wave.succeeded += 1
        elif state in _FAILURES:
            wave.failed += 1
        if state != CANCELLED:
            self._sample += 1
            self._failures += int(state in _FAILURES)
        if wave.gate_met and wave.gate_met_at is None:
            wave.gate_met_at = now
        return self._check_errors(now)

    def on_job_created(self, endpoint: str, now: float) -> Decision:
        """A job exists for this member (found in the store, e.g. when replaying the jobs
        table onto an older snapshot after a restart): it counts as started and is never
        started again. Idempotent."""
        m = self._members.get(endpoint)
        if m is None:
            return Decision(ignored=f"{endpoint!r} is not a member")
        if m.started:
            return Decision(ignored="already started")
        self._mark_started(m)
        self._in_transfer += int(m.transferring)
        return Decision()

    def on_job_finished(
        self, endpoint: str, state: str, reason: str | None, now: float
    ) -> Decision:
        """Alias of :meth:`on_job_state` for a terminal state."""
        return self.on_job_state(endpoint, state, reason, now)

    def _mark_started(self, m: _Member) -> None:
        m.started = True
        self.waves[m.wave].started += 1
        queues = self._queues[m.wave]
        group = queues.get(self._group(m))
        if group is not None:
            group.pop(m.endpoint, None)
            if not group:
                del queues[self._group(m)]

    def _group(self, m: _Member) -> str | None:
        """Members wait in one queue per time zone when there is a window, else in one."""
        return m.tz if self.spec.window is not None else None

    def _check_errors(self, now: float) -> Decision:
        threshold = self.spec.error_threshold
        if threshold is None or not threshold.crossed(self._sample, self._failures):
            return Decision()
        detail = f"{self._failures} failed of {self._sample} finished"
        trigger = (
            Trigger.ERROR_THRESHOLD_ABORT
            if threshold.action is GateAction.ABORT
            else Trigger.ERROR_THRESHOLD_PAUSE
        )
        if not self.can(trigger):
            return Decision()
        change = self._fire(trigger, now, detail)
        cancels = self._cancel_list() if change.state in _CANCELS_JOBS else ()
        return Decision(changes=(change,), cancels=cancels)

    # -- time ------------------------------------------------------------------------------

    def tick(self, now: float, *, limiters: Sequence[Limiter] = ()) -> Decision:
        """Advance the wave, complete, or start devices: whatever is due at ``now``.

        ``limiters``: shared token buckets (the global one; put one backed by the
        database last) applied on top of the campaign's own bucket.
        """
        if self.state is not CampaignState.RUNNING:
            return Decision()
        errors = self._check_errors(now)
        if errors.changes:
            return errors
        wakes: list[float] = []
        current = self.waves[self.wave]
        if current.gate_met and current.gate_met_at is None:
            current.gate_met_at = now
        if self._complete_due():
            return Decision(changes=(self._fire(Trigger.COMPLETE, now),))
        advance: WaveAdvance | None = None
        if self.wave < len(self.waves) - 1:
            if current.gate_lost:
                detail = (
                    f"wave {self.wave}: {current.succeeded} of {current.size} succeeded, "
                    f"gate needs {current.required}"
                )
                trigger = (
                    Trigger.GATE_FAILED_ABORT
                    if self.spec.gate_action is GateAction.ABORT
                    else Trigger.GATE_FAILED_PAUSE
                )
                change = self._fire(trigger, now, detail)
                cancels = self._cancel_list() if change.state in _CANCELS_JOBS else ()
                return Decision(changes=(change,), cancels=cancels)
            if current.gate_met_at is not None:
                opens = current.gate_met_at + current.soak_s
                if now >= opens:
                    advance = WaveAdvance(self.wave, self.wave + 1, now)
                    self.wave += 1
                    wakes.append(now)  # the new wave may be empty: look again at once
                else:
                    wakes.append(opens)
        starts, deferred, wake = self._starts(now, limiters)
        if wake is not None:
            wakes.append(wake)
        return Decision(
            starts=starts,
            advance=advance,
            deferred=deferred,
            wake_at=min(wakes) if wakes else None,
        )

    def _complete_due(self) -> bool:
        if self._terminal < len(self._members) or self.wave < len(self.waves) - 1:
            return False
        if self.spec.mode is SelectionMode.CONTINUOUS:
            return self.spec.cap is not None and len(self._members) >= self.spec.cap
        return True

    def _starts(
        self, now: float, limiters: Sequence[Limiter]
    ) -> tuple[tuple[Start, ...], int, float | None]:
        room = math.inf
        if self.spec.max_concurrent is not None:
            room = self.spec.max_concurrent - self._in_transfer
        window = self.spec.window
        eligible: list[_Member] = []
        deferred = 0
        wake: float | None = None
        for w in range(self.wave + 1):
            for zone, group in self._queues[w].items():
                if window is not None:
                    # one group per zone: a closed window skips the group in O(1)
                    opens = window.next_open(now, zone, default_tz=self.spec.default_tz)
                    if opens is None or opens > now:
                        deferred += len(group)
                        if opens is not None:
                            wake = opens if wake is None else min(wake, opens)
                        continue
                for endpoint in group:
                    if len(eligible) >= room:
                        break
                    eligible.append(self._members[endpoint])
        if not eligible:
            return (), deferred, wake
        chain: list[Limiter] = [] if self._bucket is None else [self._bucket]
        chain.extend(limiters)
        granted = combined_grant(chain, len(eligible), now) if chain else len(eligible)
        if granted < len(eligible):
            # every bucket must hold a token again
            refill = max(limiter.next_available_at(now) for limiter in chain)
            wake = refill if wake is None else min(wake, refill)
        starts: list[Start] = []
        for m in eligible[:granted]:
            self._mark_started(m)
            self._in_transfer += int(m.transferring)
            starts.append(Start(m.endpoint, m.wave, now + self._jitter.delay(m.endpoint)))
        return tuple(starts), deferred, wake

    @staticmethod
    def _merge(first: Decision, second: Decision) -> Decision:
        return Decision(
            starts=first.starts + second.starts,
            cancels=first.cancels + second.cancels,
            advance=first.advance or second.advance,
            changes=first.changes + second.changes,
            deferred=second.deferred,
            wake_at=second.wake_at,
        )

    # -- retry -----------------------------------------------------------------------------

    def failed_endpoints(self) -> list[str]:
        """Members whose job ended FAILED or TIMED_OUT, in member order."""
        return [m.endpoint for m in self._members.values() if m.state in _FAILURES]

    def retry_failed(self, *, name: str | None = None) -> CampaignSpec:
        """A child spec over exactly the failed and timed-out members (parent_id = our id).

        The child keeps the package, device class, waves, gates and limits; it is a
        snapshot campaign over that explicit endpoint list. Raises ``ValueError`` when no
        member failed.
        """
        endpoints = self.failed_endpoints()
        if not endpoints:
            raise ValueError(f"campaign {self.id}: no failed or timed-out members to retry")
        target = TargetSpec(device_class=self.spec.target.device_class, endpoints=tuple(endpoints))
        return replace(
            self.spec,
            name=name or f"{self.spec.name} (retry)"[:255],
            target=target,
            mode=SelectionMode.SNAPSHOT,
            cap=None,
            parent_id=self.id,
        )

    # -- persistence -----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything, JSON-able; :meth:`restore` gives a campaign that decides the same."""
        return {
            "version": SNAPSHOT_VERSION,
            "id": self.id,
            "spec": self.spec.to_json(),
            "state": str(self.state),
            "wave": self.wave,
            "waves": [w.to_json() for w in self.waves],
            "planned": list(self._planned),
            "counters": self.counters.to_json(),
            "members": [m.row() for m in self._members.values()],
            "queues": [[[zone, list(group)] for zone, group in q.items()] for q in self._queues],
            "in_transfer": self._in_transfer,
            "terminal": self._terminal,
            "sample": self._sample,
            "failures": self._failures,
            "paused": self.paused,
            "bucket": None if self._bucket is None else self._bucket.state.to_json(),
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }

    @classmethod
    def restore(cls, data: Mapping[str, Any]) -> Campaign:
        if data.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"campaign snapshot version {data.get('version')!r} unsupported")
        c = cls(str(data["id"]), CampaignSpec.from_json(data["spec"]))
        c.state = CampaignState(data["state"])
        c.wave = int(data["wave"])
        c.waves = [WaveProgress.from_json(w) for w in data["waves"]]
        c._planned = [int(x) for x in data["planned"]]
        c.counters = Counters.from_json(data["counters"])
        for endpoint, wave, tz, state, reason, started in data["members"]:
            c._members[endpoint] = _Member(endpoint, wave, tz, state, reason, started)
        c._queues = [{zone: dict.fromkeys(group) for zone, group in q} for q in data["queues"]]
        c._in_transfer = int(data["in_transfer"])
        c._terminal = int(data["terminal"])
        c._sample = int(data["sample"])
        c._failures = int(data["failures"])
        c.paused = data.get("paused")  # absent in snapshots written before it existed
        if c._bucket is not None and data["bucket"] is not None:
            c._bucket.state = BucketState.from_json(data["bucket"])
        c.started_at = data["started_at"]
        c.finished_at = data["finished_at"]
        return c
