"""Bearer tokens with roles for the REST API: :class:`TokenStore` and the route guards.

Roles are ordered ``viewer < operator < admin``: a viewer may read everything (every GET),
an operator may also act (device write/execute/observe/tags, package upload, campaign
and job actions), an admin may also delete packages and manage tokens.

Tokens are ``fk_`` + 32 random bytes (URL-safe base64). Only their SHA-256 (hex) is
stored, in the ``api_tokens`` table of the server's database; a token is looked up by
its hash and the stored hash is compared with :func:`hmac.compare_digest`. The plaintext
exists only in the answer to its creation (and in the one line the server prints for the
first admin token, see :meth:`TokenStore.ensure_admin`).

A token may expire (``expires_at``, UTC): from then on it answers 401 saying so, and it
stays listed until revoked. ``api_tokens`` lives in its own SQLAlchemy metadata (not the
store's versioned schema): it is created when missing by :meth:`TokenStore.open`, which
also adds the nullable ``expires_at`` column to a table made before it existed (an ALTER
TABLE, so older databases keep their tokens, none of which expires); dropping the table
only revokes every token. Limits: verification reads the database on each request (off
the event loop); nothing is cached, so a revoked token stops working at once.

Each route declares its minimum role with ``dependencies=[Depends(require(Role.X))]`` (or
takes the :class:`Principal` from the same dependency); :func:`route_role` reads it back,
for the OpenAPI document (``x-min-role``) and the tests that check every route has one.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import hashlib
import hmac
import math
import os
import re
import secrets
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from fastapi import Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Engine,
    MetaData,
    String,
    Table,
    delete,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import URL

from fotakit.api.problems import ApiProblem
from fotakit.store.engine import WRITE_OPTION, make_engine
from fotakit.store.records import utcnow
from fotakit.store.urls import parse_url

__all__ = [
    "ADMIN_TOKEN_ENV",
    "Principal",
    "Role",
    "TokenInfo",
    "TokenStore",
    "check_admin_seed",
    "hash_token",
    "new_token",
    "require",
    "route_role",
]

ADMIN_TOKEN_ENV: Final = "FOTAKIT_ADMIN_TOKEN"
MIN_SEED_LEN: Final = 32
MIN_SEED_BITS: Final = 128
# RFC 6750 §2.1: the characters a Bearer credential (b64token) may have.
_B64TOKEN: Final = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
TOKEN_PREFIX: Final = "fk_"
_MAX_TOKEN_LEN: Final = 512


class Role(enum.IntEnum):
    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"unknown role {text!r} (viewer, operator or admin)") from None


ROLE_NAMES: Final = tuple(r.label for r in Role)


def new_token() -> str:
    """A fresh token: ``fk_`` + 32 random bytes, URL-safe base64 without padding."""
    return TOKEN_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def seed_entropy_bits(token: str) -> float:
    """An estimate of a token's entropy: its length times the Shannon entropy of its own
    character frequencies. Crude (it cannot see words or patterns) but it catches the
    weak ones: ``admin`` 12 bits, 64 ``a`` 0, 32 hex digits ~115, a fresh ``fk_`` token
    ~230. A random 32-byte value in hex (64 digits) or base64 (43) scores 190-250."""
    counts = Counter(token)
    n = len(token)
    return n * sum(c / n * math.log2(n / c) for c in counts.values()) if n else 0.0


def check_admin_seed(token: str) -> None:
    """Refuse a ``FOTAKIT_ADMIN_TOKEN`` that is short or guessable (ValueError saying the
    rule): at least :data:`MIN_SEED_LEN` Bearer token characters (RFC 6750 §2.1) with an
    estimated :data:`MIN_SEED_BITS` bits of entropy (:func:`seed_entropy_bits`)."""
    rule = (
        f"{ADMIN_TOKEN_ENV} must be at least {MIN_SEED_LEN} characters of A-Z a-z 0-9 "
        f"-._~+/ with an estimated entropy of at least {MIN_SEED_BITS} bits "
        "(e.g. `openssl rand -base64 32` or `openssl rand -hex 32`; or unset it and the "
        "server makes one)"
    )
    if _B64TOKEN.fullmatch(token) is None:
        raise ValueError(f"{rule}: it has other characters")
    if len(token) < MIN_SEED_LEN:
        raise ValueError(f"{rule}: it has {len(token)}")
    bits = seed_entropy_bits(token)
    if bits < MIN_SEED_BITS:
        raise ValueError(f"{rule}: it has about {bits:.0f} bits")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A stored token, without its secret."""

    id: str
    name: str
    role: Role
    created_at: datetime
    expires_at: datetime | None = None

    def expired(self, now: datetime | None = None) -> bool:
        """Whether the token has expired (at ``now``, default the current time)."""
        return self.expires_at is not None and (now or utcnow()) >= self.expires_at

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role.label,
            "created_at": self.created_at.isoformat(),
            "expires_at": None if self.expires_at is None else self.expires_at.isoformat(),
        }


