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


# --- integrity of the data against the trail (``manage.py audit_verify``) --------------------
#
# The chain proves the trail itself was not altered; these checks find data changed behind the
# application's back (a raw SQL UPDATE, a restored backup): the search index must match the
# fields it indexes, and every field's two values must be what the trail recorded for them:
#
# - ``Field.value``, the machine read, never changes after ``read_save``: it must be what the
#   read's own event recorded. ``ocrapp.read`` events with action ``create`` (the worker's
#   ``read_save``) or ``baseline`` (``manage.py audit_baseline``) carry
#   ``after["fields"] = {"<field id>": {"name": ..., "value": ...}}`` (a baseline of a field
#   already corrected adds ``"current_value"``).
# - ``Field.current_value``, the value in force, is what the latest of those events or of the
#   field's own events recorded: a correction (``services.field_revise``/``read_review``: action
#   ``field_revised``) is an event with ``object_type="ocrapp.field"``,
#   ``object_id=<field id>``, ``after={"value": <value in force>, ...}``.

READ_VALUE_ACTIONS = ("create", "baseline")


@dataclass(frozen=True)
class Mismatch:
    """One row that does not match: ``kind`` is ``search_index`` or ``field_value``;
    ``message`` names the row and what differs."""

    kind: str
    object_type: str
    object_id: str
    message: str


_RECORDED_VALUES_SQL = """
WITH recorded AS (
    SELECT kv.key::bigint AS field_id, kv.value ->> 'value' AS machine,
           COALESCE(kv.value ->> 'current_value', kv.value ->> 'value') AS in_force,
           e.id AS event_id
    FROM ocrapp_auditevent e CROSS JOIN LATERAL jsonb_each(e.after -> 'fields') kv
    WHERE e.object_type = 'ocrapp.read' AND e.action = ANY(%(read_actions)s)
      AND jsonb_typeof(e.after -> 'fields') = 'object'
    UNION ALL
    SELECT e.object_id::bigint, NULL, e.after ->> 'value', e.id
    FROM ocrapp_auditevent e
    WHERE e.object_type = 'ocrapp.field' AND e.object_id ~ '^[0-9]+$'
      AND jsonb_typeof(e.after) = 'object' AND e.after ? 'value'
), read_event AS (
    SELECT DISTINCT ON (field_id) field_id, machine, event_id
    FROM recorded WHERE machine IS NOT NULL ORDER BY field_id, event_id DESC
), latest AS (
    SELECT DISTINCT ON (field_id) field_id, in_force, event_id
    FROM recorded ORDER BY field_id, event_id DESC
)
SELECT f.id, f.name, r.capture_id, r.run, f.value, m.machine, m.event_id,
       f.current_value, l.in_force, l.event_id, FALSE
FROM ocrapp_field f
JOIN ocrapp_read r ON r.id = f.read_id
LEFT JOIN read_event m ON m.field_id = f.id
LEFT JOIN latest l ON l.field_id = f.id
WHERE m.field_id IS NULL OR m.machine IS DISTINCT FROM f.value
   OR l.in_force IS DISTINCT FROM f.current_value
UNION ALL
SELECT l.field_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, l.in_force, l.event_id, TRUE
FROM latest l LEFT JOIN ocrapp_field f ON f.id = l.field_id
WHERE f.id IS NULL
ORDER BY 1
"""


def verify_field_values() -> Iterator[Mismatch]:
    """Every field whose machine read (``value``) is not what its read's audit event recorded,
    or whose value in force (``current_value``) is not what the trail last recorded for it
    (one mismatch per field, naming both when both differ); a field the trail never recorded;
    and a recorded field that is gone (field id order)."""
    with connection.cursor() as cur:
        cur.execute(_RECORDED_VALUES_SQL, {"read_actions": list(READ_VALUE_ACTIONS)})
        rows = cur.fetchall()
    for row in rows:
        fid, name, capture_id, run, value, machine, read_event, current, in_force, event, gone = row
        where = f"field #{fid}"
        if gone:
            message = (
                f"{where}: recorded by audit event #{event} (value {in_force!r}) "
                "no longer exists (deleted behind the application's back)"
            )
        elif read_event is None:
            message = (
                f"{where} ({name} of capture {capture_id} run {run}): value {value!r} "
                "was never recorded by the audit trail"
            )
        else:
            problems = []
            if machine != value:
                problems.append(
                    f"machine read is {value!r} but the audit trail last recorded {machine!r} "
                    f"(event #{read_event})"
                )
            if in_force != current:
                problems.append(
                    f"value in force is {current!r} but the audit trail last recorded "
                    f"{in_force!r} (event #{event})"
                )
            message = f"{where} ({name} of capture {capture_id} run {run}): " + "; ".join(problems)
        yield Mismatch("field_value", "ocrapp.field", str(fid), message)


