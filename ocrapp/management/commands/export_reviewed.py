"""Write the reads people have reviewed and signed as a fine-tuning set (corrections feed training).

    python manage.py export_reviewed --out DIR [--since 2026-12-01]

A read is exported when every field of it carries a signed revision (accepted or corrected), it
is the latest run of its capture and, with ``--since``, one of its revisions was signed on or
after that date (UTC). The files (described again in ``DIR/README.md``):

- ``crops/*.png``: the rectified crop of every text line that carries a field, cut with the same
  server-side crop as the review page (``ocrapp.crops.line_crop``);
- ``labels.jsonl``: one line crop per line, ``{"image": "crops/...png", "text": ...}`` plus where it
  came from; ``text`` is the line as read with each field's span replaced by the field's value in
  force when they differ (the reviewer's correction, or the pipeline's own correction the
  reviewer signed);
- ``rec_gt.txt``: the same pairs as ``path<TAB>text`` lines (the synthetic engine's ``--crops``
  format, ``workers/training/synth/cli.py``);
- ``extractor_docs.json``: one document per read in the field extractor's ``Doc`` JSON
  (``workers.training.extractor.data.doc_to_dict``: ``load_docs(path)`` reads it): the lines
  (corrected text + polygon) and char-level spans of the signed values;
- ``reads.jsonl``: one record per read: product type, station, photo sha256 and each field's
  name, value in force, machine value, line index, box and the meaning of its last signature.

Nothing here imports the training code (the web tier never does); the test reads the output with
the trainers' own loaders.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ocrapp import crops, selectors, services
from ocrapp.models import Field, Read

README = """# Reviewed reads: a fine-tuning set

Written by `python manage.py export_reviewed` on {when} ({reads} reads, {crops} line crops{since}).
Every value here was checked and signed by a person (review queue, 21 CFR Part 11 signature);
corrected values replace what the recogniser read.

| file | what | read it with |
|---|---|---|
| `crops/*.png` | rectified crop of each text line that carries a field (the review page's crop) | any image reader (RGB PNG) |
| `labels.jsonl` | one line per crop: `{{"image": "crops/x.png", "text": "...", "capture_id", "run", "line", "fields", "product_type", "corrected"}}` | recogniser fine-tuning: `(image, text)` pairs like `workers.training.rec_data.LineCrop` |
| `rec_gt.txt` | the same pairs as `path<TAB>text` lines | the synthetic engine's `--crops` format (PaddleOCR style) |
| `extractor_docs.json` | one document per read: lines (text, polygon in photo pixels) and char spans `[line, start, end, field, group]` of the signed values | `workers.training.extractor.data.load_docs(path)`, then `doc_to_words` |
| `reads.jsonl` | one record per read: product type, station, photo sha256, fields (name, value in force, machine value, line index, box, meaning of the last signature) | `json.loads` per line |

Text of a line: the line as the recogniser read it, with each field's span replaced by the
field's value in force when they differ (the value normalised by the field's schema, e.g. upper
case). Lines without a field are not in the crop set (nobody checked their text); their text is
in the extractor documents as read. Coordinates: pixels of the EXIF-corrected photo, polygons
clockwise from the text's top-left.

