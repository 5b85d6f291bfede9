"""Exports of search results: CSV and XLSX (one row per field of a read), EPCIS 2.0 JSON-LD.

What is exported is exactly what the capture list or the serial search shows for the same
filters (``selectors.capture_export_qs`` / ``selectors.serial_export_qs``: the same filter
parsing and the same ``roles.scoped`` scope), read in keyset chunks of :data:`EXPORT_CHUNK`
captures or index rows (``(created_at, id)`` after the last one of the chunk before): the
result is never held in memory, whatever its size.

- CSV: a header block (``# `` lines: what was exported, the filters, the export time in the
  user's zone, the user), a blank line, then one row per field (:data:`COLUMNS`); streamed.
- XLSX: the same rows on sheet "Reads" (openpyxl ``write_only``: rows go to a temporary file,
  strings inline), a sheet "About" with the filters and the time; the finished workbook is
  spooled to a temporary file and streamed from it.
- EPCIS 2.0 JSON-LD (:func:`epcis_document`): one ``ObjectEvent`` per read; each signed
  correction adds the erroneous event again with an ``errorDeclaration`` and a corrective
  event (see :func:`_read_events`); streamed event by event.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from django.db import connection
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from ocrapp import selectors
from ocrapp.models import Field, FieldRevision, Read, SerialRecord
from ocrapp.security import public_url
from workers.fieldspec import identifier_key, lookalike_key

EXPORT_FORMATS = ("csv", "xlsx", "epcis")
EXPORT_SCOPES = ("captures", "serials")
EXPORT_CHUNK = 2000
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "epcis": "application/ld+json",
}
EXTENSIONS = {"csv": "csv", "xlsx": "xlsx", "epcis": "jsonld"}

# One row per field of the latest read of each capture (a capture without fields: one row).
COLUMNS = (
    "capture_id",
    "captured_at",
    "line",
    "station",
    "product_type",
    "status",
    "review",
    "field",
    "value",
    "machine_value",
    "raw_value",
    "valid",
    "confidence",
    "source",
    "code_value",
    "was",
    "revisions",
    "signed_by",
    "alarms",
    "client_ref",
    "sha256",
    "withdrawn",
)
SEARCH_COLUMNS = ("match", "matched_value", "matched_source", "matched_was")

EPCIS_CONTEXT = "https://ref.gs1.org/standards/epcis/epcis-context.jsonld"
CBV_BIZSTEP = "https://ref.gs1.org/cbv/BizStep-"
CBV_ER = "https://ref.gs1.org/cbv/ER-"
EXT_PREFIX = "sr"


def ext_namespace() -> str:
    """The namespace of our EPCIS extension keys (``sr:read``), under ``PUBLIC_BASE_URL``."""
    return public_url("/ns/epcis#")


@dataclass
class FieldRow:
    name: str
    value: str  # in force, as printed where the index knows the printed form
    machine_value: str
    raw_value: str
    valid: bool
    confidence: float
    source: str
    code_value: str
    revisions: list[dict] = field(default_factory=list)
    match: str = ""  # search export: exact | prefix | lookalike | similar
    matched_value: str = ""
    matched_source: str = ""
    matched_was: bool = False


@dataclass
class ReadGroup:
    """One capture, its latest read and that read's fields (what one export row group is)."""

    capture: dict
    read: dict | None
    fields: list[FieldRow]
    review: str = ""
    gtin: str = ""
    rows: list[FieldRow] | None = None  # the rows to write (search: only the matched ones)


# --- reading: keyset chunks ------------------------------------------------------------------

_CAPTURE_VALUES = (
    "id",
    "created_at",
    "station_id",
    "station_line",
    "station_name",
    "product_type__name",
    "status",
    "client_ref",
    "sha256",
    "withdrawn_at",
)


def _keyset(qs, newest: bool, last: tuple | None):
    if last is None:
        return qs
    at, pk = last
    if newest:
        return qs.filter(Q(created_at__lt=at) | Q(created_at=at, id__lt=pk))
    return qs.filter(Q(created_at__gt=at) | Q(created_at=at, id__gt=pk))


