"""Traceability alarms: the rules that raise them and the writes that change their state.

Part of the services layer (writes; ``ocrapp.services`` calls it and re-exports the public
functions); the reads are in ``ocrapp.selectors`` (``alarm_page``, ``alarm_get``, ...).

A read raises alarms in ``services.read_save``'s transaction, after its search rows
(``SerialRecord``) are written, with indexed queries only (``serial_value_idx``,
``serial_skeleton_idx``, the capture foreign key, ``created_at``):

- ``duplicate``: another capture's current serial has the same ``identifier_key`` within the
  product type's duplicate scope (``part_number`` / ``gtin``: the other capture also carries
  this read's part number / GTIN; ``product_type``; ``everywhere``) and window (days either side
  of this capture; 0 = forever). Without a part number (GTIN) on the read, the scope
  ``part_number`` (``gtin``) falls back to the product type.
- ``lookalike``: another capture's serial in the same scope and window has the same
  ``lookalike_key`` but another value (``QX7781234S`` vs ``QX77812345``).
- ``out_of_sequence`` (product types with ``sequential`` on): the serial's numeric part
  (``sequence_pattern``, group 1, default the trailing digits) is not the successor of the
  number of the previous capture of the same line and product type; up to
  ``sequence_tolerance`` skipped numbers are allowed forwards (scrapped labels), any step
  backwards alarms; the same serial again is a duplicate, not a sequence alarm.
- ``mismatch``: a code on the label contradicts the print (each ``Read.mismatches`` entry;
  the review reason ``mislabel`` stays).
- ``not_expected`` (``expected_required`` on): the serial is on no active
  ``ExpectedSerial`` row of the product type (any work order).

A reviewer's correction of a serial (``services.field_revise`` / ``read_review``) re-evaluates
the corrected field and the alarms of other captures that named this one as their pair: an
alarm whose condition no longer holds is closed by the system with a reason, a new condition
opens a new alarm. Every raise and state change writes one audit event; a raise publishes
``events.ALARM_RAISED``.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from ocrapp import audit, events, roles
from ocrapp.errors import ApplicationError, NotFoundError
from ocrapp.models import (
    Alarm,
    Capture,
    ExpectedSerial,
    Field,
    ProductType,
    Read,
    SerialRecord,
)
from workers.fieldspec import identifier_key, lookalike_key

SERIAL_FIELD = "serial_number"
DUPLICATE_SCOPES = ("part_number", "gtin", "product_type", "everywhere")
DEFAULT_CONFIG: dict[str, Any] = {
    "duplicate_scope": "product_type",
    "window_days": 0,
    "sequential": False,
    "sequence_pattern": r"(\d+)$",
    "sequence_tolerance": 0,
    "expected_required": False,
}
MAX_WINDOW_DAYS = 36_500
MAX_TOLERANCE = 1_000_000
REASON_MAX = 500
EXPECTED_IMPORT_MAX_ROWS = 200_000
# kinds a correction of the serial re-evaluates (a mismatch is about the label's code)
REEVALUATED = (
    Alarm.Kind.DUPLICATE,
    Alarm.Kind.LOOKALIKE,
    Alarm.Kind.OUT_OF_SEQUENCE,
    Alarm.Kind.NOT_EXPECTED,
)
PAIR_KINDS = (Alarm.Kind.DUPLICATE, Alarm.Kind.LOOKALIKE)

# audit trail actions
ALARM_RAISED_ACTION = "alarm_raised"
ALARM_ACKNOWLEDGED_ACTION = "alarm_acknowledged"
ALARM_CLOSED_ACTION = "alarm_closed"
EXPECTED_IMPORTED_ACTION = "expected_serials_imported"


# --- configuration --------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def alarm_config_errors(config: Any) -> list[str]:
    """What is wrong with a product type's ``alarm_config`` (empty: it is valid)."""
    if not isinstance(config, Mapping):
        return [_("The alarm settings must be a JSON object.")]
    problems: list[str] = []
    unknown = sorted(set(config) - set(DEFAULT_CONFIG))
    if unknown:
        problems.append(
            _("Unknown alarm settings: %(keys)s (known: %(known)s).")
            % {"keys": ", ".join(map(str, unknown)), "known": ", ".join(DEFAULT_CONFIG)}
        )
    scope = config.get("duplicate_scope", DEFAULT_CONFIG["duplicate_scope"])
    if scope not in DUPLICATE_SCOPES:
        problems.append(
            _("duplicate_scope must be one of %(choices)s.")
            % {"choices": ", ".join(DUPLICATE_SCOPES)}
        )
    for key, top in (("window_days", MAX_WINDOW_DAYS), ("sequence_tolerance", MAX_TOLERANCE)):
        value = config.get(key, 0)
        if not _is_int(value) or not 0 <= value <= top:
            problems.append(
                _("%(key)s must be a whole number from 0 to %(max)s.") % {"key": key, "max": top}
            )
    for key in ("sequential", "expected_required"):
        if not isinstance(config.get(key, False), bool):
            problems.append(_("%(key)s must be true or false.") % {"key": key})
    pattern = config.get("sequence_pattern", DEFAULT_CONFIG["sequence_pattern"])
    if not isinstance(pattern, str) or not pattern or len(pattern) > 200:
        problems.append(_("sequence_pattern must be a regular expression (1-200 characters)."))
    else:
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            problems.append(
                _("sequence_pattern is not a valid regular expression: %(error)s") % {"error": exc}
            )
        else:
            if compiled.groups > 1:
                problems.append(
                    _("sequence_pattern must have at most one group (the numeric part).")
                )
    return problems


