"""The store for asyncio code: every call runs on one dedicated worker thread.

Database calls block, so the server's event loop hands them to a single worker thread:
the loop never waits on disk or network I/O, and all calls run in submission order
(SQLite allows one writer at a time anyway). Method names and semantics are those of
:class:`fotakit.store.Store`; each awaited write returns only once *its* transaction has
committed.

Group commit. When the worker picks up a write, it also takes every write queued right
behind it (up to :data:`MAX_BATCH`, stopping at the first read so reads still see every
write submitted before them) and applies them with :meth:`Store.apply_batch`: one
transaction, one commit — one fsync with SQLite ``synchronous=FULL`` — for the lot. A
Register flood thus costs one fsync per batch instead of one per Register, while each
caller still gets its own result or exception (a failing write fails alone, see
:meth:`Store.apply_batch`). Batches mostly form by themselves, from what arrived while the
previous commit was on disk; while writes keep arriving concurrently, the worker also
waits up to :data:`LINGER` for more before it begins, which makes batches several times
bigger at the cost of a few milliseconds of latency. A writer without company is not
delayed (at most once, right after a burst).

Arguments are validated on the calling thread (the :mod:`fotakit.store.writes`
constructors), so invalid input raises before it is queued and never enters a batch.

Cancelling an awaiting task does not undo a call the worker has already started: the
transaction still commits or rolls back on its own. A call that has not started yet when
its task is cancelled never runs.
"""

from __future__ import annotations

import asyncio
import functools
import queue
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final, Generic, TypeVar, Unpack

from sqlalchemy.engine import URL

from fotakit.store import writes
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
from fotakit.store.writes import Outcome, Write

T = TypeVar("T")

MAX_BATCH: Final = 256
"""The most writes one transaction takes; bounds the time a batch holds the write lock."""

LINGER: Final = 0.005
"""Seconds a batch may wait for more writes while writes arrive concurrently."""

THREAD_NAME: Final = "fotakit-store"


class _Call(Generic[T]):
    """One queued call: a read (``fn`` on the store) or a write (``op``)."""

    __slots__ = ("cancelled", "fn", "future", "op")

    def __init__(
        self,
        future: asyncio.Future[T],
        *,
        fn: Callable[[Store], T] | None = None,
        op: Write[T] | None = None,
    ) -> None:
        self.fn = fn
        self.op = op
        self.future = future
        # Set on the loop thread, read by the worker just before it starts the call: a
        # plain attribute is enough, the worker either sees it in time or has started.
        self.cancelled = False
        future.add_done_callback(self._on_done)

    def _on_done(self, future: asyncio.Future[T]) -> None:
        if future.cancelled():
            self.cancelled = True


_STOP: Final = object()


class _Worker(threading.Thread):
    """The thread that owns the :class:`Store`: opens it, runs every call, closes it."""

    def __init__(self, opener: Callable[[], Store], opened: asyncio.Future[Store]) -> None:
        super().__init__(name=THREAD_NAME, daemon=True)
        self._opener = opener
        self._opened = opened
        self._store: Store | None = None
        self._previous_batch = 0
        self._queue: queue.SimpleQueue[_Call[Any] | object] = queue.SimpleQueue()

    def submit(self, call: _Call[Any]) -> None:
        self._queue.put(call)

    def stop(self) -> None:
        """Let the thread end after the calls already queued."""
        self._queue.put(_STOP)

    def run(self) -> None:
        try:
            try:
                self._store = self._opener()
            except Exception as exc:
                _deliver([(self._opened, Outcome(error=exc))])
                return
            _deliver([(self._opened, Outcome(value=self._store))])
            self._serve(self._store)
        finally:
            # Also covers an open whose caller was cancelled: nobody else can close it.
            if self._store is not None:
                self._store.close()

    def _serve(self, store: Store) -> None:
        carried: _Call[Any] | object | None = None
        while True:
            item = carried if carried is not None else self._queue.get()
            carried = None
            if item is _STOP:
                return
            assert isinstance(item, _Call)
            if item.op is None:
                self._run_read(store, item)
                continue
            batch, carried = self._collect_writes(item)
            self._run_writes(store, batch)

    def _collect_writes(self, first: _Call[Any]) -> tuple[list[_Call[Any]], object | None]:
        """``first`` and the writes right behind it; and the read (or stop) that ended them.

        Under concurrent writes (this batch or the previous one has more than one), wait
        up to :data:`LINGER` for more: those callers wait for a commit anyway, and a
        bigger batch costs less per write. A write alone after a lone write never waits.
        """
        batch: list[_Call[Any]] = [first]
        ended_by: object | None = None
        deadline = time.monotonic() + LINGER
        while len(batch) < MAX_BATCH:
            try:
                if len(batch) > 1 or self._previous_batch > 1:
                    nxt = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                else:
                    nxt = self._queue.get_nowait()
            except queue.Empty:
                break
            if not (isinstance(nxt, _Call) and nxt.op is not None):
                ended_by = nxt  # a read or the stop: it runs after this batch
                break
            batch.append(nxt)
        self._previous_batch = len(batch)
        return batch, ended_by

    @staticmethod
    def _run_read(store: Store, call: _Call[Any]) -> None:
        if call.cancelled:
            return
        assert call.fn is not None
        try:
            outcome: Outcome[Any] = Outcome(value=call.fn(store))
        except Exception as exc:
            outcome = Outcome(error=exc)
        _deliver([(call.future, outcome)])

    @staticmethod
    def _run_writes(store: Store, batch: list[_Call[Any]]) -> None:
        live = [call for call in batch if not call.cancelled]
        if not live:
            return
        outcomes = store.apply_batch([call.op for call in live if call.op is not None])
        _deliver([(call.future, outcome) for call, outcome in zip(live, outcomes, strict=True)])