_metadata = MetaData()
_TOKENS: Final = Table(
    "api_tokens",
    _metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),  # None: never
)


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:  # SQLite keeps naive UTC
        return value.replace(tzinfo=UTC)
    return value


def _info(row: Any) -> TokenInfo:
    created = _utc(row.created_at)
    assert created is not None
    return TokenInfo(
        id=row.id,
        name=row.name,
        role=Role.parse(row.role),
        created_at=created,
        expires_at=_utc(row.expires_at),
    )


def _add_missing_columns(conn: Connection) -> None:
    """Add ``expires_at`` to an ``api_tokens`` table created before it existed.

    ``create_all`` creates missing tables only. The column is nullable, so existing rows
    read as tokens that never expire. Runs in :meth:`TokenStore.open`'s write transaction:
    on SQLite that is ``BEGIN IMMEDIATE``, so two processes opening at once upgrade one
    after the other; PostgreSQL's ``ADD COLUMN IF NOT EXISTS`` lets the second one pass.
    """
    present = {c["name"] for c in inspect(conn).get_columns(_TOKENS.name)}
    if "expires_at" in present:
        return
    column_type = _TOKENS.c.expires_at.type.compile(dialect=conn.dialect)
    guard = "IF NOT EXISTS " if conn.dialect.name == "postgresql" else ""
    conn.execute(text(f"ALTER TABLE {_TOKENS.name} ADD COLUMN {guard}expires_at {column_type}"))


class TokenStore:
    """API tokens in the server's database. Blocking and thread-safe; see the module."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._write_engine = engine.execution_options(**{WRITE_OPTION: True})

    @classmethod
    def open(cls, db: str | URL) -> TokenStore:
        engine = make_engine(parse_url(db))
        try:
            with engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:
                _metadata.create_all(conn)
                _add_missing_columns(conn)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    def close(self) -> None:
        self._engine.dispose()

    def create(
        self,
        name: str,
        role: Role,
        *,
        token: str | None = None,
        expires_at: datetime | None = None,
        expires_in: timedelta | None = None,
    ) -> tuple[TokenInfo, str]:
        """Store a new token; (its info, the plaintext — not retrievable later).

        ``expires_at`` (timezone-aware) or ``expires_in`` (from now) make it expire; it
        must lie in the future. Without either the token never expires."""
        name = name.strip()
        if not name or len(name) > 64:
            raise ValueError("a token name is 1 to 64 characters")
        plaintext = token if token is not None else new_token()
        if not plaintext or len(plaintext) > _MAX_TOKEN_LEN:
            raise ValueError("a token is 1 to 512 characters")
        now = utcnow()
        if expires_at is not None and expires_in is not None:
            raise ValueError("give expires_at or expires_in, not both")
        if expires_in is not None:
            expires_at = now + expires_in
        if expires_at is not None:
            if expires_at.tzinfo is None:
                raise ValueError("expires_at needs a time zone (e.g. 2027-01-01T00:00:00Z)")
            expires_at = expires_at.astimezone(UTC)
            if expires_at <= now:
                raise ValueError(f"expires_at {expires_at.isoformat()} is not in the future")
        info = TokenInfo(
            id="t" + secrets.token_hex(8),
            name=name,
            role=role,
            created_at=now,
            expires_at=expires_at,
        )
        with self._write_engine.begin() as conn:
            conn.execute(
                insert(_TOKENS).values(
                    id=info.id,
                    name=info.name,
                    role=role.label,
                    hash=hash_token(plaintext),
                    created_at=info.created_at,
                    expires_at=info.expires_at,
                )
            )
        return info, plaintext

    def list(self) -> list[TokenInfo]:
        with self._engine.begin() as conn:
            rows = conn.execute(select(_TOKENS).order_by(_TOKENS.c.created_at, _TOKENS.c.id))
            return [_info(row) for row in rows]

    def get(self, token_id: str) -> TokenInfo | None:
        with self._engine.begin() as conn:
            row = conn.execute(select(_TOKENS).where(_TOKENS.c.id == token_id)).first()
            return None if row is None else _info(row)

    def revoke(self, token_id: str) -> bool:
        with self._write_engine.begin() as conn:
            return bool(conn.execute(delete(_TOKENS).where(_TOKENS.c.id == token_id)).rowcount)

    def verify(self, token: str) -> TokenInfo | None:
        """The token's info if it is known (expired or not: see :meth:`TokenInfo.expired`);
        None otherwise."""
        if not token or len(token) > _MAX_TOKEN_LEN:
            return None
        digest = hash_token(token)
        with self._engine.begin() as conn:
            row = conn.execute(select(_TOKENS).where(_TOKENS.c.hash == digest)).first()
        if row is None or not hmac.compare_digest(str(row.hash), digest):
            return None
        return _info(row)

    def ensure_admin(self) -> str | None:
        """Create the admin token named "admin" if no admin token exists; its plaintext
        then (to print once), else None. ``FOTAKIT_ADMIN_TOKEN`` seeds its value; a weak
        one is refused (:func:`check_admin_seed`, ValueError) whether or not it is used."""
        seeded = os.environ.get(ADMIN_TOKEN_ENV) or None
        if seeded is not None:
            check_admin_seed(seeded)
        with self._engine.begin() as conn:
            found = conn.execute(
                select(_TOKENS.c.id).where(_TOKENS.c.role == Role.ADMIN.label).limit(1)
            ).first()
        if found is not None:
            return None
        _, plaintext = self.create("admin", Role.ADMIN, token=seeded)
        return plaintext


# -- route guards -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made the request."""

    token_id: str
    name: str
    role: Role