def alarm_config(product_type: ProductType) -> dict[str, Any]:
    """The product type's alarm settings with the defaults for the missing keys."""
    config = dict(DEFAULT_CONFIG)
    if isinstance(product_type.alarm_config, Mapping):
        config.update(product_type.alarm_config)
    return config


def sequence_number(value: str, pattern: str) -> int | None:
    """The numeric part of a normalised serial (``pattern``'s group 1, else its whole match),
    or None when it has none."""
    try:
        match = re.search(pattern, value)
    except re.error:
        return None
    if match is None:
        return None
    text = match.group(1) if match.re.groups else match.group(0)
    if not text or not (text.isascii() and text.isdigit()):
        return None
    return int(text)


# --- detection ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    kind: str
    other_capture_id: Any = None
    other_display: str = ""
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class _Context:
    capture: Capture
    read: Read
    config: dict
    part_number: str  # identifier_key of the read's part number in force ("" if none)
    gtin: str


def _context(capture: Capture, read: Read, fields: Iterable[Field]) -> _Context:
    values: dict[str, str] = {}
    for f in fields:
        key = identifier_key(f.current_value)[:128]
        if key and f.name not in values:
            values[f.name] = key
    return _Context(
        capture=capture,
        read=read,
        config=alarm_config(capture.product_type),
        part_number=values.get("part_number", ""),
        gtin=values.get("gtin", ""),
    )


def _serials() -> QuerySet[SerialRecord]:
    """Current serial rows of captures not withdrawn."""
    return SerialRecord.objects.filter(
        field_name=SERIAL_FIELD,
        source="text",
        superseded=False,
        capture__withdrawn_at__isnull=True,
    )