_Result = tuple["asyncio.Future[Any]", Outcome[Any]]


def _deliver(results: list[_Result]) -> None:
    """Hand results to their event loops, one wake-up per loop for the whole batch."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Result]] = {}
    for future, outcome in results:
        by_loop.setdefault(future.get_loop(), []).append((future, outcome))
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, items)
        except RuntimeError:
            pass  # the loop is closed: nobody is waiting any more


def _settle(items: list[_Result]) -> None:
    for future, outcome in items:
        if future.done():
            continue  # cancelled after the worker had started it
        if outcome.error is not None:
            future.set_exception(outcome.error)
        else:
            future.set_result(outcome.value)


class AsyncStore:
    """An asyncio facade over :class:`Store`, one worker thread per instance."""

    def __init__(self, store: Store, worker: _Worker) -> None:
        """Use :meth:`open`; ``store`` must only ever be used from ``worker``."""
        self._store = store
        self._worker = worker
        self._closed = False

    @classmethod
    async def open(
        cls, url: str | URL, *, sqlite_synchronous: SqliteSynchronous = "FULL"
    ) -> AsyncStore:
        """Open :meth:`Store.open` on a fresh worker thread, without blocking the loop."""
        opened: asyncio.Future[Store] = asyncio.get_running_loop().create_future()
        worker = _Worker(
            functools.partial(Store.open, url, sqlite_synchronous=sqlite_synchronous), opened
        )
        worker.start()
        try:
            store = await opened
        except Exception:
            worker.stop()
            # The open has finished (and failed): the thread ends at once.
            worker.join()
            raise
        except BaseException:
            # Cancelled while the open may still run: the thread closes what it opens.
            worker.stop()
            raise
        return cls(store, worker)

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
        try:
            await self._submit(_Call(asyncio.get_running_loop().create_future(), fn=_close))
        finally:
            self._worker.stop()
            # The queue is empty now, so this only joins a thread that is ending.
            self._worker.join()

    async def __aenter__(self) -> AsyncStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed(f"the async store for {self.url} is closed")

    async def _submit(self, call: _Call[T]) -> T:
        self._worker.submit(call)
        return await call.future

    async def _call(self, fn: Callable[[Store], T]) -> T:
        self._check_open()
        return await self._submit(_Call(asyncio.get_running_loop().create_future(), fn=fn))

    async def _write(self, make: Callable[[], Write[T]]) -> T:
        self._check_open()
        op = make()  # validates here, on the caller's thread
        return await self._submit(_Call(asyncio.get_running_loop().create_future(), op=op))

    # -- registrations ------------------------------------------------------------------

    async def upsert_registration(self, rec: RegistrationRecord) -> RegistrationRecord | None:
        return await self._write(lambda: writes.upsert_registration(rec))

    async def update_registration(
        self, registration_id: str, /, **changes: Unpack[RegistrationChanges]
    ) -> RegistrationRecord | None:
        return await self._write(lambda: writes.update_registration(registration_id, **changes))

    async def delete_registration(self, registration_id: str) -> RegistrationRecord | None:
        return await self._write(lambda: writes.delete_registration(registration_id))

    async def get_registration(self, registration_id: str) -> RegistrationRecord | None:
        return await self._call(lambda s: s.get_registration(registration_id))

    async def get_registration_by_endpoint(self, endpoint: str) -> RegistrationRecord | None:
        return await self._call(lambda s: s.get_registration_by_endpoint(endpoint))

    async def list_registrations(self) -> list[RegistrationRecord]:
        return await self._call(lambda s: s.list_registrations())

    async def expired_registrations(self, now: datetime) -> list[RegistrationRecord]:
        return await self._call(lambda s: s.expired_registrations(now))

    # -- observations -------------------------------------------------------------------

    async def add_observation(self, rec: ObservationRecord) -> ObservationRecord:
        return await self._write(lambda: writes.add_observation(rec))

    async def delete_observation(self, observation_id: str) -> ObservationRecord | None:
        return await self._write(lambda: writes.delete_observation(observation_id))

    async def get_observation(self, observation_id: str) -> ObservationRecord | None:
        return await self._call(lambda s: s.get_observation(observation_id))

    async def list_observations(
        self, registration_id: str | None = None
    ) -> list[ObservationRecord]:
        return await self._call(lambda s: s.list_observations(registration_id))

    # -- devices ------------------------------------------------------------------------

    async def get_device(self, endpoint: str) -> DeviceRecord | None:
        return await self._call(lambda s: s.get_device(endpoint))

    async def list_devices(self) -> list[DeviceRecord]:
        return await self._call(lambda s: s.list_devices())

    async def set_device_attributes(
        self, endpoint: str, attributes: JsonObject
    ) -> DeviceRecord | None:
        return await self._write(lambda: writes.set_device_attributes(endpoint, attributes))

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
        return await self._write(
            lambda: writes.enqueue_pending_request(
                endpoint,
                operation,
                path,
                payload=payload,
                content_format=content_format,
                options=options,
                created_at=created_at,
            )
        )

    async def list_pending_requests(
        self, endpoint: str | None = None
    ) -> list[PendingRequestRecord]:
        return await self._call(lambda s: s.list_pending_requests(endpoint))

    async def delete_pending_request(self, request_id: int) -> PendingRequestRecord | None:
        return await self._write(lambda: writes.delete_pending_request(request_id))

    async def clear_pending_requests(self, endpoint: str) -> int:
        return await self._write(lambda: writes.clear_pending_requests(endpoint))


def _close(store: Store) -> None:
    store.close()
