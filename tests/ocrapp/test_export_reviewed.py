"""manage.py export_reviewed: reviewed reads as a fine-tuning set, read back with the trainers'
own loaders (``workers.training.extractor.data.load_docs`` / ``doc_to_words``)."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from PIL import Image

from ocrapp import roles, services
from tests.review_data import PASSWORD, person, queued_result, stored_capture

pytestmark = pytest.mark.django_db

RAW = "SN2O260042"
FIXED = "SN20260042"


def _sign(qm, capture, **edits):
    services.read_review(
        user=qm,
        capture_id=capture.pk,
        edits={k: services.FieldEdit(value=v, reason="misread") for k, v in edits.items()},
        password=PASSWORD,
    )


def test_export_writes_crops_and_labels_of_the_reviewed_reads(
    tmp_path, user, station, product_type
):
    from workers.training.extractor.data import doc_to_words, load_docs

    qm = person("ada", roles.QUALITY_MANAGER, first="Ada", last="Kim")
    # 1: the pipeline corrected O -> 0 on its own and the reviewer accepted it
    accepted = stored_capture(user, station, product_type, queued_result(FIXED, raw=RAW))
    _sign(qm, accepted)
    # 2: the recogniser read SN30000001, the reviewer corrected it to SN30000007
    corrected = stored_capture(
        user, station, product_type, queued_result("SN30000001"), raw_label="SN30000007"
    )
    _sign(qm, corrected, serial_number="SN30000007")
    # 3: still in the queue: not exported
    stored_capture(user, station, product_type, queued_result("SN30000002"))

    out = tmp_path / "set"
    stdout = io.StringIO()
    call_command("export_reviewed", "--out", str(out), stdout=stdout)
    assert "wrote 2 reviewed reads, 4 line crops" in stdout.getvalue()

    labels = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    assert [(r["capture_id"], r["line"], r["text"], r["corrected"]) for r in labels] == [
        (str(accepted.pk), 0, f"S/N: {FIXED}", True),
        (str(accepted.pk), 1, "P/N: PN-7731", False),
        (str(corrected.pk), 0, "S/N: SN30000007", True),
        (str(corrected.pk), 1, "P/N: PN-7731", False),
    ]
    assert labels[0]["fields"] == ["serial_number"] and labels[0]["product_type"] == "nameplate"
    for rec in labels:
        img = Image.open(out / rec["image"])
        assert img.format == "PNG" and img.mode == "RGB"
        assert img.height == 82 and img.width > img.height * 4  # a rectified line, padded
        assert sum(img.convert("L").histogram()[:100]) > 300  # ink: the text is in the crop
    gt = (out / "rec_gt.txt").read_text().splitlines()
    assert gt == [f"{r['image']}\t{r['text']}" for r in labels]

    docs = load_docs(out / "extractor_docs.json")
    assert [d.id for d in docs] == [f"{accepted.pk}-r1", f"{corrected.pk}-r1"]
    doc = docs[1]
    assert doc.fields == {"serial_number": "SN30000007", "part_number": "PN-7731"}
    assert doc.lines[0][0] == "S/N: SN30000007"
    words, bio = doc_to_words(doc)
    tagged = {w.text: tag for w, tag in zip(words, bio, strict=True)}
    assert tagged["SN30000007"] == "B-serial_number" and tagged["PN-7731"] == "B-part_number"
    assert tagged["S/N:"] == "O"

    reads = [json.loads(line) for line in (out / "reads.jsonl").read_text().splitlines()]
    serial = next(f for f in reads[1]["fields"] if f["name"] == "serial_number")
    assert serial == {
        "name": "serial_number",
        "value": "SN30000007",
        "machine_value": "SN30000001",
        "line": 0,
        "box": [[40, 40], [600, 40], [600, 100], [40, 100]],
        "meaning": "corrected",
    }
    assert reads[0]["image_sha256"] == accepted.sha256
    readme = (out / "README.md").read_text()
    assert "labels.jsonl" in readme and "2 reads, 4 line crops" in readme

    # --since: only reads signed on or after the date
    later = tmp_path / "later"
    call_command(
        "export_reviewed", "--out", str(later), "--since", "2999-01-01", stdout=io.StringIO()
    )
    assert (later / "labels.jsonl").read_text() == ""
    assert json.loads((later / "extractor_docs.json").read_text()) == []