def _peers(ctx: _Context) -> tuple[QuerySet[SerialRecord], str]:
    """Other captures' serial rows inside the duplicate scope and window, and the scope used."""
    capture, cfg = ctx.capture, ctx.config
    qs = _serials().exclude(capture_id=capture.pk)
    scope = cfg["duplicate_scope"]
    key = {"part_number": ctx.part_number, "gtin": ctx.gtin}.get(scope)
    if scope in ("part_number", "gtin") and not key:
        scope = "product_type"  # the read carries no part number / GTIN: its product type
    if scope == "product_type":
        qs = qs.filter(product_type_id=capture.product_type_id)
    elif scope in ("part_number", "gtin"):
        same_key = SerialRecord.objects.filter(
            capture_id=OuterRef("capture_id"),
            field_name=scope,
            source="text",
            superseded=False,
            value=key,
        )
        qs = qs.filter(Exists(same_key))
    days = cfg["window_days"]
    if days:
        span = timedelta(days=days)
        qs = qs.filter(
            created_at__gte=capture.created_at - span, created_at__lte=capture.created_at + span
        )
    return qs, scope


def _pair(qs: QuerySet[SerialRecord], prefer: Any) -> tuple[Any, str, int] | None:
    """(other capture id, its value as printed, how many captures) of a peer query: the
    preferred capture when it is still among them (a re-evaluation keeps its pair), else the
    newest."""
    rows = qs.order_by("-created_at", "-id").values_list("capture_id", "display", "value")
    first = None
    if prefer is not None:
        first = rows.filter(capture_id=prefer).first()
    first = first or rows.first()
    if first is None:
        return None
    count = qs.order_by().values("capture_id").distinct()[:1000].count()
    return first[0], first[1] or first[2], count


def _detect(
    ctx: _Context, field_row: Field, key: str, prefer: Mapping[str, Any] | None = None
) -> dict[str, Finding]:
    """The serial alarms (all but ``mismatch``) that ``key`` raises for ``field_row``."""
    prefer = prefer or {}
    found: dict[str, Finding] = {}
    if not key:
        return found
    cfg = ctx.config
    peers, scope = _peers(ctx)
    base = {"scope": scope, "window_days": cfg["window_days"]}
    dup = _pair(peers.filter(value=key), prefer.get(Alarm.Kind.DUPLICATE))
    if dup is not None:
        found[Alarm.Kind.DUPLICATE] = Finding(
            Alarm.Kind.DUPLICATE, dup[0], dup[1], {**base, "captures": dup[2]}
        )
    skeleton = lookalike_key(field_row.current_value)[:128]
    look = _pair(
        peers.filter(skeleton=skeleton).exclude(value=key), prefer.get(Alarm.Kind.LOOKALIKE)
    )
    if look is not None:
        found[Alarm.Kind.LOOKALIKE] = Finding(
            Alarm.Kind.LOOKALIKE, look[0], look[1], {**base, "captures": look[2]}
        )
    seq = _sequence(ctx, key)
    if seq is not None:
        found[Alarm.Kind.OUT_OF_SEQUENCE] = seq
    if cfg["expected_required"] and not (
        ExpectedSerial.objects.filter(
            product_type_id=ctx.capture.product_type_id, value=key, active=True
        ).exists()
    ):
        found[Alarm.Kind.NOT_EXPECTED] = Finding(Alarm.Kind.NOT_EXPECTED)
    return found


def _sequence(ctx: _Context, key: str) -> Finding | None:
    cfg, capture = ctx.config, ctx.capture
    if not cfg["sequential"]:
        return None
    number = sequence_number(key, cfg["sequence_pattern"])
    if number is None:
        return None
    previous = (
        _serials()
        .filter(
            product_type_id=capture.product_type_id,
            capture__station_line=capture.station_line,
            created_at__lt=capture.created_at,
        )
        .exclude(capture_id=capture.pk)
        .order_by("-created_at", "-id")
        .values_list("capture_id", "value", "display")
        .first()
    )
    if previous is None:
        return None
    prev_capture, prev_value, prev_display = previous
    prev_number = sequence_number(prev_value, cfg["sequence_pattern"])
    if prev_number is None or prev_value == key:  # the same serial again: a duplicate
        return None
    tolerance = cfg["sequence_tolerance"]
    if prev_number < number <= prev_number + 1 + tolerance:
        return None
    return Finding(
        Alarm.Kind.OUT_OF_SEQUENCE,
        prev_capture,
        prev_display or prev_value,
        {
            "line": capture.station_line,
            "previous": prev_value,
            "previous_number": prev_number,
            "number": number,
            "expected": prev_number + 1,
            "tolerance": tolerance,
        },
    )


