"""Extractor training: label matching, BIO labels, and a 2-step smoke run that writes a
checkpoint, resumes from it and exports weights the inference class accepts (sha256 checked)."""

from __future__ import annotations

import json
import math
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from workers.pipeline.extractor.layout import words_from_lines  # noqa: E402
from workers.training.extractor.data import Doc, doc_to_words, sroie_doc  # noqa: E402


def box(x, y, w, h=30):
    return [[x, y], [x + w, y], [x + w, y + h], [x, y + h]]


def receipt(company: str, n: int) -> dict:
    lines = [
        (company, box(100, 50, 400)),
        ("NO 8, JALAN 7/118B, DESA", box(60, 100, 500)),
        ("56000 KUALA LUMPUR", box(100, 140, 400)),
        (f"DATE:0{n}/02/18 19:21", box(40, 200, 300)),
        ("ITEM A 9.00", box(40, 260, 300)),
        (f"TOTAL RM{n}9.00", box(40, 320, 300)),
        ("THANK YOU", box(150, 400, 200)),
    ]
    return {
        "image": None,
        "lines": [{"text": t, "box": b} for t, b in lines],
        "fields": {
            "company": company,
            "date": f"0{n}/02/18",
            "address": "NO 8, JALAN 7/118B, DESA 56000 KUALA LUMPUR",
            "total": f"{n}9.00",
        },
    }


def test_sroie_label_matching_prefix_amounts_multiline_and_colon_keys():
    d = sroie_doc(receipt("POPULAR BOOK CO. (M) SDN BHD", 1), "ab" * 20)
    words, labels = doc_to_words(d)
    got = {(w.text, lab) for w, lab in zip(words, labels, strict=False) if lab != "O"}
    assert ("POPULAR", "B-company") in got and ("BHD", "I-company") in got
    assert ("NO", "B-address") in got and ("LUMPUR", "I-address") in got
    assert ("01/02/18", "B-date") in got and ("DATE:", "B-date") not in got
    assert ("RM19.00", "B-total") in got
    assert ("9.00", "B-total") not in got  # 9.00 is not the total 19.00
    assert d.match == {"company": "exact", "date": "exact", "address": "exact", "total": "exact"}


def test_synth_doc_labels_values_not_keys():
    from workers.training.extractor.data import synth_doc

    d = synth_doc(3)
    assert isinstance(d, Doc) and d.lines and "serial_number" in d.fields
    words, labels = doc_to_words(d)
    assert len(words) == len(words_from_lines(d.lines))
    serial = " ".join(
        w.text for w, lab in zip(words, labels, strict=False) if lab.endswith("-serial_number")
    )
    assert serial == d.fields["serial_number"]
    assert all(lab == "O" or lab[2:] in d.fields for lab in labels)


@pytest.mark.slow
def test_training_smoke_checkpoint_resume_export(tmp_path):
    from workers.pipeline.extractor import TransformerFieldExtractor
    from workers.training.extractor import train

    labels = tmp_path / "labels.json"
    labels.write_text(
        json.dumps([receipt(f"SHOP {c} SDN BHD", i + 1) for i, c in enumerate("ABCDEF")])
    )
    out = tmp_path / "run"
    common = [
        "--out",
        str(out),
        "--sroie",
        str(labels),
        "--n-synth",
        "3",
        "--no-cache",
        "--save-every",
        "1",
        "--max-len",
        "128",
        "--batch-tokens",
        "512",
        "--threads",
        "2",
    ]
    r1 = train.main(common + ["--max-steps", "2"])
    assert r1["steps"] == 2 and math.isfinite(r1["final_loss"])
    assert (out / "ckpt-2.pt").is_file()

    export = tmp_path / "export"
    r2 = train.main(common + ["--max-steps", "3", "--resume", "--export", str(export)])
    assert r2["steps"] == 3 and math.isfinite(r2["final_loss"])
    assert (out / "ckpt-3.pt").is_file()
    manifest = json.loads((export / "manifest.json").read_text())
    assert manifest["training"]["steps"] == 3

    ex = TransformerFieldExtractor(export)
    res = ex([], None)  # loads (sha256 verified) and runs
    assert res[0].name == "serial_number" and res[0].value == ""
    assert ex.model_info.sha256 == manifest["weights_sha256"]

    # a new run can start from exported weights (how training continues from the committed model)
    r3 = train.main(
        [
            *common[:1],
            str(tmp_path / "run2"),
            *common[2:],
            "--max-steps",
            "1",
            "--init-from",
            str(export),
        ]
    )
    assert r3["steps"] == 1 and math.isfinite(r3["final_loss"])
