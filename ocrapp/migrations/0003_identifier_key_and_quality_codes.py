"""Data migration for the field catalogue and the typed result contract.

1. Serial search rows are re-keyed with ``workers.fieldspec.identifier_key`` /
   ``lookalike_key`` (the one identifier normaliser: it also drops ``/``, ``:`` and Unicode
   dashes, and applies NFKC; before, the web tier kept them).
2. Stored quality warnings get the stable codes: a ``glare`` warning with the photo message
   becomes ``glare_photo`` (before, glare over the text and glare on the photo shared the code
   ``glare`` and were told apart by their English text), and a ``glare_text`` warning gets its
   line number as ``params`` (before, it lived only inside the message). This is the only
   place that reads those old messages.
"""

import re

from django.db import migrations

from workers.fieldspec.identifiers import identifier_key, lookalike_key

_PHOTO_GLARE = "Glare on the photo"
_LINE = re.compile(r"line (\d+)")


def rekey_serials(apps, schema_editor):  # noqa: ARG001
    SerialRecord = apps.get_model("ocrapp", "SerialRecord")
    batch = []
    for rec in SerialRecord.objects.select_related("field").iterator(chunk_size=2000):
        value = identifier_key(rec.field.value)[:128]
        skeleton = lookalike_key(rec.field.value)[:128]
        if (value, skeleton) != (rec.value, rec.skeleton):
            rec.value, rec.skeleton = value, skeleton
            batch.append(rec)
        if len(batch) >= 2000:
            SerialRecord.objects.bulk_update(batch, ["value", "skeleton"])
            batch = []
    if batch:
        SerialRecord.objects.bulk_update(batch, ["value", "skeleton"])


def _warning(w):
    if not isinstance(w, dict):
        return w
    w = dict(w)
    msg = str(w.get("message") or "")
    if w.get("code") == "glare" and msg.startswith(_PHOTO_GLARE):
        w["code"] = "glare_photo"
    if w.get("code") == "glare_text" and not w.get("params"):
        m = _LINE.search(msg)
        if m:
            n = int(m.group(1))
            w["params"] = {"line": n, "order": n - 1}
    w.setdefault("params", {})
    return w


def recode_quality(apps, schema_editor):  # noqa: ARG001
    Read = apps.get_model("ocrapp", "Read")
    for read in Read.objects.only("id", "quality").iterator(chunk_size=500):
        q = read.quality if isinstance(read.quality, dict) else {}
        warnings = q.get("warnings")
        if not isinstance(warnings, list):
            continue
        new = [_warning(w) for w in warnings]
        if new != warnings:
            read.quality = {**q, "warnings": new}
            read.save(update_fields=["quality"])


class Migration(migrations.Migration):
    dependencies = [("ocrapp", "0002_field_verification")]

    operations = [
        migrations.RunPython(rekey_serials, migrations.RunPython.noop),
        migrations.RunPython(recode_quality, migrations.RunPython.noop),
    ]