def _alarm_state(alarm: Alarm) -> dict[str, Any]:
    return {
        "kind": alarm.kind,
        "state": alarm.state,
        "capture": str(alarm.capture_id),
        "read": alarm.read_id,
        "field": alarm.field_id,
        "other_capture": str(alarm.other_capture_id) if alarm.other_capture_id else None,
        "value": alarm.value,
        "display": alarm.display,
        "other_display": alarm.other_display,
        "part_number": alarm.part_number,
        "gtin": alarm.gtin,
        "line": alarm.line,
        "station": alarm.station_label,
        "product_type": alarm.product_type_id,
        "details": alarm.details,
    }


def _raise(
    ctx: _Context, *, finding: Finding, field_row: Field | None, display: str, actor: Any
) -> Alarm:
    capture = ctx.capture
    alarm = Alarm.objects.create(
        kind=finding.kind,
        capture=capture,
        read=ctx.read,
        field=field_row,
        other_capture_id=finding.other_capture_id,
        value=identifier_key(display)[:128],
        display=display.strip()[:128],
        other_display=(finding.other_display or "")[:128],
        part_number=ctx.part_number,
        gtin=ctx.gtin,
        line=capture.station_line,
        station_id=capture.station_id,
        station_label=capture.station_label[:210],
        product_type_id=capture.product_type_id,
        details=dict(finding.details),
    )
    audit.record(actor=actor, action=ALARM_RAISED_ACTION, obj=alarm, after=_alarm_state(alarm))
    events.publish(
        events.ALARM_RAISED,
        {
            "alarm_id": alarm.pk,
            "kind": alarm.kind,
            "capture_id": str(capture.pk),
            "other_capture_id": str(alarm.other_capture_id) if alarm.other_capture_id else None,
            "value": alarm.display,
            "station_id": capture.station_id,
            "product_type_id": capture.product_type_id,
        },
    )
    return alarm


def read_alarms_raise(*, capture: Capture, read: Read, fields: list[Field]) -> list[Alarm]:
    """Raise the alarms of a read just saved (``read_save``'s transaction, after its search
    rows): every serial alarm of each serial field, and a ``mismatch`` per printed field a
    code contradicts."""
    ctx = _context(capture, read, fields)
    raised: list[Alarm] = []
    for f in fields:
        if f.name != SERIAL_FIELD:
            continue
        key = identifier_key(f.current_value)[:128]
        for finding in _detect(ctx, f, key).values():
            raised.append(
                _raise(ctx, finding=finding, field_row=f, display=f.current_value, actor=None)
            )
    by_name = {f.name: f for f in fields}
    for m in read.mismatches or ():
        name = str(m.get("field") or "")
        finding = Finding(
            Alarm.Kind.MISMATCH,
            None,
            str(m.get("coded") or ""),
            {
                "field": name,
                "code_format": m.get("code_format"),
                "source": m.get("source"),
            },
        )
        printed = str(m.get("printed") or "")
        raised.append(
            _raise(ctx, finding=finding, field_row=by_name.get(name), display=printed, actor=None)
        )
    return raised


def _close(alarm: Alarm, *, actor: Any, reason: str) -> Alarm:
    before = {"state": alarm.state}
    alarm.state = Alarm.State.CLOSED
    alarm.closed_at = timezone.now()
    alarm.closed_by = actor if getattr(actor, "pk", None) else None
    alarm.closed_by_name = audit.printed_name(alarm.closed_by)
    alarm.close_reason = reason
    alarm.save(update_fields=["state", "closed_at", "closed_by", "closed_by_name", "close_reason"])
    audit.record(
        actor=alarm.closed_by,
        action=ALARM_CLOSED_ACTION,
        obj=alarm,
        before=before,
        after={"state": alarm.state, "by": alarm.closed_by_name},
        reason=reason,
    )
    return alarm


