"""Device-management requests as data: what to send, and how the answer is judged.

TS Core 1.1.1 §6.3 maps each operation onto a CoAP method: Read and Discover are GET
(Discover with Accept: link-format), Write is PUT (replace) or POST (partial update),
Execute and Create are POST, Write-Attributes is PUT with query parameters and no
payload, Delete is DELETE, Observe is GET with Observe 0 (§6.4.3). A :class:`RequestSpec`
is plain data so that a request for a sleeping queue-mode client can be stored and sent
after a restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aiocoap
from aiocoap.numbers.codes import Code

from fotakit.lwm2m.path import Path
from fotakit.store.records import JsonValue

_METHODS = {"GET": Code.GET, "PUT": Code.PUT, "POST": Code.POST, "DELETE": Code.DELETE}

#: The success code each operation expects; any other 2.xx is accepted too.
SUCCESS = {
    "read": "2.05",
    "discover": "2.05",
    "observe": "2.05",
    "write": "2.04",
    "write-partial": "2.04",
    "write-attributes": "2.04",
    "execute": "2.04",
    "create": "2.01",
    "delete": "2.02",
}


@dataclass(frozen=True, kw_only=True)
class RequestSpec:
    """One request to a client, independent of any socket or process."""

    operation: str
    method: str
    path: Path
    payload: bytes = b""
    content_format: int | None = None
    accept: int | None = None
    query: tuple[str, ...] = ()
    observation_id: str | None = None
    extra: dict[str, JsonValue] = field(default_factory=dict)

    @property
    def observe(self) -> bool:
        return self.operation == "observe"

    def to_message(self, uri_base: str, tuning: Any) -> aiocoap.Message:
        msg = aiocoap.Message(
            code=_METHODS[self.method],
            uri=uri_base,
            payload=self.payload,
            transport_tuning=tuning,
        )
        msg.opt.uri_path = self.path.segments
        if self.query:
            msg.opt.uri_query = self.query
        if self.content_format is not None:
            msg.opt.content_format = self.content_format
        if self.accept is not None:
            msg.opt.accept = self.accept
        if self.observe:
            msg.opt.observe = 0
        elif self.operation == "cancel-observe":
            msg.opt.observe = 1
        return msg

    def options(self) -> dict[str, JsonValue]:
        """The JSON-storable part that is not a column of a pending request."""
        return {
            "method": self.method,
            "accept": self.accept,
            "query": list(self.query),
            "observation_id": self.observation_id,
            "extra": self.extra,
        }

    @classmethod
    def from_stored(
        cls,
        *,
        operation: str,
        path: str,
        payload: bytes,
        content_format: int | None,
        options: Any,
    ) -> RequestSpec:
        opts = dict(options)
        accept = opts.get("accept")
        obs_id = opts.get("observation_id")
        extra = opts.get("extra")
        return cls(
            operation=operation,
            method=str(opts.get("method", "GET")),
            path=Path.parse(path),
            payload=payload,
            content_format=content_format,
            accept=int(accept) if isinstance(accept, int) else None,
            query=tuple(str(q) for q in opts.get("query") or ()),
            observation_id=str(obs_id) if obs_id is not None else None,
            extra=dict(extra) if isinstance(extra, dict) else {},
        )


def code_text(code: Any) -> str:
    """``"2.05"`` for aiocoap's Code.CONTENT."""
    return f"{int(code) >> 5}.{int(code) & 0x1F:02d}"


def is_success(code: Any) -> bool:
    return bool(code.is_successful())


def diagnostic(message: aiocoap.Message) -> str:
    """The diagnostic payload of an error response, as text (bounded, never raising)."""
    return bytes(message.payload[:200]).decode("utf-8", errors="replace")
