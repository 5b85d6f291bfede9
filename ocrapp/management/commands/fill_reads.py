"""``manage.py fill_reads N``: fill the database with N synthetic reads, fast (COPY), for the
search benchmark (``bench/search_latency.py``) and scale tests.

What it writes is **synthetic bench data, clearly marked** and consistent with the audit trail:

- its own stations (line ``SYN-<n>``), product types (``synthetic-…``) and uploader
  (``synthetic-bench``, no password login), created through ``ocrapp.services`` (audited);
- per read: a DONE capture (``original_filename`` ``synthetic``, no image file: its image and
  thumbnail answer 404; its ``review_state`` / ``weakest_confidence`` as ``read_save`` writes
  them), one read (``worker`` ``fill_reads``), its printed lines (a header, one keyed line
  per field with per-character confidences and a box, a footer: five ``TextLine`` rows, as a
  read of a small label has), its fields (serial number, part number, lot; each points at its
  line) and their search index rows (printed form in ``display``; about 1 % carry a
  differing code value, indexed as ``source=code``); about 2 % of the captures are FAILED;
- per read its dashboard row (``ReadMetric``; each batch's hourly sums added to ``ReadHourly``)
  and synthetic photo statistics in ``Read.quality`` (luminance, contrast, sharpness, glare,
  text boxes around each line's own steady values; about 3 % glare, 2 % blur and 2 % exposure
  warnings); a read whose code value differs from the print carries the mismatch and its
  ``mismatch`` alarm (open), as ``read_save`` raises it;
- one audit event per batch (action ``create`` on the batch's first read, reason "manage.py
  fill_reads: synthetic bench data") that records every field value of the batch, so
  ``manage.py audit_verify`` checks these reads like any other.

Serial formats are realistic and share many trigrams (``SN2026000123``, ``44-1020-0007``,
``QX7-781234-S``, 15-digit IMEI-like numbers, ``A1B2C3000045``), about 3 % of serials are read
again, and reads spread over the given number of days, the stations and product types, **in
time order** (read k of N at about k/N of the span, jittered within its slot): a factory's reads
arrive in time order, so the tables' rows lie in time order as a line's inserts leave them (a
fill in random time order made every time-range query touch one heap page per row).
"""

from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, datetime, timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.utils import timezone
from psycopg.types.json import Jsonb

from ocrapp import audit, dashboard, selectors, services
from ocrapp.models import (
    Alarm,
    Capture,
    Field,
    ProductType,
    Read,
    ReadMetric,
    SerialRecord,
    Station,
    TextLine,
)
from workers.fieldspec import KNOWN_FIELDS, identifier_key, lookalike_key

SYNTH_USER = "synthetic-bench"
SYNTH_LINE_PREFIX = "SYN-"
SYNTH_REASON = "manage.py fill_reads: synthetic bench data"
PRODUCT_TYPES = ("synthetic-nameplate", "synthetic-sticker", "synthetic-board")
FIELD_NAMES = ("serial_number", "part_number", "lot")
# the label's printed lines: a header, one keyed line per field (the field points at it), a footer
KEYS = {name: KNOWN_FIELDS[name].keywords["en"][0] for name in FIELD_NAMES}  # S/N, P/N, LOT
HEADER, FOOTER = "SYNTHETIC INDUSTRIES CO.", "MADE IN KOREA"
LINES_PER_READ = len(FIELD_NAMES) + 2


def serial_value(rng: random.Random, i: int) -> str:
    """One printed serial of a realistic format (many share common trigrams such as ``000``)."""
    kind = rng.random()
    if kind < 0.35:
        return f"SN{rng.choice((2024, 2025, 2026))}{i % 1000000:06d}"
    if kind < 0.55:
        return f"{rng.randint(10, 99)}-{rng.randint(1000, 1099)}-{i % 10000:04d}"
    if kind < 0.75:
        letters = "ABCDEFGHJKMNPQRSTUVWXYZ"
        return (
            f"{rng.choice(letters)}{rng.choice(letters)}{rng.randint(0, 9)}-"
            f"{i % 1000000:06d}-{rng.choice(letters)}"
        )
    if kind < 0.9:
        return f"35{rng.randint(1000, 9999)}{i % 100000000:08d}{rng.randint(0, 9)}"
    return f"A{rng.randint(0, 9)}B{rng.randint(0, 9)}C{rng.randint(0, 9)}{i % 1000000:06d}"