def _reevaluate(field_row: Field, capture: Capture, *, actor: Any, why: str) -> None:
    read = field_row.read
    fields = list(read.fields.all())
    ctx = _context(capture, read, fields)
    key = identifier_key(field_row.current_value)[:128]
    active = list(
        Alarm.objects.select_for_update()
        .filter(field=field_row, kind__in=REEVALUATED)
        .exclude(state=Alarm.State.CLOSED)
        .order_by("id")
    )
    prefer = {a.kind: a.other_capture_id for a in active if a.value == key}
    found = _detect(ctx, field_row, key, prefer)
    kept: set[str] = set()
    for alarm in active:
        finding = found.get(alarm.kind)
        still = (
            finding is not None
            and alarm.value == key
            and alarm.kind not in kept
            and (alarm.kind not in PAIR_KINDS or alarm.other_capture_id == finding.other_capture_id)
        )
        if still:
            kept.add(alarm.kind)
            continue
        _close(alarm, actor=None, reason=why)
    for kind, finding in found.items():
        if kind not in kept:
            _raise(
                ctx,
                finding=finding,
                field_row=field_row,
                display=field_row.current_value,
                actor=actor,
            )


def field_alarms_reevaluate(*, field_row: Field, capture: Capture, actor: Any) -> None:
    """After a correction of ``field_row`` (a serial; in the correction's transaction): close
    what the new value no longer raises, raise what it newly raises, and re-evaluate the
    alarms of other captures paired with this one."""
    if field_row.name != SERIAL_FIELD:
        return
    shown = field_row.current_value or "—"
    why = _("Closed by the system: the serial was corrected to %(value)s.") % {"value": shown}
    _reevaluate(field_row, capture, actor=actor, why=why)
    paired = (
        Alarm.objects.filter(other_capture=capture, kind__in=PAIR_KINDS, field__isnull=False)
        .exclude(state=Alarm.State.CLOSED)
        .select_related("field", "field__read", "capture", "capture__product_type")
        .order_by("id")
    )
    for alarm in list(paired):
        why_pair = _(
            "Closed by the system: the serial of the other capture was corrected to %(value)s."
        ) % {"value": shown}
        _reevaluate(alarm.field, alarm.capture, actor=actor, why=why_pair)


# --- states ---------------------------------------------------------------------------------


def _reason(reason: str) -> str:
    text = (reason or "").strip()
    if "\x00" in text:
        raise ApplicationError(
            "invalid",
            _("reason must not contain NUL characters."),
            details={"reason": ["nul"]},
        )
    if not text:
        raise ApplicationError(
            "reason_required",
            _("Give a reason."),
            details={"reason": [_("This field is required.")]},
        )
    if len(text) > REASON_MAX:
        raise ApplicationError(
            "invalid",
            _("reason must be at most %(max)s characters.") % {"max": REASON_MAX},
            details={"reason": ["too_long"]},
        )
    return text


def _locked_alarm(*, alarm_id: Any, user: Any) -> Alarm:
    from ocrapp import selectors

    pk = selectors.as_id(alarm_id)
    alarm = None
    if pk is not None:
        alarm = roles.scoped(Alarm.objects.select_for_update().filter(pk=pk), user).first()
    if alarm is None:
        raise NotFoundError("not_found", _("No alarm %(id)s.") % {"id": alarm_id})
    return alarm


def _require_manage(user: Any) -> None:
    roles.require(
        user, "manage_alarms", message=_("You are not allowed to acknowledge or close alarms.")
    )


