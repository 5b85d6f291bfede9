"""Domain events: what happened, for whoever subscribes (webhooks today).

A service calls ``publish(EVENT, data)`` inside its transaction; subscribers run once that
transaction commits (``transaction.on_commit``), so a rolled-back change announces nothing.
``data`` must be JSON-serialisable and name the objects by id (``capture_id``, ``alarm_id``,
...), never carry secrets.

Subscribers register with ``subscribe(fn)`` at app start (``OcrappConfig.ready``); a failing
subscriber is logged and never fails the change that published.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import transaction

log = logging.getLogger(__name__)

READ_DONE = "read.done"  # a read was saved (capture DONE)
READ_NEEDS_REVIEW = "read.needs_review"  # a saved read that the reader does not trust
ALARM_RAISED = "alarm.raised"  # a traceability alarm was opened
FIELD_CORRECTED = "field.corrected"  # a reviewer signed a new value of a field

EVENT_TYPES = (READ_DONE, READ_NEEDS_REVIEW, ALARM_RAISED, FIELD_CORRECTED)

Subscriber = Callable[[str, dict[str, Any]], None]
_subscribers: list[Subscriber] = []


def subscribe(fn: Subscriber) -> Subscriber:
    if fn not in _subscribers:
        _subscribers.append(fn)
    return fn


def publish(event_type: str, data: dict[str, Any]) -> None:
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")

    def deliver() -> None:
        for fn in list(_subscribers):
            try:
                fn(event_type, data)
            except Exception:  # a subscriber's failure never undoes the change
                log.exception("event subscriber %r failed for %s", fn, event_type)

    transaction.on_commit(deliver)