def _chunks(qs, values: tuple[str, ...], newest: bool, chunk: int) -> Iterator[list[dict]]:
    order = ("-created_at", "-id") if newest else ("created_at", "id")
    last = None
    while True:
        rows = list(_keyset(qs, newest, last).order_by(*order).values(*values)[:chunk])
        if not rows:
            return
        yield rows
        if len(rows) < chunk:
            return
        last = (rows[-1]["created_at"], rows[-1]["id"])


def _review_state(read: dict | None, fields: list[FieldRow]) -> str:
    if read is None:
        return ""
    if fields and all(f.revisions for f in fields):
        return "reviewed"
    return "needs_review" if read["needs_review"] else "accepted"


def _rows(sql: str, params: list) -> list[dict]:
    """Dict rows of one statement. The id lists go as one array parameter (``= ANY(%s)``):
    ``__in`` with 2,000-6,000 ids spent more time building and parsing placeholders than the
    database spent answering (bench/NOTES-export.md)."""
    with connection.cursor() as cur:
        cur.execute(sql, params)
        names = [c.name for c in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _groups_for(captures: list[dict], *, codes: bool = True) -> list[ReadGroup]:
    """The latest read of each capture with its fields, revisions and printed forms (four
    queries per chunk); ``codes``: also the read's decoded codes (for the GTIN of EPCIS)."""
    ids = [c["id"] for c in captures]
    read_cols = "id, capture_id, run, needs_review, mismatches, created_at" + (
        ", codes" if codes else ""
    )
    reads = {
        r["capture_id"]: r
        for r in _rows(
            f"SELECT DISTINCT ON (capture_id) {read_cols} FROM {Read._meta.db_table} "
            "WHERE capture_id = ANY(%s::uuid[]) ORDER BY capture_id, run DESC",
            [ids],
        )
    }
    for r in reads.values():  # Django's connection hands jsonb over as text (JSONField decodes it)
        for k in ("mismatches", "codes"):
            if isinstance(r.get(k), str):
                r[k] = json.loads(r[k])
    read_ids = [r["id"] for r in reads.values()]
    by_read: dict[int, list[tuple[int, FieldRow]]] = {}
    field_ids: list[int] = []
    for f in _rows(
        "SELECT id, read_id, name, raw_value, value, current_value, confidence, valid, source, "
        f"code_value FROM {Field._meta.db_table} WHERE read_id = ANY(%s::bigint[]) ORDER BY read_id, id",
        [read_ids],
    ):
        field_ids.append(f["id"])
        row = FieldRow(
            name=f["name"],
            value=f["current_value"],
            machine_value=f["value"],
            raw_value=f["raw_value"],
            valid=f["valid"],
            confidence=round(float(f["confidence"]), 4),
            source=f["source"],
            code_value=f["code_value"] or "",
        )
        by_read.setdefault(f["read_id"], []).append((f["id"], row))
    rows_by_id = {fid: row for rows in by_read.values() for fid, row in rows}
    for rev in _rows(
        "SELECT field_id, seq, old_value, new_value, meaning, reason_code, signer_name, "
        f"signed_at FROM {FieldRevision._meta.db_table} WHERE field_id = ANY(%s::bigint[]) "
        "ORDER BY field_id, seq",
        [field_ids],
    ):
        rows_by_id[rev["field_id"]].revisions.append(rev)
    for rec in _rows(
        f"SELECT field_id, display FROM {SerialRecord._meta.db_table} "
        "WHERE field_id = ANY(%s::bigint[]) AND source = 'text' AND NOT superseded AND display <> ''",
        [field_ids],
    ):
        rows_by_id[rec["field_id"]].value = rec["display"]
    groups = []
    for c in captures:
        read = reads.get(c["id"])
        fields = [row for _fid, row in by_read.get(read["id"], [])] if read else []
        group = ReadGroup(capture=c, read=read, fields=fields)
        group.review = _review_state(read, fields)
        group.gtin = _gtin(read, fields)
        group.capture["_field_ids"] = (
            [fid for fid, _row in by_read.get(read["id"], [])] if read else []
        )
        groups.append(group)
    return groups


def _gtin(read: dict | None, fields: list[FieldRow]) -> str:
    """The GTIN of the read: a ``gtin`` field, else a valid GS1 (01) element of a code."""
    for f in fields:
        if f.name == "gtin" and f.value.isdigit() and len(f.value) in (8, 12, 13, 14):
            return f.value.zfill(14)
    for code in (read or {}).get("codes") or ():
        for e in code.get("gs1") or ():
            if e.get("ai") == "01" and e.get("valid"):
                return str(e.get("value"))
    return ""


def capture_groups(
    *, user: Any, filters: selectors.SearchFilters, chunk: int = EXPORT_CHUNK, codes: bool = True
):
    """Every capture of the capture list for ``filters`` (``user``'s scope), in its order, as
    :class:`ReadGroup` s, chunk by chunk (``codes=False``: without the reads' codes)."""
    qs = selectors.capture_export_qs(user=user, filters=filters)
    for captures in _chunks(qs, _CAPTURE_VALUES, filters.sort != "oldest", chunk):
        yield from _groups_for(captures, codes=codes)


def _match_kind(value: str, skeleton: str, norm: str, skel: str) -> str:
    if value == norm:
        return "exact"
    if value.startswith(norm):
        return "prefix"
    if skeleton == skel:
        return "lookalike"
    return "similar"


def serial_groups(
    *, user: Any, filters: selectors.SearchFilters, chunk: int = EXPORT_CHUNK, codes: bool = True
):
    """Every read the serial search for ``filters.q`` finds (index rows matching exactly, by
    prefix, look-alike or similar, as the kinds in ``filters.match``), newest first, grouped
    by capture; each group's ``rows`` are the matched fields only."""
    norm, skel = identifier_key(filters.q)[:128], lookalike_key(filters.q)[:128]
    if not norm:
        return
    qs = selectors.serial_export_qs(user=user, filters=filters)
    values = ("id", "created_at", "capture_id", "field_id", "value", "skeleton", "display")
    values += ("source", "superseded")
    pending: ReadGroup | None = None
    for records in _chunks(qs, values, filters.sort != "oldest", chunk):
        cap_ids = list(dict.fromkeys(r["capture_id"] for r in records))
        caps = {
            c["id"]: c
            for c in selectors.capture_export_qs(user=user, filters=selectors.SearchFilters())
            .filter(pk__in=cap_ids)
            .values(*_CAPTURE_VALUES)
        }
        found = [caps[i] for i in cap_ids if i in caps]
        groups = {g.capture["id"]: g for g in _groups_for(found, codes=codes)}
        for rec in records:
            group = groups.get(rec["capture_id"])
            if group is None:
                continue
            try:
                row = group.fields[group.capture["_field_ids"].index(rec["field_id"])]
            except ValueError:
                continue  # a field of an older run (the export shows the latest read)
            hit = FieldRow(**{**row.__dict__, "revisions": row.revisions})
            hit.match = _match_kind(rec["value"], rec["skeleton"], norm, skel)
            hit.matched_value = rec["display"] or rec["value"]
            hit.matched_source = rec["source"]
            hit.matched_was = rec["superseded"]
            if pending is not None and pending.capture["id"] == group.capture["id"]:
                pending.rows.append(hit)
                continue
            if pending is not None:
                yield pending
            pending = ReadGroup(
                capture=group.capture,
                read=group.read,
                fields=group.fields,
                review=group.review,
                gtin=group.gtin,
                rows=[hit],
            )
    if pending is not None:
        yield pending


def export_groups(
    *, user: Any, filters: selectors.SearchFilters, scope: str, chunk: int, codes: bool = True
):
    if scope == "serials":
        return serial_groups(user=user, filters=filters, chunk=chunk, codes=codes)
    return capture_groups(user=user, filters=filters, chunk=chunk, codes=codes)


# --- rows (CSV, XLSX) ------------------------------------------------------------------------


def _local(when: dt.datetime | None, tz: dt.tzinfo) -> str:
    return timezone.localtime(when, tz).isoformat(timespec="seconds") if when else ""


def group_rows(group: ReadGroup, tz: dt.tzinfo, *, search: bool) -> Iterator[list]:
    c = group.capture
    alarms = len((group.read or {}).get("mismatches") or ())
    head = [
        str(c["id"]),
        _local(c["created_at"], tz),
        c["station_line"],
        f"{c['station_line']} / {c['station_name']}",
        c["product_type__name"],
        c["status"],
        group.review,
    ]
    tail = [alarms, c["client_ref"], c["sha256"], "yes" if c["withdrawn_at"] else ""]
    rows = group.rows if group.rows is not None else group.fields
    if not rows:
        yield head + [""] * 10 + tail + ([""] * len(SEARCH_COLUMNS) if search else [])
        return
    for f in rows:
        was = [r["old_value"] for r in f.revisions if r["old_value"] != r["new_value"]]
        signed = f.revisions[-1]["signer_name"] if f.revisions else ""
        cells = head + [
            f.name,
            f.value,
            f.machine_value,
            f.raw_value,
            "yes" if f.valid else "no",
            f.confidence,
            f.source,
            f.code_value,
            " | ".join(was),
            len(f.revisions),
            signed,
        ]
        cells += tail
        if search:
            cells += [f.match, f.matched_value, f.matched_source, "yes" if f.matched_was else ""]
        yield cells


def _safe_cell(value: Any) -> Any:
    """Text that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@`` first) gets a
    leading apostrophe (CSV injection); numbers stay numbers."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


@dataclass(frozen=True)
class ExportInfo:
    """What the header block / About sheet says: scope, filters (as given), time, who."""

    scope: str
    params: list[tuple[str, str]]
    exported_at: dt.datetime
    tz_name: str
    user: str

    def lines(self) -> list[tuple[str, str]]:
        what = _("Serial search") if self.scope == "serials" else _("Captures")
        filters = ", ".join(f"{k}={v}" for k, v in self.params) or _("none")
        return [
            (_("Export"), what),
            (_("Filters"), filters),
            (_("Exported at"), self.exported_at.isoformat(timespec="seconds")),
            (_("Time zone"), self.tz_name),
            (_("Exported by"), self.user),
        ]


def csv_stream(groups: Iterable[ReadGroup], info: ExportInfo, tz: dt.tzinfo, counter: list):
    """The CSV bytes, a chunk of rows at a time; ``counter[0]`` counts the rows written."""
    search = info.scope == "serials"
    buf = io.StringIO()
    writer = csv.writer(buf)
    buf.write("\ufeff")  # Excel reads UTF-8 (Korean names) only with a BOM
    for label, value in info.lines():
        writer.writerow([f"# {label}: {value}"])
    writer.writerow([])
    writer.writerow(COLUMNS + (SEARCH_COLUMNS if search else ()))
    n = 0
    for group in groups:
        for row in group_rows(group, tz, search=search):
            writer.writerow([_safe_cell(v) for v in row])
            n += 1
        if buf.tell() > 64 * 1024:
            counter[0] = n
            yield buf.getvalue().encode("utf-8")
            buf.seek(0)
            buf.truncate()
    counter[0] = n
    yield buf.getvalue().encode("utf-8")


def xlsx_file(groups: Iterable[ReadGroup], info: ExportInfo, tz: dt.tzinfo, counter: list):
    """The workbook in a spooled temporary file (rewound): sheet "Reads", sheet "About"."""
    from openpyxl import Workbook

    search = info.scope == "serials"
    wb = Workbook(write_only=True)
    ws = wb.create_sheet("Reads")
    ws.append(list(COLUMNS + (SEARCH_COLUMNS if search else ())))
    n = 0
    for group in groups:
        for row in group_rows(group, tz, search=search):
            ws.append([_safe_cell(v) for v in row])
            n += 1
    about = wb.create_sheet("About")
    for label, value in info.lines():
        about.append([label, value])
    about.append([_("Rows"), n])
    counter[0] = n
    out = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)
    wb.save(out)
    out.seek(0)
    return out


def file_chunks(fh, size: int = 256 * 1024) -> Iterator[bytes]:
    with fh:
        while part := fh.read(size):
            yield part


# --- EPCIS 2.0 JSON-LD -------------------------------------------------------------------------


def _utc_ms(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _offset(when: dt.datetime, tz: dt.tzinfo) -> str:
    off = timezone.localtime(when, tz).utcoffset() or dt.timedelta()
    minutes = int(off.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def epc_uri(*, serial: str, gtin: str, product_type: str) -> str:
    """The identifier of the serialised item: a GS1 Digital Link URI
    ``https://id.gs1.org/01/{gtin}/21/{serial}`` when a GTIN is known, else our own URI
    ``{PUBLIC_BASE_URL}/id/{product type}/{serial}`` (an EPC URN needs a GS1 company prefix,
    which a serial alone does not give)."""
    if gtin:
        return f"https://id.gs1.org/01/{gtin}/21/{quote(serial, safe='')}"
    return public_url(f"/id/{quote(product_type, safe='')}/{quote(serial, safe='')}")


def read_point(station_id: int) -> str:
    return public_url(f"/id/stations/{station_id}")


def _flatten(prefix: str, value: Any) -> list[str]:
    """``name=value`` pairs of an extension value, nested keys joined (see event_hash)."""
    if isinstance(value, dict):
        out: list[str] = []
        for k in sorted(value):
            out += _flatten(f"{prefix}{k}", value[k])
        return out
    if isinstance(value, list):
        return sorted(p for item in value for p in _flatten(prefix, item))
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, float):
        value = repr(value).rstrip("0").rstrip(".") if "." in repr(value) else repr(value)
    return [f"{prefix}={value}"]


def event_hash(event: dict, *, namespace: str) -> str:
    """The CBV 2.0 event hash ID (``ni:///sha-256;<hex>?ver=CBV2.0``) of an ObjectEvent.

    Pre-hash string, in the canonical order of CBV 2.0 (section "EPCIS event hash ID"):
    ``eventType``, ``eventTime`` (UTC, milliseconds, ``Z``), ``eventTimeZoneOffset``,
    ``epcList`` (``epc=`` each, sorted), ``action``, ``bizStep`` (a bare CBV value expanded to
    its ``https://ref.gs1.org/cbv/BizStep-`` URI), ``readPoint`` (``id=``), then the user
    extensions as ``{namespace}name=value`` sorted lexically; ``eventID``, ``recordTime`` and
    ``errorDeclaration`` are left out, so an erroneous event and its copy that declares the
    error hash the same. Deviations (documented in the README): nested extension values are
    flattened with their key path, lists sorted; identifiers are hashed as written (ours are
    already canonical ``id.gs1.org`` Digital Link URIs or our own URIs)."""
    parts = [
        f"eventType={event['type']}",
        f"eventTime={_utc_ms(dt.datetime.fromisoformat(event['eventTime']))}",
        f"eventTimeZoneOffset={event['eventTimeZoneOffset']}",
    ]
    epcs = sorted(event.get("epcList") or ())
    if epcs:
        parts.append("epcList" + "".join(f"epc={e}" for e in epcs))
    parts.append(f"action={event['action']}")
    step = event.get("bizStep")
    if step:
        parts.append(f"bizStep={step if ':' in step else CBV_BIZSTEP + step}")
    if event.get("readPoint"):
        parts.append(f"readPointid={event['readPoint']['id']}")
    ext = []
    for key in sorted(k for k in event if k.startswith(EXT_PREFIX + ":")):
        ext += _flatten("{" + namespace + "}" + key.split(":", 1)[1], event[key])
    parts += sorted(ext)
    digest = hashlib.sha256("".join(parts).encode("utf-8")).hexdigest()
    return f"ni:///sha-256;{digest}?ver=CBV2.0"


def _event(group: ReadGroup, tz: dt.tzinfo, values: dict[str, str], when: dt.datetime):
    """One ObjectEvent: the read of ``group`` with the field values ``values`` at ``when``."""
    c = group.capture
    serial = values.get("serial_number", "")
    ns = ext_namespace()
    event: dict[str, Any] = {
        "type": "ObjectEvent",
        "eventTime": timezone.localtime(when, tz).isoformat(timespec="milliseconds"),
        "eventTimeZoneOffset": _offset(when, tz),
        "epcList": (
            [epc_uri(serial=serial, gtin=group.gtin, product_type=c["product_type__name"])]
            if serial
            else []
        ),
        "action": "OBSERVE",
        "bizStep": "inspecting",
        "readPoint": {"id": read_point(c["station_id"])},
        f"{EXT_PREFIX}:read": {
            "captureID": str(c["id"]),
            "productType": c["product_type__name"],
            "station": f"{c['station_line']} / {c['station_name']}",
            "imageSHA256": c["sha256"],
            "review": group.review,
            "alarms": len((group.read or {}).get("mismatches") or ()),
            "fields": [
                {
                    "name": f.name,
                    "value": values.get(f.name, f.value),
                    "machineValue": f.machine_value,
                    "confidence": f.confidence,
                    "valid": f.valid,
                    "source": f.source,
                }
                for f in group.fields
            ],
        },
    }
    event["eventID"] = event_hash(event, namespace=ns)
    return event


def _read_events(group: ReadGroup, tz: dt.tzinfo) -> list[dict]:
    """The events of one read: the machine read as an ObjectEvent at the capture time; then for
    each signed revision that changed a value, in signing order, a copy of the event in force
    until then carrying an ``errorDeclaration`` (``declarationTime`` = signing time, ``reason``
    ``incorrect_data``, ``correctiveEventIDs``) and the corrective event: the same
    observation (same event time) with the corrected values. Revisions that kept the value
    (a reviewer's "reviewed" signature) are not errors and add nothing."""
    if group.read is None:
        return []
    values = {f.name: f.machine_value for f in group.fields}
    current = _event(group, tz, values, group.capture["created_at"])
    events = [current]
    revisions = sorted(
        (
            (r["signed_at"], r["seq"], f.name, r)
            for f in group.fields
            for r in f.revisions
            if r["old_value"] != r["new_value"]
        ),
        key=lambda t: (t[0], t[1], t[2]),
    )
    for signed_at, _seq, name, rev in revisions:
        values = {**values, name: rev["new_value"]}
        corrective = _event(group, tz, values, group.capture["created_at"])
        corrective[f"{EXT_PREFIX}:read"]["correction"] = {
            "field": name,
            "from": rev["old_value"],
            "to": rev["new_value"],
            "reason": rev["reason_code"],
            "meaning": rev["meaning"],
            "signedBy": rev["signer_name"],
        }
        corrective["eventID"] = event_hash(corrective, namespace=ext_namespace())
        declared = dict(current)
        declared["errorDeclaration"] = {
            "declarationTime": timezone.localtime(signed_at, tz).isoformat(timespec="milliseconds"),
            "reason": "incorrect_data",
            "correctiveEventIDs": [corrective["eventID"]],
        }
        events += [declared, corrective]
        current = corrective
    return events


def epcis_stream(groups: Iterable[ReadGroup], info: ExportInfo, tz: dt.tzinfo, counter: list):
    """An EPCISDocument (JSON-LD), written event by event; ``counter[0]`` counts events."""
    head = {
        "@context": [EPCIS_CONTEXT, {EXT_PREFIX: ext_namespace()}],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": _utc_ms(info.exported_at),
        f"{EXT_PREFIX}:export": {k: v for k, v in info.lines()},
    }
    text = json.dumps(head, ensure_ascii=False)
    yield (text[:-1] + ', "epcisBody": {"eventList": [').encode("utf-8")
    n = 0
    buf = io.StringIO()
    for group in groups:
        for event in _read_events(group, tz):
            buf.write(("," if n else "") + "\n" + json.dumps(event, ensure_ascii=False))
            n += 1
        if buf.tell() > 64 * 1024:
            counter[0] = n
            yield buf.getvalue().encode("utf-8")
            buf.seek(0)
            buf.truncate()
    counter[0] = n
    yield (buf.getvalue() + "\n]}}\n").encode("utf-8")


# --- the response (API and pages share it) ---------------------------------------------------

FILTER_PARAMS = (
    "q", "from", "to", "tz", "line", "station", "product_type", "status", "review",
    "conf_min", "conf_max", "alarm", "field", "match", "client_ref", "sort",
)  # fmt: skip


def _audited(stream: Iterator[bytes], record) -> Iterator[bytes]:
    """``stream``, then the export's audit row (also when the client went away mid-stream)."""
    complete = False
    try:
        yield from stream
        complete = True
    finally:
        record(complete)


async def _async_chunks(stream: Iterator[bytes]):
    """The chunks of a sync generator for the ASGI server, one thread hop per chunk: Django
    would otherwise read a sync iterator into a list before sending anything under ASGI."""
    from asgiref.sync import sync_to_async

    step = sync_to_async(next, thread_sensitive=True)
    try:
        while True:
            part = await step(stream, None)
            if part is None:
                return
            yield part
    finally:
        await sync_to_async(stream.close, thread_sensitive=True)()


def export_response(*, request, user: Any, params, default_tz: str):
    """The download of the capture list (``scope=captures``, default) or of a serial search
    (``scope=serials``, needs ``q``) for the filters in ``params``, as ``format`` ``csv``
    (default), ``xlsx`` or ``epcis``; needs ``export_reads``; in ``user``'s scope. Bad
    parameters are ``ApplicationError`` (400) before anything is sent."""
    from django.core.handlers.asgi import ASGIRequest
    from django.http import StreamingHttpResponse

    from ocrapp import roles, services
    from ocrapp.errors import ApplicationError

    roles.require(user, "export_reads", message=_("You are not allowed to export reads."))
    fmt = selectors.param_text(params, "format", max_length=16) or "csv"
    scope = selectors.param_text(params, "scope", max_length=16) or "captures"
    for name, value, choices in (("format", fmt, EXPORT_FORMATS), ("scope", scope, EXPORT_SCOPES)):
        if value not in choices:
            message = _("%(name)s must be one of %(choices)s.") % {
                "name": name,
                "choices": ", ".join(choices),
            }
            raise ApplicationError("invalid", message, details={name: [message]})
    filters = selectors.search_filters_parse(params=params, default_tz=default_tz)
    if scope == "serials" and not filters.q:
        raise ApplicationError(
            "invalid", _("q is required."), details={"q": [_("This field is required.")]}
        )
    tz = selectors.time_zone_find(name=filters.tz)
    now = timezone.localtime(timezone.now(), tz)
    given = [(k, selectors.param_text(params, k, max_length=512)) for k in FILTER_PARAMS]
    given = sorted((k, v) for k, v in given if v)
    if not any(k == "tz" for k, _v in given):
        given = sorted([*given, ("tz", filters.tz or default_tz)])
    info = ExportInfo(
        scope=scope,
        params=given,
        exported_at=now,
        tz_name=str(filters.tz or default_tz),
        user=getattr(user, "username", ""),
    )
    # the codes (their GS1 GTIN) only matter to EPCIS identifiers: CSV/XLSX skip their JSON
    groups = export_groups(
        user=user, filters=filters, scope=scope, chunk=EXPORT_CHUNK, codes=fmt == "epcis"
    )
    counter = [0]

    def record(complete: bool) -> None:
        services.export_record(
            user=user, fmt=fmt, scope=scope, params=given, rows=counter[0], complete=complete
        )

    if fmt == "xlsx":
        fh = xlsx_file(groups, info, tz, counter)
        record(True)
        stream = file_chunks(fh)
    elif fmt == "epcis":
        stream = _audited(epcis_stream(groups, info, tz, counter), record)
    else:
        stream = _audited(csv_stream(groups, info, tz, counter), record)
    raw = getattr(request, "_request", request)
    content = _async_chunks(stream) if isinstance(raw, ASGIRequest) else stream
    response = StreamingHttpResponse(content, content_type=CONTENT_TYPES[fmt])
    name = f"serialread-{scope}-{now:%Y%m%d-%H%M%S}.{EXTENSIONS[fmt]}"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = "no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response
