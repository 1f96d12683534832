"""Delivery choice for one update job, pure: pull or push, which URI, how long to wait.

Inputs are what the device says about itself (Object 5 resources /5/0/8 Firmware Update
Protocol Support and /5/0/9 Firmware Update Delivery Method, Object 4 radio figures,
the RTT the server observed) and what the repository offers for the package (CoAP and
HTTP URIs of the signed package and of the bare payload, and their sizes). Nothing here
does I/O; :func:`choose_delivery` returns a :class:`DeliveryPlan` the job acts on.

Rules (OMA LwM2M TS Core 1.2 Appendix E.6 and the Object 5 registry ``5.xml``):

- /5/0/8 lists the pull protocols; an empty or unreadable list means CoAP only ("CoAP is
  the default setting"), values we do not know are ignored ("MUST be ignored"), and the
  server "MUST NOT include a URI … that uses a protocol that is unsupported".
- /5/0/9: 0 pull only, 1 push only, 2 both (the server may choose), unknown -> pull.
- Pull is preferred whenever the device can pull: push "completely blocks the client"
  (Anjay) and times out on real image sizes (Leshan #1394). With ``prefer_pull=False``
  push is chosen for a device doing both only when its link is good enough.
- Push needs a good link (:func:`link_good_for_push`): a push-only device on a poor link
  is told to wait (:attr:`Choice.WAIT`), never pushed into a sure timeout.
- The URI scheme: the first of ``DeliveryPolicy.protocol_order`` (default ``coap``,
  ``coaps``, ``http``, ``https``) that the repository offers a URI for *and* the device
  lists in /5/0/8; schemes in ``exclude`` (tried and refused by this device, see
  ``docs/operator-guide.md`` "protocol fallback") are skipped. The plan records the scheme
  it chose (:attr:`DeliveryPlan.protocol`). A URI longer than the 255 bytes Package URI
  /5/0/1 holds is never written.
- ``DeliveryPolicy.allow_push=False`` never pushes: a push-only device then has no
  delivery method (``no_delivery_method``, the reason names the setting).
- The form: the signed package (fotakit agents verify it) or, for device classes that
  expect their own image format (``JobTarget.bare_payload``), the bare payload.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any, Final

from fotakit.lwm2m.objects import DeliveryMethod, NetworkBearer, UpdateProtocol
from fotakit.updates.reasons import FailureReason

#: The longest Package URI /5/0/1 holds (its range is 0..255 bytes).
MAX_URI_BYTES: Final = 255
#: CoAP block size used for push and (by default) assumed for CoAP pull (RFC 7959 SZX 6).
DEFAULT_BLOCK_SIZE: Final = 1024

_LTE_LIKE: Final = frozenset(
    {
        NetworkBearer.LTE_TDD,
        NetworkBearer.LTE_FDD,
        NetworkBearer.NB_IOT,
        NetworkBearer.NR_TDD,
        NetworkBearer.NR_FDD,
    }
)


@dataclass(frozen=True, slots=True)
class RadioFigures:
    """Object 4 figures: /4/0/0 bearer, /4/0/2 Radio Signal Strength (dBm), /4/0/3 Link
    Quality (its unit depends on the bearer: RSRQ/NRSRQ dB on LTE/NR, RxQual 0..7 on GSM,
    LQI 0..255 elsewhere), /4/0/11 SignalSNR (dB). None: not reported."""

    bearer: int | None = None
    rssi_dbm: int | None = None
    link_quality: int | None = None
    snr_db: int | None = None


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """What is known about one device. ``None`` always means "not read / not there".

    Registration-level facts (version, queue mode, lifetime) come from the server's
    registration; the rest from reads of /5/0, /3/0/3 and /4/0. A later read replaces
    only the fields it carries (:meth:`merged`).
    """

    endpoint: str = ""
    lwm2m_version: str | None = None
    queue_mode: bool | None = None
    lifetime_s: int | None = None
    protocols: tuple[int, ...] | None = None
    """/5/0/8 raw values (unknown values kept, ignored by the choice)."""
    delivery_method: int | None = None
    """/5/0/9: 0 pull, 1 push, 2 both."""
    firmware_version: str | None = None
    """/3/0/3 Firmware Version."""
    pkg_version: str | None = None
    """/5/0/7 PkgVersion."""
    fw_state: int | None = None
    """/5/0/3 State."""
    fw_result: int | None = None
    """/5/0/5 Update Result."""
    severity: int | None = None
    """/5/0/11 Severity (object 1.1)."""
    max_defer_s: int | None = None
    """/5/0/13 Maximum Defer Period (object 1.1); 0 forbids deferral."""
    auto_upgrade: bool | None = None
    """/5/0/14 Automatic Upgrade at Download (object 1.2)."""
    has_cancel: bool | None = None
    """/5/0/10 Cancel is there (from the registration links or the object version)."""
    radio: RadioFigures | None = None
    rtt_s: float | None = None
    """Round-trip time the server observed for this device (seconds)."""

    def merged(self, newer: DeviceFacts) -> DeviceFacts:
        """These facts updated by every field ``newer`` carries (not None)."""
        changes = {
            name: getattr(newer, name)
            for name in _FACT_FIELDS
            if getattr(newer, name) is not None and (name != "endpoint" or newer.endpoint)
        }
        return _replace(self, changes)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in _FACT_FIELDS}
        out["protocols"] = list(self.protocols) if self.protocols is not None else None
        out["radio"] = (
            None
            if self.radio is None
            else {
                "bearer": self.radio.bearer,
                "rssi_dbm": self.radio.rssi_dbm,
                "link_quality": self.radio.link_quality,
                "snr_db": self.radio.snr_db,
            }
        )
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> DeviceFacts:
        values: dict[str, Any] = {name: raw.get(name) for name in _FACT_FIELDS}
        if values["protocols"] is not None:
            values["protocols"] = tuple(values["protocols"])
        if values["radio"] is not None:
            values["radio"] = RadioFigures(**values["radio"])
        if values["endpoint"] is None:
            values["endpoint"] = ""
        return cls(**values)


_FACT_FIELDS: Final = tuple(DeviceFacts.__dataclass_fields__)


def _replace(facts: DeviceFacts, changes: dict[str, Any]) -> DeviceFacts:
    values = {name: getattr(facts, name) for name in _FACT_FIELDS}
    values.update(changes)
    return DeviceFacts(**values)


@dataclass(frozen=True, slots=True)
class JobTarget:
    """The package one job installs, as the repository serves it.

    ``uri_*`` are the Package URIs of the two forms (``None``: not offered); ``size`` is
    the signed package, ``payload_size`` the bare payload. ``bare_payload`` is True for
    device classes that expect their own image format (third-party clients): they get
    the payload form, fotakit agents the signed package.
    """

    package_id: str
    version: str
    size: int
    uri_coap: str | None = None
    uri_http: str | None = None
    uri_coap_payload: str | None = None
    uri_http_payload: str | None = None
    payload_size: int | None = None
    bare_payload: bool = False

    @property
    def form(self) -> str:
        """``"payload"`` or ``"package"``: which representation this device gets."""
        return "payload" if self.bare_payload else "package"

    @property
    def delivered_size(self) -> int:
        """Bytes the device receives in its form."""
        if self.bare_payload and self.payload_size is not None:
            return self.payload_size
        return self.size

    def offered_uris(self) -> dict[str, str]:
        """The URIs of this device's form by scheme (``coap``, ``coaps``, ``http``,
        ``https``: the base URIs of the repository decide which are offered)."""
        uris = (
            (self.uri_coap_payload, self.uri_http_payload)
            if self.bare_payload
            else (self.uri_coap, self.uri_http)
        )
        out: dict[str, str] = {}
        for uri in uris:
            if uri is not None and "://" in uri:
                out.setdefault(uri.split("://", 1)[0].lower(), uri)
        return out

    def uri_for(self, protocol: UpdateProtocol) -> str | None:
        """The URI of this device's form for a pull protocol (None if not offered)."""
        return self.offered_uris().get(protocol.scheme)

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _TARGET_FIELDS}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> JobTarget:
        return cls(**{name: raw[name] for name in _TARGET_FIELDS if name in raw})