@transaction.atomic
def alarm_acknowledge(*, alarm_id: Any, user: Any, reason: str) -> Alarm:
    """Acknowledge an open alarm with a reason (``manage_alarms``: quality managers); 409
    ``alarm_not_open`` once it was acknowledged or closed."""
    _require_manage(user)
    text = _reason(reason)
    alarm = _locked_alarm(alarm_id=alarm_id, user=user)
    if alarm.state != Alarm.State.OPEN:
        raise ApplicationError(
            "alarm_not_open",
            _("This alarm is %(state)s already; only an open alarm can be acknowledged.")
            % {"state": alarm.get_state_display()},
            status_code=409,
        )
    alarm.state = Alarm.State.ACKNOWLEDGED
    alarm.acknowledged_at = timezone.now()
    alarm.acknowledged_by = user
    alarm.acknowledged_by_name = audit.printed_name(user)
    alarm.acknowledge_reason = text
    alarm.save(
        update_fields=[
            "state",
            "acknowledged_at",
            "acknowledged_by",
            "acknowledged_by_name",
            "acknowledge_reason",
        ]
    )
    audit.record(
        actor=user,
        action=ALARM_ACKNOWLEDGED_ACTION,
        obj=alarm,
        before={"state": Alarm.State.OPEN},
        after={"state": alarm.state, "by": alarm.acknowledged_by_name},
        reason=text,
    )
    return alarm


@transaction.atomic
def alarm_close(*, alarm_id: Any, user: Any, reason: str) -> Alarm:
    """Close an open or acknowledged alarm with a reason (``manage_alarms``); 409
    ``alarm_closed`` when it is closed already."""
    _require_manage(user)
    text = _reason(reason)
    alarm = _locked_alarm(alarm_id=alarm_id, user=user)
    if alarm.state == Alarm.State.CLOSED:
        raise ApplicationError("alarm_closed", _("This alarm is closed already."), status_code=409)
    return _close(alarm, actor=user, reason=text)


# --- expected serials -----------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectedImport:
    """What an import did: rows ``added``, ``reactivated``, ``unchanged`` (already active),
    ``deactivated`` (``replace``: active rows of the same work orders not in the file), the
    work orders it touched and the product type's active rows afterwards."""

    added: int
    reactivated: int
    unchanged: int
    deactivated: int
    work_orders: list[str]
    active_total: int


_HEADER_CELLS = {"serial", "serial_number", "sn", "s/n"}


def _parse_expected(data: bytes, work_order: str) -> list[tuple[str, str, str]]:
    """(work order, key, as given) per CSV row: ``serial[,work_order]``, an optional header
    row; every problem is one 400 naming its line (nothing is imported)."""
    if b"\x00" in data:
        raise ApplicationError("invalid_csv", _("The file must not contain NUL bytes."))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ApplicationError("invalid_csv", _("The file must be UTF-8 text (CSV).")) from None
    rows: list[tuple[str, str, str]] = []
    problems: list[str] = []
    try:
        reader = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise ApplicationError(
            "invalid_csv", _("The file is not valid CSV: %(error)s") % {"error": exc}
        ) from None
    for number, cells in enumerate(reader, start=1):
        cells = [c.strip() for c in cells]
        if not any(cells):
            continue
        if number == 1 and cells[0].lower() in _HEADER_CELLS:
            continue
        shown = cells[0]
        wo = (cells[1] if len(cells) > 1 and cells[1] else work_order).strip()
        key = identifier_key(shown)
        if not key:
            problems.append(_("line %(n)s: no serial") % {"n": number})
        elif len(key) > 128 or len(shown) > 128:
            problems.append(
                _("line %(n)s: the serial is longer than 128 characters") % {"n": number}
            )
        elif len(wo) > 64:
            problems.append(
                _("line %(n)s: the work order is longer than 64 characters") % {"n": number}
            )
        else:
            rows.append((wo, key, shown))
        if len(rows) > EXPECTED_IMPORT_MAX_ROWS:
            raise ApplicationError(
                "invalid_csv",
                _("At most %(max)s serials per file.") % {"max": EXPECTED_IMPORT_MAX_ROWS},
            )
    if problems:
        raise ApplicationError(
            "invalid_csv",
            _("The file has %(n)s bad rows; nothing was imported.") % {"n": len(problems)},
            details={"rows": problems[:50]},
        )
    if not rows:
        raise ApplicationError("invalid_csv", _("The file has no serials."))
    return rows