def synthetic_quality(rng: random.Random, k: int) -> dict:
    """``Read.quality`` of a synthetic photo of station number ``k``: statistics spread around
    the station's own steady values (each station has its camera and light), a few warnings."""
    base = random.Random(k)
    lum, height = base.uniform(0.5, 0.65), base.uniform(0.07, 0.1)
    warnings = []
    for code, share in (("glare", 0.03), ("blur", 0.02), ("underexposed", 0.02)):
        if rng.random() < share:
            warnings.append({"code": code, "message": "synthetic", "params": {}})
    return {
        "blur": round(rng.lognormvariate(7.0, 0.3), 3),
        "exposure": round(rng.gauss(lum, 0.03), 4),
        "glare_fraction": round(max(0.0, rng.gauss(0.004, 0.003)), 5),
        "text_glare_fraction": 0.0,
        "ok": not warnings,
        "warnings": warnings,
        "lines": [],
        "contrast": round(rng.gauss(0.22, 0.015), 4),
        "text_boxes": rng.choice((3, 3, 3, 4)),
        "text_height": round(rng.gauss(height, 0.004), 5),
        "text_area": round(rng.gauss(0.12, 0.01), 5),
        "text_cx": round(rng.gauss(0.45, 0.01), 4),
        "text_cy": round(rng.gauss(0.4, 0.01), 4),
    }


def _columns(model) -> list[str]:
    return [f.column for f in model._meta.concrete_fields]


def _defaults(model) -> dict:
    """Each column's Python default (Django sets defaults in Python, not in the database)."""
    out = {}
    for f in model._meta.concrete_fields:
        value = f.get_default()  # "" for a CharField without a default, None for a nullable one
        out[f.column] = Jsonb(value) if isinstance(value, (dict, list)) else value
    return out


def _reserve_ids(table: str, n: int) -> int:
    """The first of ``n`` consecutive ids taken from ``table``'s id sequence."""
    with connection.cursor() as cur:
        cur.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
        seq = cur.fetchone()[0]
        cur.execute("SELECT nextval(%s)", [seq])
        first = cur.fetchone()[0]
        cur.execute("SELECT setval(%s, %s)", [seq, first + n])
    return first


