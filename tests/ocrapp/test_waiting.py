"""ocrapp.waiting: ?wait= futures woken by PostgreSQL NOTIFY on commit, and by the re-check when a
notification is lost."""

from __future__ import annotations

import asyncio
import threading

import pytest
from django.db import connection, transaction

from ocrapp import services, waiting
from ocrapp.models import Capture
from tests.images import label_png

pytestmark = pytest.mark.django_db(transaction=True)


def _capture(user, station, product_type) -> str:
    capture, _ = services.capture_create(
        user=user,
        image_bytes=label_png(["S/N: SN20260001"]),
        product_type=product_type,
        station=station,
    )
    return str(capture.pk)


def _in_thread(fn) -> threading.Thread:
    def run():
        try:
            fn()
        finally:
            connection.close()

    t = threading.Thread(target=run)
    t.start()
    return t


def test_a_notification_wakes_its_waiters_only_once_committed(user, station, product_type):
    capture_id = _capture(user, station, product_type)
    other_id = _capture(user, station, product_type)

    async def scenario():
        mine = waiting.waiters.register(capture_id)
        other = waiting.waiters.register(other_id)
        try:
            await asyncio.to_thread(waiting.waiters.connected.wait, 30)

            def rolled_back():
                with pytest.raises(RuntimeError), transaction.atomic():
                    waiting.notify_final(capture_id)
                    raise RuntimeError("rolled back: PostgreSQL sends nothing")

            await asyncio.to_thread(lambda: _in_thread(rolled_back).join())
            woken_by_rollback = await mine.wait(1.5)

            def committed():
                with transaction.atomic():
                    waiting.notify_final(capture_id)

            await asyncio.to_thread(lambda: _in_thread(committed).join())
            woken = await mine.wait(20)
            other_woken = other.future.done()
            return woken_by_rollback, woken, other_woken, waiting.waiters.count()
        finally:
            waiting.waiters.unregister(mine)
            waiting.waiters.unregister(other)

    woken_by_rollback, woken, other_woken, registered = asyncio.run(scenario())
    assert woken_by_rollback is False
    assert woken is True
    assert other_woken is False  # a notification wakes the waiters of its capture only
    assert registered == 2 and waiting.waiters.count() == 0


def test_a_lost_notification_is_made_up_by_the_recheck(station_client, user, station, product_type):
    capture_id = _capture(user, station, product_type)

    def finish_silently():  # FAILED without NOTIFY (as if the notification were lost)
        threading.Event().wait(0.5)
        Capture.objects.filter(pk=capture_id).update(status=Capture.Status.FAILED)

    t = _in_thread(finish_silently)
    body = station_client.get(f"/api/v1/captures/{capture_id}?wait=30").json()
    t.join()
    assert body["status"] == "FAILED"


def test_services_notify_when_a_capture_fails(user, station, product_type, monkeypatch):
    capture_id = _capture(user, station, product_type)
    monkeypatch.setattr(waiting.Waiters, "_recheck", lambda self, conn: None)  # NOTIFY only

    async def scenario():
        ticket = waiting.waiters.register(capture_id)
        try:
            await asyncio.to_thread(waiting.waiters.connected.wait, 30)
            await asyncio.to_thread(
                lambda: _in_thread(
                    lambda: services.capture_fail(capture_id=capture_id, code="x", reason="y")
                ).join()
            )
            return await ticket.wait(20)
        finally:
            waiting.waiters.unregister(ticket)

    assert asyncio.run(scenario()) is True