def _set_active(product_type: ProductType, keys: list[tuple[str, str]], *, active: bool) -> int:
    """Set ``active`` on the rows ``(work order, value)`` of ``product_type``; rows changed."""
    by_order: dict[str, list[str]] = {}
    for wo, value in keys:
        by_order.setdefault(wo, []).append(value)
    changed = 0
    for wo, values in by_order.items():
        for start in range(0, len(values), 5000):
            changed += ExpectedSerial.objects.filter(
                product_type=product_type, work_order=wo, value__in=values[start : start + 5000]
            ).update(active=active)
    return changed


@transaction.atomic
def expected_serials_import(
    *,
    product_type_id: Any,
    user: Any,
    data: bytes,
    work_order: str = "",
    replace: bool = False,
) -> ExpectedImport:
    """Import an expected-serials list from CSV (one serial per row, optional second column:
    its work order, else ``work_order``) for a product type (``manage_alarms``). Existing rows
    are reactivated; ``replace`` deactivates the active rows of the same work orders that the
    file does not list. All or nothing; one audit event."""
    _require_manage(user)
    from ocrapp import selectors

    work_order = (work_order or "").strip()
    if "\x00" in work_order or len(work_order) > 64:
        raise ApplicationError(
            "invalid", _("work_order must be at most 64 characters, without NUL characters.")
        )
    pk = selectors.as_id(product_type_id)
    product_type = ProductType.objects.filter(pk=pk).first() if pk else None
    if product_type is None:
        raise NotFoundError("not_found", _("No product type %(id)s.") % {"id": product_type_id})
    rows = _parse_expected(data, work_order)
    wanted: dict[tuple[str, str], str] = {}
    for wo, key, shown in rows:
        wanted.setdefault((wo, key), shown)
    orders = sorted({wo for wo, _k in wanted})
    existing = {
        (wo, value): active
        for wo, value, active in ExpectedSerial.objects.filter(
            product_type=product_type, work_order__in=orders
        ).values_list("work_order", "value", "active")
    }
    new = [
        ExpectedSerial(product_type=product_type, work_order=wo, value=key, display=shown[:128])
        for (wo, key), shown in wanted.items()
        if (wo, key) not in existing
    ]
    # a concurrent import of the same rows is no error (its rows stand)
    ExpectedSerial.objects.bulk_create(new, batch_size=5000, ignore_conflicts=True)
    revive = [k for k in wanted if existing.get(k) is False]
    _set_active(product_type, revive, active=True)
    deactivated = 0
    if replace:
        stale = [k for k, active in existing.items() if active and k not in wanted]
        deactivated = _set_active(product_type, stale, active=False)
    report = ExpectedImport(
        added=len(new),
        reactivated=len(revive),
        unchanged=sum(1 for k in wanted if existing.get(k) is True),
        deactivated=deactivated,
        work_orders=orders,
        active_total=ExpectedSerial.objects.filter(product_type=product_type, active=True).count(),
    )
    audit.record(
        actor=user,
        action=EXPECTED_IMPORTED_ACTION,
        obj=product_type,
        after={
            "added": report.added,
            "reactivated": report.reactivated,
            "unchanged": report.unchanged,
            "deactivated": report.deactivated,
            "work_orders": orders,
            "replace": replace,
            "active_total": report.active_total,
        },
    )
    return report