def verify_search_index() -> Iterator[Mismatch]:
    """Every current search index row (``SerialRecord``, not ``superseded``) that does not match
    its field's value in force (``current_value``
    by ``identifier_key``/``lookalike_key``), name or capture, and every traced field value that
    has no current index row (field id order)."""
    from ocrapp.models import Field, SerialRecord
    from workers.fieldspec import TRACED_FIELDS, identifier_key, lookalike_key

    width = SerialRecord._meta.get_field("value").max_length
    from django.db.models import Exists, OuterRef

    yield from _verify_code_rows()
    rows = (
        # "was" rows keep a superseded value; ``code`` rows are checked by _verify_code_rows
        SerialRecord.objects.filter(superseded=False, source="text")
        .order_by("field_id")
        .values_list(
            "pk",
            "value",
            "skeleton",
            "field_name",
            "capture_id",
            "field_id",
            "field__name",
            "field__current_value",
            "field__read__capture_id",
        )
        .iterator(chunk_size=2000)
    )
    for pk, value, skeleton, field_name, capture_id, fid, f_name, f_value, f_capture in rows:
        want_value = identifier_key(f_value)[:width]
        want_skeleton = lookalike_key(f_value)[:width]
        problems = []
        if value != want_value:
            problems.append(f"value {value!r} should be {want_value!r}")
        if skeleton != want_skeleton:
            problems.append(f"skeleton {skeleton!r} should be {want_skeleton!r}")
        if field_name != f_name:
            problems.append(f"field name {field_name!r} should be {f_name!r}")
        if capture_id != f_capture:
            problems.append(f"capture {capture_id} should be {f_capture}")
        if problems:
            yield Mismatch(
                "search_index",
                "ocrapp.serialrecord",
                str(pk),
                f"search index row #{pk} of field #{fid} ({f_name} = {f_value!r}): "
                + "; ".join(problems),
            )
    missing = (
        Field.objects.filter(name__in=TRACED_FIELDS)
        .exclude(
            Exists(
                SerialRecord.objects.filter(
                    field_id=OuterRef("pk"), superseded=False, source="text"
                )
            )
        )
        .order_by("pk")
        .values_list("pk", "name", "current_value", "read__capture_id")
        .iterator(chunk_size=2000)
    )
    for fid, name, value, capture_id in missing:
        if identifier_key(value):
            yield Mismatch(
                "search_index",
                "ocrapp.field",
                str(fid),
                f"field #{fid} ({name} = {value!r} of capture {capture_id}) "
                "has no search index row",
            )


def _verify_code_rows() -> Iterator[Mismatch]:
    """Every ``code`` search row (a value a code on the label carries, ``services.serial_rows``)
    whose value is not its field's ``code_value`` (field id order)."""
    from ocrapp.models import SerialRecord
    from workers.fieldspec import identifier_key

    width = SerialRecord._meta.get_field("value").max_length
    rows = (
        SerialRecord.objects.filter(source="code")
        .order_by("field_id", "pk")
        .values_list("pk", "value", "field_id", "field__code_value")
        .iterator(chunk_size=2000)
    )
    for pk, value, fid, code_value in rows:
        want = identifier_key(code_value or "")[:width]
        if value != want:
            yield Mismatch(
                "search_index",
                "ocrapp.serialrecord",
                str(pk),
                f"search index row #{pk} of field #{fid}: code value {value!r} should be {want!r}",
            )
