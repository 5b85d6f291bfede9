"""Waiting for a capture to finish without a thread per waiting request.

``GET /api/v1/captures/{id}?wait=N`` is an async view (``api.capture_detail``): while it waits it
holds no thread and no database connection, only an asyncio future registered here. One
listener thread per web process holds one PostgreSQL connection that ``LISTEN``s on
``capture_final``; ``services`` sends ``NOTIFY capture_final, '<id>'`` in the same transaction
that makes a capture DONE or FAILED (``notify_final``), so the notification arrives once the new
status is committed and visible. The listener then wakes every future waiting on that id
(``loop.call_soon_threadsafe``: any event loop, uvicorn's or a test client's).

A lost notification (the listener's connection was cut, PostgreSQL restarted) costs at most
``RECHECK_SECONDS``: after each quiet second, and right after it (re)connects, the listener
checks the ids it has waiters for with one query and wakes those that are final.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

CHANNEL = "capture_final"
RECHECK_SECONDS = 1.0
RECONNECT_MAX_SECONDS = 5.0


def notify_final(capture_id: uuid.UUID | str) -> None:
    """Tell the waiters of ``capture_id`` it is DONE/FAILED; call inside the transaction that
    sets the status (PostgreSQL delivers the notification when it commits, never before)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, str(capture_id)])


@dataclass(eq=False)
class Ticket:
    """One waiting request: a future on its event loop, woken by the listener thread."""

    capture_id: str
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future = field(repr=False)

    def wake(self) -> None:  # any thread
        def _set() -> None:
            if not self.future.done():
                self.future.set_result(True)

        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self.loop.call_soon_threadsafe(_set)

    async def wait(self, timeout: float) -> bool:
        """True when woken (the capture is final), False after ``timeout`` seconds."""
        done, _ = await asyncio.wait([self.future], timeout=max(0.0, timeout))
        return bool(done)


class Waiters:
    """The waiting requests of this process, by capture id, and the one listener thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, set[Ticket]] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.connected = threading.Event()  # the listener is LISTENing now

    def register(self, capture_id: str) -> Ticket:
        """A ticket for ``capture_id`` (a canonical UUID string); call from the event loop that
        will await it, before reading the status (so no notification falls between)."""
        loop = asyncio.get_running_loop()
        ticket = Ticket(capture_id, loop, loop.create_future())
        with self._lock:
            self._by_id.setdefault(capture_id, set()).add(ticket)
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._listen, name="capture-wait-listener", daemon=True
                )
                self._thread.start()
        return ticket

    def unregister(self, ticket: Ticket) -> None:
        with self._lock:
            tickets = self._by_id.get(ticket.capture_id)
            if tickets is not None:
                tickets.discard(ticket)
                if not tickets:
                    del self._by_id[ticket.capture_id]

    def stop(self, timeout: float = 5.0) -> None:
        """End the listener thread and close its connection (tests: before the test database
        is dropped); the next ``register`` starts a new one."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
        if thread is not None:
            thread.join(timeout)

    def count(self) -> int:
        with self._lock:
            return sum(len(t) for t in self._by_id.values())

    def wake(self, capture_id: str) -> None:
        with self._lock:
            tickets = list(self._by_id.get(capture_id, ()))
        for ticket in tickets:
            ticket.wake()

    # --- the listener thread ------------------------------------------------------------------

    def _ids(self) -> list[str]:
        with self._lock:
            return list(self._by_id)

    def _recheck(self, conn) -> None:
        """Wake the waiters of captures that are final already (a notification was missed)."""
        from ocrapp.models import Capture

        ids = self._ids()
        if not ids:
            return
        rows = conn.execute(
            f"SELECT id::text FROM {Capture._meta.db_table}"  # noqa: S608 - a model's table
            " WHERE id = ANY(%s::uuid[]) AND status = ANY(%s)",
            [ids, [Capture.Status.DONE.value, Capture.Status.FAILED.value]],
        ).fetchall()
        for (capture_id,) in rows:
            self.wake(capture_id)

    def _listen(self) -> None:
        import psycopg

        delay = 0.2
        while not self._stop.is_set():
            try:
                with psycopg.connect(**_conninfo(), autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.connected.set()
                    delay = 0.2
                    self._recheck(conn)  # what finished while nobody listened
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=RECHECK_SECONDS):
                            self.wake(note.payload)
                        self._recheck(conn)
            except Exception as exc:  # noqa: BLE001 - keep listening whatever happened
                log.warning("capture wait listener: %s; reconnecting in %.1fs", exc, delay)
                self._stop.wait(delay)
                delay = min(RECONNECT_MAX_SECONDS, delay * 2)
            finally:
                self.connected.clear()


def _conninfo() -> dict:
    """psycopg.connect() keywords for Django's default database (the test database in tests)."""
    from django.db import connections

    s = connections["default"].settings_dict
    params = {
        "dbname": s["NAME"],
        "user": s.get("USER") or None,
        "password": s.get("PASSWORD") or None,
        "host": s.get("HOST") or None,
        "port": s.get("PORT") or None,
        "application_name": "serialread-wait-listener",
    }
    params.update({k: v for k, v in (s.get("OPTIONS") or {}).items() if isinstance(v, str | int)})
    return {k: v for k, v in params.items() if v is not None}


waiters = Waiters()


def canonical_id(raw: str) -> str | None:
    try:
        return str(uuid.UUID(str(raw)))
    except ValueError:
        return None
