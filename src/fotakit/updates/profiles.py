"""Device profiles: how one class of devices is updated, pure (no I/O).

Devices differ in what they accept, and the server cannot guess it from the LwM2M
objects alone. A fotakit agent verifies the signed package (docs/package-format.md); a
stock third-party device checks its *own* image format (a vendor header and CRC) and
answers Update Result 6 "Unsupported package type" to anything else. Some clients list
several pull protocols in /5/0/8 Firmware Update Protocol Support but work better with
one; some must never be pushed to (/5/0/0 Block1 blocks the whole client). A
:class:`DeviceProfile` says, per device class:

``payload_form``
    ``signed``: the whole signed package (``/fw/<id>``), for devices that verify it
    (fotakit agents); ``bare``: the bare payload (``/fw/<id>/payload``), for devices
    that verify their own image format.
``protocols``
    Pull protocols in order of preference (``coap``, ``coaps``, ``http``, ``https``).
    Only protocols the device lists in /5/0/8 and the repository offers a URI for are
    used; the job falls back to the next one when the device answers Result 9
    "Unsupported protocol" or loses the download twice on one protocol.
``push``
    Whether the server may write the package into /5/0/0 (Block1) at all.
``timeouts``
    Per-state deadlines of the update job (seconds), overriding the server's defaults:
    ``start``, ``downloading``, ``downloaded``, ``updating``, ``reregistration``.

Which profile applies (:func:`resolve`): the profile named like the device's class
(/3/0/1 Model Number, see :mod:`fotakit.updates.inventory`), else the profile named
``default`` when the operator stored one, else :data:`BUILTIN_DEFAULT` (signed package,
CoAP first, push allowed, the server's timeouts). The choice and its reason go to the
device's event log when a job starts.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from fotakit.updates.job import JobPolicy

__all__ = [
    "BUILTIN_DEFAULT",
    "DEFAULT_PROFILE",
    "PAYLOAD_FORMS",
    "PROTOCOLS",
    "TIMEOUT_KEYS",
    "DeviceProfile",
    "ProfileError",
    "resolve",
]

PayloadForm = Literal["signed", "bare"]

DEFAULT_PROFILE: Final = "default"
"""The name of the profile used for devices whose class has none."""
PAYLOAD_FORMS: Final = ("signed", "bare")
PROTOCOLS: Final = ("coap", "coaps", "http", "https")
"""Pull protocols a profile may name (/5/0/8 values 0-3, LwM2M TS 1.2 E.6)."""
TIMEOUT_KEYS: Final = {
    "start": "start_timeout_s",
    "downloading": "downloading_timeout_s",
    "downloaded": "downloaded_timeout_s",
    "updating": "updating_timeout_s",
    "reregistration": "reregistration_timeout_s",
}
"""Profile timeout names -> the :class:`~fotakit.updates.job.JobPolicy` field they set."""
_FIELDS: Final = frozenset({"name", "payload_form", "protocols", "push", "timeouts", "description"})
NAME_MAX: Final = 128
TIMEOUT_MAX_S: Final = 7 * 86400.0
DESCRIPTION_MAX: Final = 500


class ProfileError(ValueError):
    """A profile that cannot be stored; the message names the field and the rule."""


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name:
        raise ProfileError("name must be a non-empty string (a device class or 'default')")
    if len(name) > NAME_MAX:
        raise ProfileError(f"name longer than {NAME_MAX} characters")
    if not name.isprintable():
        raise ProfileError("name must contain printable characters only")
    if name != name.strip():
        raise ProfileError("name must not start or end with whitespace")


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    """How the devices of one class are updated (see the module docstring)."""

    name: str
    payload_form: PayloadForm = "signed"
    protocols: tuple[str, ...] = PROTOCOLS
    push: bool = True
    timeouts: Mapping[str, float] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.payload_form not in PAYLOAD_FORMS:
            raise ProfileError(
                f"payload_form must be one of {', '.join(PAYLOAD_FORMS)}, not {self.payload_form!r}"
            )
        if not self.protocols:
            raise ProfileError("protocols must name at least one protocol")
        for p in self.protocols:
            if p not in PROTOCOLS:
                raise ProfileError(
                    f"protocols: unknown protocol {p!r} (known: {', '.join(PROTOCOLS)})"
                )
        if len(set(self.protocols)) != len(self.protocols):
            raise ProfileError("protocols: each protocol at most once")
        for key, value in self.timeouts.items():
            if key not in TIMEOUT_KEYS:
                raise ProfileError(
                    f"timeouts: unknown state {key!r} (known: {', '.join(TIMEOUT_KEYS)})"
                )
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or not 1.0 <= value <= TIMEOUT_MAX_S
            ):
                raise ProfileError(
                    f"timeouts.{key} must be a number of seconds in 1..{TIMEOUT_MAX_S:.0f}, "
                    f"not {value!r}"
                )
        if len(self.description) > DESCRIPTION_MAX:
            raise ProfileError(f"description longer than {DESCRIPTION_MAX} characters")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "payload_form": self.payload_form,
            "protocols": list(self.protocols),
            "push": self.push,
            "timeouts": {k: float(v) for k, v in sorted(self.timeouts.items())},
            "description": self.description,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], *, name: str | None = None) -> DeviceProfile:
        """A profile from its JSON (``name`` given apart, e.g. from a URL, wins).
        Raises :class:`ProfileError` naming the first bad field."""
        if not isinstance(raw, Mapping):
            raise ProfileError("a profile is a JSON object")
        unknown = set(raw) - {
            "name",
            "payload_form",
            "protocols",
            "push",
            "timeouts",
            "description",
        }
        if unknown:
            raise ProfileError(f"unknown field(s): {', '.join(sorted(unknown))}")
        the_name = name if name is not None else raw.get("name")
        if not isinstance(the_name, str):
            raise ProfileError("name must be a string")
        form = raw.get("payload_form", "signed")
        if not isinstance(form, str):
            raise ProfileError("payload_form must be a string")
        protocols = raw.get("protocols", list(PROTOCOLS))
        if not isinstance(protocols, list | tuple) or not all(
            isinstance(p, str) for p in protocols
        ):
            raise ProfileError("protocols must be a list of protocol names")
        push = raw.get("push", True)
        if not isinstance(push, bool):
            raise ProfileError("push must be true or false")
        timeouts = raw.get("timeouts", {})
        if not isinstance(timeouts, Mapping):
            raise ProfileError("timeouts must be an object of state -> seconds")
        description = raw.get("description", "")
        if not isinstance(description, str):
            raise ProfileError("description must be a string")
        return cls(
            name=the_name,
            payload_form=form,  # type: ignore[arg-type]  # checked in __post_init__
            protocols=tuple(protocols),
            push=push,
            timeouts=dict(timeouts),
            description=description,
        )

    @property
    def bare(self) -> bool:
        return self.payload_form == "bare"

    def policy(self, base: JobPolicy) -> JobPolicy:
        """``base`` with this profile's protocol order, push permission and timeouts."""
        changes: dict[str, Any] = {
            TIMEOUT_KEYS[k]: float(v) for k, v in self.timeouts.items() if k in TIMEOUT_KEYS
        }
        changes["protocol_order"] = self.protocols
        changes["allow_push"] = self.push
        changes["profile"] = self.name
        return dataclasses.replace(base, **changes)


BUILTIN_DEFAULT: Final = DeviceProfile(
    name=DEFAULT_PROFILE,
    description="built in: the signed package, CoAP first, push allowed",
)
"""The profile of every device while the operator stored no ``default`` profile."""


def resolve(
    device_class: str | None, profiles: Mapping[str, DeviceProfile]
) -> tuple[DeviceProfile, str]:
    """The profile for a device of ``device_class`` (None: class not known yet), and why,
    in words for the event log."""
    if device_class and device_class in profiles:
        return profiles[device_class], f"device class {device_class!r} has its own profile"
    fallback = profiles.get(DEFAULT_PROFILE, BUILTIN_DEFAULT)
    which = "the stored default profile" if DEFAULT_PROFILE in profiles else "the built-in default"
    if not device_class:
        return fallback, f"device class unknown (/3/0/1 not read): {which}"
    return fallback, f"no profile for device class {device_class!r}: {which}"
