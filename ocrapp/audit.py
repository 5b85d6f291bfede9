"""The audit trail: one append-only, hash-chained table for every change (``AuditEvent``).

``record(...)`` is the only writer. It must run inside the transaction of the change it
describes, so a change and its audit row commit or roll back together. The chain is kept in
order by a transaction-scoped advisory lock: concurrent writers append one after another.

``row_digest`` is the canonical hash of a row; ``verify_chain`` recomputes it for every row in
order and returns the first row whose stored hash or link does not match (``audit_verify``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from ocrapp.models import AuditEvent

GENESIS = "0" * 64
_LOCK_KEY = 0x0A0D17  # pg_advisory_xact_lock key of the chain


def _json(value: Any) -> Any:
    """JSON-safe, stable form of a before/after value (dates as ISO text)."""
    return json.loads(json.dumps(value, default=str, sort_keys=True)) if value is not None else None


def row_digest(
    *,
    prev_hash: str,
    at: datetime,
    actor_id: int | None,
    actor_name: str,
    action: str,
    object_type: str,
    object_id: str,
    object_repr: str,
    before: Any,
    after: Any,
    reason: str,
) -> str:
    """sha256 (hex) of the previous hash and the row's content in canonical JSON."""
    body = {
        "prev_hash": prev_hash,
        "at": at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        "actor_id": actor_id,
        "actor_name": actor_name,
        "action": action,
        "object_type": object_type,
        "object_id": object_id,
        "object_repr": object_repr,
        "before": before,
        "after": after,
        "reason": reason,
    }
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


def printed_name(user: Any) -> str:
    """The name a signature or an audit row shows: full name, else the username."""
    if user is None:
        return "system"
    full = (user.get_full_name() or "").strip() if hasattr(user, "get_full_name") else ""
    return f"{full} ({user.get_username()})" if full else user.get_username()


def object_key(obj: Any) -> tuple[str, str, str]:
    """(type, id, repr) of a model instance, e.g. ("ocrapp.station", "3", "LINE-1 / A")."""
    meta = obj._meta
    return f"{meta.app_label}.{meta.model_name}", str(obj.pk), str(obj)[:255]


def record(
    *,
    actor: Any,
    action: str,
    obj: Any = None,
    object_type: str = "",
    object_id: str = "",
    object_repr: str = "",
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    reason: str = "",
) -> AuditEvent:
    """Append one audit row (inside the caller's transaction). ``obj``: the model instance the
    change is about (or give ``object_type``/``object_id``/``object_repr``); ``actor``: the
    user, or None for the system (the worker)."""
    if obj is not None:
        object_type, object_id, object_repr = object_key(obj)
    actor_obj = actor if getattr(actor, "pk", None) is not None else None
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
        last = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()
        prev = last or GENESIS
        at = timezone.now()
        fields = {
            "at": at,
            "actor_name": printed_name(actor_obj),
            "action": action,
            "object_type": object_type,
            "object_id": str(object_id),
            "object_repr": str(object_repr)[:255],
            "before": _json(dict(before)) if before is not None else None,
            "after": _json(dict(after)) if after is not None else None,
            "reason": reason or "",
        }
        digest = row_digest(prev_hash=prev, actor_id=actor_obj.pk if actor_obj else None, **fields)
        return AuditEvent.objects.create(actor=actor_obj, prev_hash=prev, hash=digest, **fields)


@dataclass(frozen=True)
class ChainBreak:
    """The first row that does not verify: ``reason`` is ``hash`` (content altered) or
    ``link`` (its ``prev_hash`` is not the hash of the row before it: a row was removed,
    inserted or reordered)."""

    event_id: int
    reason: str


def _rows() -> Iterator[AuditEvent]:
    return AuditEvent.objects.order_by("id").iterator(chunk_size=2000)


def verify_chain() -> tuple[int, ChainBreak | None]:
    """(rows checked, first break or None)."""
    prev = GENESIS
    n = 0
    for ev in _rows():
        n += 1
        if ev.prev_hash != prev:
            return n, ChainBreak(ev.pk, "link")
        digest = row_digest(
            prev_hash=ev.prev_hash,
            at=ev.at,
            actor_id=ev.actor_id,
            actor_name=ev.actor_name,
            action=ev.action,
            object_type=ev.object_type,
            object_id=ev.object_id,
            object_repr=ev.object_repr,
            before=ev.before,
            after=ev.after,
            reason=ev.reason,
        )
        if digest != ev.hash:
            return n, ChainBreak(ev.pk, "hash")
        prev = ev.hash
    return n, None