class Command(BaseCommand):
    help = "Fill the database with N synthetic reads (COPY), marked as synthetic bench data."

    def add_arguments(self, parser):
        parser.add_argument("n", type=int, help="How many reads (captures) to write.")
        parser.add_argument("--batch", type=int, default=20000)
        parser.add_argument("--seed", type=int, default=13)
        parser.add_argument("--days", type=int, default=365, help="Spread over this many days.")
        parser.add_argument("--lines", type=int, default=4)
        parser.add_argument("--stations-per-line", type=int, default=3)
        parser.add_argument(
            "--until",
            default="",
            help="The reads end at this ISO 8601 time (UTC unless it names an offset); "
            "default: now.",
        )

    def handle(self, *args, **opts):
        n, batch = opts["n"], max(1, opts["batch"])
        if n < 1:
            raise CommandError("N must be at least 1.")
        until = timezone.now()
        if opts["until"]:
            try:
                until = datetime.fromisoformat(opts["until"])
            except ValueError:
                raise CommandError("--until is not an ISO 8601 time.") from None
            if until.tzinfo is None:
                until = until.replace(tzinfo=UTC)
        user, stations, pts = self._setup(opts["lines"], opts["stations_per_line"])
        start = time.monotonic()
        done = 0
        # a later run goes on numbering (and drawing) after the synthetic reads already there
        offset = Capture.objects.filter(station_line__startswith=SYNTH_LINE_PREFIX).count()
        rng = random.Random(opts["seed"] * 1_000_003 + offset)
        while done < n:
            size = min(batch, n - done)
            self._batch(
                rng, size, offset + done, user, stations, pts,
                before=done, total=n, days=opts["days"], now=until,
            )  # fmt: skip
            done += size
            rate = done / max(time.monotonic() - start, 1e-9)
            self.stdout.write(f"{done}/{n} reads ({rate:,.0f}/s)")
        with connection.cursor() as cur:
            for table in (
                "ocrapp_capture",
                "ocrapp_read",
                "ocrapp_textline",
                "ocrapp_field",
                "ocrapp_serialrecord",
                "ocrapp_readmetric",
                "ocrapp_readhourly",
            ):
                cur.execute(f"ANALYZE {table}")
        self.stdout.write(
            self.style.SUCCESS(f"wrote {n} synthetic reads in {time.monotonic() - start:.1f} s")
        )

    def _setup(self, lines: int, per_line: int):
        User = get_user_model()
        user = User.objects.filter(username=SYNTH_USER).first()
        if user is None:
            user = services.user_create(
                actor=None,
                username=SYNTH_USER,
                password=None,
                fields={"is_active": False, "first_name": "Synthetic", "last_name": "bench"},
                reason=SYNTH_REASON,
            )
        stations = []
        for li in range(1, lines + 1):
            for si in range(1, per_line + 1):
                line, name = f"{SYNTH_LINE_PREFIX}{li}", f"station-{si}"
                st = Station.objects.filter(line=line, name=name).first()
                stations.append(
                    st or services.station_create(line=line, name=name, reason=SYNTH_REASON)
                )
        from ocrapp.demo import DEMO_PRODUCT_TYPES

        schema = DEMO_PRODUCT_TYPES["nameplate"]["field_schema"]
        pts = []
        for name in PRODUCT_TYPES:
            pt = ProductType.objects.filter(name=name).first()
            pts.append(
                pt
                or services.product_type_create(
                    name=name,
                    field_schema=schema,
                    description="Synthetic bench data (manage.py fill_reads).",
                    reason=SYNTH_REASON,
                )
            )
        return user, stations, pts

    def _batch(self, rng, size, offset, user, stations, pts, *, before, total, days, now) -> None:
        """``size`` reads, the ``before``-th to the next of the run's ``total``, each in its
        slot of the ``days`` before ``now``."""
        slot = days * 86400 / total
        cap_cols, read_cols = _columns(Capture), _columns(Read)
        field_cols, sr_cols = _columns(Field), _columns(SerialRecord)
        metric_cols = _columns(ReadMetric)
        cap_def, read_def = _defaults(Capture), _defaults(Read)
        field_def, sr_def = _defaults(Field), _defaults(SerialRecord)
        line_cols, line_def = _columns(TextLine), _defaults(TextLine)
        parts = [f"PN-{k:07d}" for k in range(0, 400000, 1999)]
        with transaction.atomic():
            read_id = _reserve_ids("ocrapp_read", size)
            field_id = _reserve_ids("ocrapp_field", size * len(FIELD_NAMES))
            sr_id = _reserve_ids("ocrapp_serialrecord", size * (len(FIELD_NAMES) + 1))
            line_id = _reserve_ids("ocrapp_textline", size * LINES_PER_READ)
            recorded: dict[str, dict] = {}
            first_read = read_id
            with connection.cursor() as cur:
                raw = cur.cursor if hasattr(cur, "cursor") else cur
                caps, reads, fields, srs, metrics, lines = [], [], [], [], [], []
                alarms: list[Alarm] = []
                for k in range(size):
                    i = offset + k
                    st, pt = rng.choice(stations), rng.choice(pts)
                    at = now - timedelta(seconds=(total - before - k - rng.random()) * slot)
                    cid = uuid.UUID(int=rng.getrandbits(128), version=4)
                    failed = rng.random() < 0.02
                    caps.append(
                        {
                            **cap_def,
                            "id": cid,
                            "image": f"synthetic/{cid.hex}.png",
                            "original_filename": "synthetic",
                            "sha256": f"{rng.getrandbits(256):064x}",
                            "size_bytes": 0,
                            "width": 0,
                            "height": 0,
                            "image_format": "PNG",
                            "station_id": st.pk,
                            "station_line": st.line,
                            "station_name": st.name,
                            "product_type_id": pt.pk,
                            "uploaded_by_id": user.pk,
                            "client_ref": f"SYN-{i:08d}",
                            "status": "FAILED" if failed else "DONE",
                            "failure_code": "timeout" if failed else "",
                            "failure_reason": "synthetic" if failed else "",
                            "attempts": 1,
                            "created_at": at,
                            "updated_at": at,
                            "finished_at": at + timedelta(seconds=1),
                        }
                    )
                    if failed:
                        continue
                    needs_review = rng.random() < 0.15
                    # about 3 % of the serials are read again (an earlier serial)
                    serial_i = i if rng.random() > 0.03 or i == 0 else rng.randrange(i)
                    serial = serial_value(random.Random(serial_i * 7919 + 1), serial_i)
                    values = {
                        "serial_number": serial,
                        "part_number": rng.choice(parts),
                        "lot": f"L{at.year}-{rng.randint(0, 4999):06d}",
                    }
                    entries = {}
                    confs = []
                    texts = [HEADER, *(f"{KEYS[n]}: {v}" for n, v in values.items()), FOOTER]
                    first_line = line_id
                    for order, text in enumerate(texts):
                        chars = [round(rng.uniform(0.9, 1.0), 3) for _c in text]
                        y = 40 + 60 * order
                        lines.append(
                            {
                                **line_def,
                                "id": line_id,
                                "read_id": read_id,
                                "order": order,
                                "text": text,
                                "confidence": min(chars),
                                "char_confidences": Jsonb(chars),
                                "polygon": Jsonb([[30, y], [600, y], [600, y + 40], [30, y + 40]]),
                            }
                        )
                        line_id += 1
                    for at_line, (name, value) in enumerate(values.items(), start=first_line + 1):
                        conf = round(rng.uniform(0.5, 0.999), 4)
                        confs.append(conf)
                        code_value = None
                        if name == "serial_number" and rng.random() < 0.01:
                            code_value = serial_value(rng, i + 7_000_000)
                        fields.append(
                            {
                                **field_def,
                                "id": field_id,
                                "read_id": read_id,
                                "name": name,
                                "line_id": at_line,
                                "raw_value": value,
                                "value": value,
                                "current_value": value,
                                "confidence": conf,
                                "valid": True,
                                "source": "text",
                                "code_value": code_value,
                                "code_match": False if code_value else None,
                            }
                        )
                        entries[str(field_id)] = {"name": name, "value": value}
                        for shown, source in ((value, "text"), (code_value, "code")):
                            if not shown:
                                continue
                            srs.append(
                                {
                                    **sr_def,
                                    "id": sr_id,
                                    "value": identifier_key(shown)[:128],
                                    "skeleton": lookalike_key(shown)[:128],
                                    "display": shown,
                                    "source": source,
                                    "field_id": field_id,
                                    "superseded": False,
                                    "field_name": name,
                                    "capture_id": cid,
                                    "product_type_id": pt.pk,
                                    "station_id": st.pk,
                                    "created_at": at,
                                }
                            )
                            sr_id += 1
                        field_id += 1
                    recorded.update(entries)
                    quality = synthetic_quality(rng, stations.index(st))
                    coded = next((f for f in fields[-len(values) :] if f["code_value"]), None)
                    mismatches = (
                        [
                            {
                                "field": "serial_number",
                                "printed": coded["value"],
                                "coded": coded["code_value"],
                                "code_format": "DataMatrix",
                                "source": "synthetic",
                            }
                        ]
                        if coded
                        else []
                    )
                    if coded:  # the mismatch alarm read_save raises (ocrapp.alarms)
                        alarms.append(
                            Alarm(
                                kind=Alarm.Kind.MISMATCH,
                                capture_id=cid,
                                read_id=read_id,
                                field_id=coded["id"],
                                value=identifier_key(coded["value"])[:128],
                                display=coded["value"],
                                other_display=coded["code_value"],
                                part_number=values["part_number"],
                                line=st.line,
                                station_id=st.pk,
                                station_label=f"{st.line} / {st.name}"[:210],
                                product_type_id=pt.pk,
                                details={"field": "serial_number", "code_format": "DataMatrix"},
                                created_at=at,
                            )
                        )
                    reads.append(
                        {
                            **read_def,
                            "id": read_id,
                            "capture_id": cid,
                            "run": 1,
                            "worker": "fill_reads",
                            "needs_review": needs_review,
                            "review": Jsonb({"needs_review": needs_review, "reasons": []}),
                            "quality": Jsonb(quality),
                            "mismatches": Jsonb(mismatches),
                            "created_at": at,
                        }
                    )
                    metrics.append(
                        {
                            "read_id": read_id,
                            "created_at": at,
                            "station_id": st.pk,
                            "station_line": st.line,
                            "product_type_id": pt.pk,
                            **dashboard.read_metric_values(
                                quality=quality,
                                field_confidences=[f["confidence"] for f in fields[-len(values) :]],
                                needs_review=needs_review,
                                mismatches=mismatches,
                                review_reasons=[],
                            ),
                            # run 1 of a DONE capture, no revision yet: waits if it needs review
                            "waiting": needs_review,
                        }
                    )
                    # the latest read's review columns of the capture (no field is signed yet)
                    caps[-1]["review_state"] = selectors.review_state_of(
                        needs_review=needs_review, fields=len(confs), unsigned=len(confs)
                    )
                    caps[-1]["weakest_confidence"] = min(confs)
                    read_id += 1
                for table, cols, rows in (
                    ("ocrapp_capture", cap_cols, caps),
                    ("ocrapp_read", read_cols, reads),
                    ("ocrapp_textline", line_cols, lines),
                    ("ocrapp_field", field_cols, fields),
                    ("ocrapp_serialrecord", sr_cols, srs),
                    ("ocrapp_readmetric", metric_cols, metrics),
                ):
                    sql = f"COPY {table} ({', '.join(connection.ops.quote_name(c) for c in cols)}) FROM STDIN"
                    with raw.copy(sql) as copy:
                        for row in rows:
                            copy.write_row([row[c] for c in cols])
                alarms = Alarm.objects.bulk_create(alarms)
                # the batch's hourly counters for the dashboard (one upsert of their sums)
                dashboard.read_hourly_add(first_read_id=first_read, end_read_id=read_id)
            audit.record(
                actor=None,
                action="create",
                object_type="ocrapp.read",
                object_id=str(first_read),
                object_repr=f"synthetic bench data: {len(recorded)} field values",
                after={
                    "synthetic": True,
                    "reads": read_id - first_read,
                    "fields": recorded,
                    "mismatch_alarms": [a.pk for a in alarms],
                },
                reason=SYNTH_REASON,
            )