_bearer = HTTPBearer(auto_error=False, description="A fotakit API token: `fk_...`")


class _Require:
    """The dependency of one minimum role (see :func:`require`)."""

    def __init__(self, role: Role, *, query_token: bool = False) -> None:
        self.role = role
        self.query_token = query_token

    async def __call__(self, request: Request) -> Principal:
        token: str | None = None
        credentials = await _bearer(request)
        if credentials is not None:
            token = credentials.credentials
        elif self.query_token:
            token = request.query_params.get("access_token")
        if not token:
            raise _unauthorized("a bearer token is required (Authorization: Bearer <token>)")
        tokens = _token_store(request)
        info = await asyncio.to_thread(tokens.verify, token)
        if info is None:
            raise _unauthorized("the bearer token is not valid")
        if info.expired():
            assert info.expires_at is not None
            raise _unauthorized(
                f"the bearer token {info.name!r} expired at {info.expires_at.isoformat()}",
                error="invalid_token",
            )
        if info.role < self.role:
            raise ApiProblem(
                403,
                f"this needs the {self.role.label} role; token {info.name!r} is {info.role.label}",
                kind="forbidden",
            )
        return Principal(token_id=info.id, name=info.name, role=info.role)


def _unauthorized(detail: str, *, error: str | None = None) -> ApiProblem:
    # RFC 6750 §3.1: an expired token is error="invalid_token" in the challenge.
    challenge = 'Bearer realm="fotakit"'
    if error is not None:
        challenge += f', error="{error}", error_description="the token expired"'
    return ApiProblem(401, detail, kind="unauthorized", headers={"WWW-Authenticate": challenge})


def _token_store(request: Request) -> TokenStore:
    tokens = getattr(request.app.state, "tokens", None)
    if tokens is None:
        raise ApiProblem(503, "no token store configured", kind="unavailable")
    assert isinstance(tokens, TokenStore)
    return tokens


_GUARDS: dict[tuple[Role, bool], _Require] = {}


def require(
    role: Role, *, query_token: bool = False
) -> Callable[[Request], Coroutine[Any, Any, Principal]]:
    """The dependency that admits ``role`` and above (one instance per role, so routes
    can be inspected with :func:`route_role`). ``query_token``: also accept
    ``?access_token=`` (for EventSource, which cannot set headers)."""
    key = (role, query_token)
    guard = _GUARDS.get(key)
    if guard is None:
        guard = _GUARDS[key] = _Require(role, query_token=query_token)
    return guard


def route_role(route: APIRoute) -> Role | None:
    """The minimum role a route declares; None for a public route."""
    roles = [
        dep.call.role for dep in route.dependant.dependencies if isinstance(dep.call, _Require)
    ]
    return max(roles) if roles else None