_TARGET_FIELDS: Final = tuple(JobTarget.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """Thresholds of the delivery choice and of transfer timeouts (all configurable).

    Radio thresholds are checked only for figures the device reports; a threshold of
    None is not checked. ``rssi_min_dbm`` applies to /4/0/2 on every bearer;
    ``rsrq_min_db`` to /4/0/3 on LTE/NB-IoT/NR (RSRQ, NRSRQ, higher is better);
    ``lqi_min`` to /4/0/3 on other non-GSM bearers (LQI 0..255, higher is better);
    ``rxqual_max`` to /4/0/3 on GSM (RxQual 0..7, lower is better).
    """

    prefer_pull: bool = True
    push_max_bytes: int | None = None
    """Never push packages larger than this (None: no limit)."""
    push_when_radio_unknown: bool = True
    """Whether a push-only device that reports no /4 figures is pushed (else waits)."""
    rssi_min_dbm: int | None = -110
    rsrq_min_db: int | None = -15
    lqi_min: int | None = None
    rxqual_max: int | None = 5
    snr_min_db: int | None = None
    push_forbidden_bearers: frozenset[int] = field(default_factory=frozenset)
    """Bearers never pushed to (e.g. NB-IoT); pull or wait instead."""
    block_size: int = DEFAULT_BLOCK_SIZE
    default_rtt_s: float = 2.0
    """RTT assumed when none was observed (CoAP ACK_TIMEOUT, RFC 7252 §4.8)."""
    rtt_floor_s: float = 0.05
    transfer_factor: float = 4.0
    """Safety factor on the expected transfer time."""
    transfer_floor_s: float = 60.0
    """No transfer timeout is shorter than this."""
    link_rate_bps: float | None = None
    """Assumed link rate in bytes/s, added as ``size / rate`` (None: RTT-bound only)."""
    protocol_order: tuple[str, ...] = ("coap", "coaps", "http", "https")
    """Pull URI schemes in order of preference; only schemes the repository offers a URI
    for and the device lists in /5/0/8 are used."""
    allow_push: bool = True
    """False: never push /5/0/0 (a push-only device fails ``no_delivery_method``)."""


class Choice(enum.StrEnum):
    """What the job should do to get the package onto the device."""

    PULL = "pull"
    """Write the Package URI /5/0/1; the device downloads."""
    PUSH = "push"
    """Write the Package /5/0/0 with Block1."""
    WAIT = "wait"
    """Push-only device on a link too poor to push now: ask again later."""
    NONE = "none"
    """No way to deliver; :attr:`DeliveryPlan.failure` says why."""


@dataclass(frozen=True, slots=True)
class DeliveryPlan:
    choice: Choice
    reason: str
    """Why, in words, for the event log."""
    uri: str | None = None
    """The Package URI to write (PULL)."""
    form: str = "package"
    """``"package"`` or ``"payload"``: what is pulled or pushed."""
    size: int = 0
    """Bytes the device receives."""
    timeout_s: float = 0.0
    """How long the transfer may take (:func:`transfer_timeout`)."""
    failure: FailureReason | None = None
    protocol: str | None = None
    """The URI scheme pulled over (PULL), e.g. ``"coap"``; None otherwise."""

    def to_json(self) -> dict[str, Any]:
        return {
            "choice": str(self.choice),
            "reason": self.reason,
            "uri": self.uri,
            "protocol": self.protocol,
            "form": self.form,
            "size": self.size,
            "timeout_s": self.timeout_s,
            "failure": None if self.failure is None else str(self.failure),
        }


def transfer_timeout(
    size: int,
    rtt_s: float | None,
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
    factor: float = 4.0,
    floor_s: float = 60.0,
    default_rtt_s: float = 2.0,
    rtt_floor_s: float = 0.05,
    link_rate_bps: float | None = None,
) -> float:
    """How long a block-wise transfer of ``size`` bytes may take, in seconds.

    Block-wise CoAP (RFC 7959) moves one block per round trip (lock-step), so::

        blocks  = ceil(size / block_size)
        rtt     = max(rtt_s if observed else default_rtt_s, rtt_floor_s)
        expect  = blocks * rtt + (size / link_rate_bps if a link rate is given)
        timeout = max(floor_s, factor * expect)

    ``factor`` (default 4) absorbs retransmissions (a lost block costs ACK_TIMEOUT 2-3 s,
    RFC 7252 §4.8) and RTT variation; the floor covers tiny packages. Example: 500 KB
    at 100 ms RTT = 489 blocks -> 48.9 s expected -> 195.6 s, where a fixed 120 s (Leshan,
    ThingsBoard) fails; 2 MB at unknown RTT -> 2048 blocks * 2 s * 4 = 16384 s.
    """
    if size < 0:
        raise ValueError(f"negative size {size}")
    if block_size <= 0:
        raise ValueError(f"block size must be positive, not {block_size}")
    blocks = max(1, math.ceil(size / block_size))
    rtt = max(rtt_s if rtt_s is not None and rtt_s > 0 else default_rtt_s, rtt_floor_s)
    expect = blocks * rtt
    if link_rate_bps is not None and link_rate_bps > 0:
        expect += size / link_rate_bps
    return max(floor_s, factor * expect)


def policy_transfer_timeout(size: int, rtt_s: float | None, policy: DeliveryPolicy) -> float:
    """:func:`transfer_timeout` with the figures of ``policy``."""
    return transfer_timeout(
        size,
        rtt_s,
        block_size=policy.block_size,
        factor=policy.transfer_factor,
        floor_s=policy.transfer_floor_s,
        default_rtt_s=policy.default_rtt_s,
        rtt_floor_s=policy.rtt_floor_s,
        link_rate_bps=policy.link_rate_bps,
    )


def link_good_for_push(radio: RadioFigures | None, policy: DeliveryPolicy) -> tuple[bool, str]:
    """Whether the reported radio figures allow a push, and why (for the event log).

    Each threshold is checked only when the device reports the figure (see
    :class:`DeliveryPolicy`). No figures at all -> ``policy.push_when_radio_unknown``.
    """
    if radio is None or all(
        v is None for v in (radio.bearer, radio.rssi_dbm, radio.link_quality, radio.snr_db)
    ):
        ok = policy.push_when_radio_unknown
        return ok, "no radio figures" + ("" if ok else " (push not allowed blind)")
    bearer = radio.bearer
    if bearer is not None and bearer in policy.push_forbidden_bearers:
        return False, f"bearer {bearer} is never pushed to"
    if (
        policy.rssi_min_dbm is not None
        and radio.rssi_dbm is not None
        and radio.rssi_dbm < policy.rssi_min_dbm
    ):
        return False, f"signal {radio.rssi_dbm} dBm < {policy.rssi_min_dbm} dBm"
    lq = radio.link_quality
    if lq is not None and bearer is not None:
        if bearer in _LTE_LIKE:
            if policy.rsrq_min_db is not None and lq < policy.rsrq_min_db:
                return False, f"link quality (RSRQ) {lq} dB < {policy.rsrq_min_db} dB"
        elif bearer == NetworkBearer.GSM:
            if policy.rxqual_max is not None and lq > policy.rxqual_max:
                return False, f"link quality (RxQual) {lq} > {policy.rxqual_max}"
        elif policy.lqi_min is not None and lq < policy.lqi_min:
            return False, f"link quality (LQI) {lq} < {policy.lqi_min}"
    if policy.snr_min_db is not None and radio.snr_db is not None:
        if radio.snr_db < policy.snr_min_db:
            return False, f"SNR {radio.snr_db} dB < {policy.snr_min_db} dB"
    return True, "link good enough"


def supported_protocols(facts: DeviceFacts) -> frozenset[UpdateProtocol]:
    """/5/0/8 as known protocols; empty or unreadable -> CoAP only (the spec default)."""
    known = set()
    for value in facts.protocols or ():
        try:
            known.add(UpdateProtocol(value))
        except ValueError:
            continue  # unknown values "MUST be ignored"
    return frozenset(known) if known else frozenset({UpdateProtocol.COAP})


def _delivery_method(facts: DeviceFacts) -> DeliveryMethod:
    """/5/0/9, unknown or unreadable -> pull."""
    if facts.delivery_method is None:
        return DeliveryMethod.PULL_ONLY
    try:
        return DeliveryMethod(facts.delivery_method)
    except ValueError:
        return DeliveryMethod.PULL_ONLY


def _pull_uri(
    facts: DeviceFacts, target: JobTarget, policy: DeliveryPolicy, exclude: frozenset[str]
) -> tuple[str | None, str | None, str]:
    """The URI to write and its scheme, or None and why there is none."""
    protocols = supported_protocols(facts)
    offered = target.offered_uris()
    too_long: list[str] = []
    skipped: list[str] = []
    for scheme in policy.protocol_order:
        uri = offered.get(scheme)
        protocol = UpdateProtocol.from_scheme(scheme)
        if uri is None or protocol is None or protocol not in protocols:
            continue
        if scheme in exclude:
            skipped.append(scheme)
            continue
        if len(uri.encode("utf-8")) > MAX_URI_BYTES:
            too_long.append(scheme)
            continue
        return uri, scheme, f"{scheme} is supported (/5/0/8)"
    if too_long:
        return None, None, f"URI longer than {MAX_URI_BYTES} bytes ({', '.join(too_long)})"
    if not offered:
        return None, None, f"the repository offers no URI for the {target.form} form"
    if skipped:
        return None, None, f"{', '.join(skipped)} already refused by the device"
    names = ", ".join(sorted(p.scheme for p in protocols))
    return None, None, f"no offered scheme among the supported ones ({names})"


def choose_delivery(
    facts: DeviceFacts,
    target: JobTarget,
    policy: DeliveryPolicy,
    *,
    exclude: frozenset[str] = frozenset(),
) -> DeliveryPlan:
    """Pull or push, with the URI and the transfer timeout (see the module docstring).
    ``exclude``: URI schemes not to pull over (the device refused them)."""
    method = _delivery_method(facts)
    size = target.delivered_size
    timeout = policy_transfer_timeout(size, facts.rtt_s, policy)
    form = target.form
    can_pull = method is not DeliveryMethod.PUSH_ONLY
    device_pushes = method is not DeliveryMethod.PULL_ONLY
    can_push = device_pushes and policy.allow_push
    uri, scheme, uri_why = (
        _pull_uri(facts, target, policy, exclude)
        if can_pull
        else (None, None, "device does not pull")
    )
    push_size_ok = policy.push_max_bytes is None or size <= policy.push_max_bytes
    link_ok, link_why = link_good_for_push(facts.radio, policy)

    def pull(why: str) -> DeliveryPlan:
        return DeliveryPlan(
            Choice.PULL, why, uri=uri, form=form, size=size, timeout_s=timeout, protocol=scheme
        )

    def push(why: str) -> DeliveryPlan:
        return DeliveryPlan(Choice.PUSH, why, form=form, size=size, timeout_s=timeout)

    if can_pull and can_push and uri is not None:
        if policy.prefer_pull:
            return pull(f"both supported, pull preferred; {uri_why}")
        if push_size_ok and link_ok:
            return push(f"both supported, push preferred and {link_why}")
        why = link_why if not link_ok else f"{size} bytes > push limit {policy.push_max_bytes}"
        return pull(f"both supported, push not possible now ({why}); {uri_why}")
    if uri is not None:
        return pull(f"pull only (/5/0/9); {uri_why}")
    if can_push:
        if not push_size_ok:
            return DeliveryPlan(
                Choice.NONE,
                f"push only and {size} bytes > push limit {policy.push_max_bytes}",
                form=form,
                size=size,
                failure=FailureReason.NO_DELIVERY_METHOD,
            )
        if not link_ok:
            return DeliveryPlan(
                Choice.WAIT, f"push only and {link_why}", form=form, size=size, timeout_s=timeout
            )
        why = "push only (/5/0/9)" if not can_pull else f"cannot pull: {uri_why}"
        return push(f"{why}; {link_why}")
    failure = (
        FailureReason.URI_TOO_LONG
        if uri_why.startswith("URI longer")
        else FailureReason.NO_DELIVERY_METHOD
    )
    why = f"cannot pull: {uri_why}"
    if device_pushes and not policy.allow_push:
        why += "; push not allowed (allow_push=False)"
    return DeliveryPlan(Choice.NONE, why, form=form, size=size, failure=failure)


__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "MAX_URI_BYTES",
    "Choice",
    "DeliveryPlan",
    "DeliveryPolicy",
    "DeviceFacts",
    "JobTarget",
    "RadioFigures",
    "choose_delivery",
    "link_good_for_push",
    "policy_transfer_timeout",
    "supported_protocols",
    "transfer_timeout",
]