Note: `rec_train` generates its training crops on the fly; to fine-tune on this set, feed these
pairs to its `CropPool` (or `make_batch`) as `LineCrop(image, text, "reviewed", field)`.
"""


def _since(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--since: {value!r} is not a date (YYYY-MM-DD)") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _line_text(
    read: Read, line, fields: list[Field]
) -> tuple[str, list[tuple[int, int, Field]], bool]:
    """(corrected text, spans of the fields in it, whether any span changed) of one line."""
    text = line.text
    located = []
    for f in fields:
        span = selectors.field_span(field=f)
        if span is not None:
            located.append((span[0], span[1], f))
    located.sort(key=lambda item: item[0])
    out, spans, pos, changed = [], [], 0, False
    for start, end, f in located:
        if start < pos:  # overlaps the previous field: keep the first
            continue
        printed = text[start:end]
        check = selectors.field_check(capture=read.capture, name=f.name, value=printed)
        value = printed if check.value == f.current_value else f.current_value
        changed = changed or value != printed
        out.append(text[pos:start])
        new_start = sum(len(p) for p in out)
        out.append(value)
        spans.append((new_start, new_start + len(value), f))
        pos = end
    out.append(text[pos:])
    return "".join(out), spans, changed


class Command(BaseCommand):
    help = "Write the reviewed and signed reads as a fine-tuning set (line crops + labels)."

    def add_arguments(self, parser):
        parser.add_argument("--out", required=True, help="output folder (created)")
        parser.add_argument(
            "--since", default=None, help="only reads with a signature on or after (YYYY-MM-DD)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        out = Path(options["out"])
        since = _since(options.get("since"))
        (out / "crops").mkdir(parents=True, exist_ok=True)
        reads = selectors.reviewed_reads(since=since)
        labels, docs, records = [], [], []
        for read in reads:
            capture = read.capture
            lines = list(read.lines.all())
            fields = list(read.fields.all())
            by_line: dict[int, list[Field]] = {}
            for f in fields:
                if f.line_id:
                    by_line.setdefault(f.line_id, []).append(f)
            try:
                photo = crops.open_photo(services.capture_image_bytes(capture_id=capture.pk))
            except (services.ImageMissing, OSError, ValueError) as exc:
                self.stderr.write(f"capture {capture.pk}: no line crops ({exc})")
                photo = None
            doc_lines, doc_spans, group = [], [], 0
            for line in lines:
                text, spans, changed = _line_text(read, line, by_line.get(line.pk, []))
                doc_lines.append([text, [list(p) for p in line.polygon]])
                for start, end, f in spans:
                    doc_spans.append([len(doc_lines) - 1, start, end, f.name, group])
                    group += 1
                if not spans or photo is None:
                    continue
                try:
                    crop = crops.line_crop(photo, line.polygon)
                except crops.CropError as exc:
                    self.stderr.write(f"capture {capture.pk} line {line.order}: {exc}")
                    continue
                rel = f"crops/{capture.pk}-r{read.run}-l{line.order:02d}.png"
                crop.save(out / rel, format="PNG")
                labels.append(
                    {
                        "image": rel,
                        "text": text,
                        "capture_id": str(capture.pk),
                        "run": read.run,
                        "line": line.order,
                        "fields": [f.name for _s, _e, f in spans],
                        "product_type": capture.product_type.name,
                        "corrected": changed,
                    }
                )
            docs.append(
                {
                    "id": f"{capture.pk}-r{read.run}",
                    "source": "reviewed",
                    "lines": doc_lines,
                    "fields": {f.name: f.current_value for f in fields},
                    "spans": doc_spans,
                    "image": None,
                    "match": {span[3]: "exact" for span in doc_spans},
                }
            )
            records.append(
                {
                    "capture_id": str(capture.pk),
                    "run": read.run,
                    "product_type": capture.product_type.name,
                    "station": str(capture.station),
                    "image_sha256": capture.sha256,
                    "fields": [
                        {
                            "name": f.name,
                            "value": f.current_value,
                            "machine_value": f.value,
                            "line": f.line.order if f.line_id else None,
                            "box": f.box,
                            "meaning": list(f.revisions.all())[-1].meaning,
                        }
                        for f in fields
                    ],
                }
            )
        with open(out / "labels.jsonl", "w", encoding="utf-8") as fh:
            for rec in labels:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        with open(out / "rec_gt.txt", "w", encoding="utf-8") as fh:
            for rec in labels:
                fh.write(f"{rec['image']}\t{rec['text']}\n")
        (out / "extractor_docs.json").write_text(json.dumps(docs, ensure_ascii=False), "utf-8")
        with open(out / "reads.jsonl", "w", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        (out / "README.md").write_text(
            README.format(
                when=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                reads=len(records),
                crops=len(labels),
                since=f", signed since {since:%Y-%m-%d}" if since else "",
            ),
            "utf-8",
        )
        self.stdout.write(f"wrote {len(records)} reviewed reads, {len(labels)} line crops to {out}")
