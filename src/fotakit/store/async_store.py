"""The store for asyncio code: every call runs on one dedicated worker thread.

Database calls block, so the server's event loop hands them to a single-thread executor:
the loop never waits on disk or network I/O, and all writes are serialised in submission
order (SQLite allows one writer at a time anyway). Method names and semantics are those of
:class:`fotakit.store.Store`.

Cancelling an awaiting task does not undo a call the worker has already started: the
transaction still commits or rolls back on its own. A call that has not started yet when
its task is cancelled never runs.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import ParamSpec, TypeVar, Unpack

from sqlalchemy.engine import URL

from fotakit.store.engine import SqliteSynchronous
from fotakit.store.errors import StoreClosed
from fotakit.store.records import (
    DeviceRecord,
    JsonObject,
    ObservationRecord,
    PendingRequestRecord,
    RegistrationRecord,
)
from fotakit.store.sync_store import RegistrationChanges, Store

P = ParamSpec("P")
T = TypeVar("T")


class AsyncStore:
    """An asyncio facade over :class:`Store`, one worker thread per instance."""

    def __init__(self, store: Store, executor: ThreadPoolExecutor) -> None:
        """Use :meth:`open`; ``store`` must only ever be used from ``executor``."""
        self._store = store
        self._executor = executor
        self._closed = False

    @classmethod
    async def open(
        cls, url: str | URL, *, sqlite_synchronous: SqliteSynchronous = "FULL"
    ) -> AsyncStore:
        """Open :meth:`Store.open` on a fresh worker thread, without blocking the loop."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fotakit-store")
        loop = asyncio.get_running_loop()
        try:
            store = await loop.run_in_executor(
                executor, functools.partial(Store.open, url, sqlite_synchronous=sqlite_synchronous)
            )
        except Exception:
            # Store.open has finished (and failed): joining the idle thread is immediate.
            executor.shutdown(wait=True)
            raise
        except BaseException:
            # Cancelled while Store.open may still run: do not block the loop on it.
            executor.shutdown(wait=False, cancel_futures=True)
            raise
        return cls(store, executor)

    @property
    def url(self) -> str:
        return self._store.url

    @property
    def backend(self) -> str:
        return self._store.backend

    async def close(self) -> None:
        """Finish queued calls, close the store and stop the worker thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._store.close)
        finally:
            # The queue is empty now, so this only joins the idle worker thread.
            self._executor.shutdown(wait=True)

    async def __aenter__(self) -> AsyncStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if self._closed:
            raise StoreClosed(f"the async store for {self.url} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    # -- registrations ------------------------------------------------------------------

    async def upsert_registration(self, rec: RegistrationRecord) -> RegistrationRecord | None:
        return await self._call(self._store.upsert_registration, rec)

    async def update_registration(
        self, registration_id: str, /, **changes: Unpack[RegistrationChanges]
    ) -> RegistrationRecord | None:
        return await self._call(self._store.update_registration, registration_id, **changes)

    async def delete_registration(self, registration_id: str) -> RegistrationRecord | None:
        return await self._call(self._store.delete_registration, registration_id)

    async def get_registration(self, registration_id: str) -> RegistrationRecord | None:
        return await self._call(self._store.get_registration, registration_id)

    async def get_registration_by_endpoint(self, endpoint: str) -> RegistrationRecord | None:
        return await self._call(self._store.get_registration_by_endpoint, endpoint)

    async def list_registrations(self) -> list[RegistrationRecord]:
        return await self._call(self._store.list_registrations)

    async def expired_registrations(self, now: datetime) -> list[RegistrationRecord]:
        return await self._call(self._store.expired_registrations, now)

    # -- observations -------------------------------------------------------------------

    async def add_observation(self, rec: ObservationRecord) -> ObservationRecord:
        return await self._call(self._store.add_observation, rec)

    async def delete_observation(self, observation_id: str) -> ObservationRecord | None:
        return await self._call(self._store.delete_observation, observation_id)

    async def get_observation(self, observation_id: str) -> ObservationRecord | None:
        return await self._call(self._store.get_observation, observation_id)

    async def list_observations(
        self, registration_id: str | None = None
    ) -> list[ObservationRecord]:
        return await self._call(self._store.list_observations, registration_id)

    # -- devices ------------------------------------------------------------------------

    async def get_device(self, endpoint: str) -> DeviceRecord | None:
        return await self._call(self._store.get_device, endpoint)

    async def list_devices(self) -> list[DeviceRecord]:
        return await self._call(self._store.list_devices)

    async def set_device_attributes(
        self, endpoint: str, attributes: JsonObject
    ) -> DeviceRecord | None:
        return await self._call(self._store.set_device_attributes, endpoint, attributes)

    # -- queue mode: pending requests ---------------------------------------------------

    async def enqueue_pending_request(
        self,
        endpoint: str,
        operation: str,
        path: str,
        *,
        payload: bytes = b"",
        content_format: int | None = None,
        options: JsonObject | None = None,
        created_at: datetime | None = None,
    ) -> PendingRequestRecord:
        return await self._call(
            self._store.enqueue_pending_request,
            endpoint,
            operation,
            path,
            payload=payload,
            content_format=content_format,
            options=options,
            created_at=created_at,
        )

    async def list_pending_requests(
        self, endpoint: str | None = None
    ) -> list[PendingRequestRecord]:
        return await self._call(self._store.list_pending_requests, endpoint)

    async def delete_pending_request(self, request_id: int) -> PendingRequestRecord | None:
        return await self._call(self._store.delete_pending_request, request_id)

    async def clear_pending_requests(self, endpoint: str) -> int:
        return await self._call(self._store.clear_pending_requests, endpoint)
