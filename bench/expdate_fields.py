"""expdate_turner ``expiry_date`` counts from the cached OCR lines of
``bench/generalisation.py`` (``--cache var/bench/gen_exp``), with whatever product code is
checked out: the field step (the pipeline config's extractor + ``FieldVerifier``) is re-run.
It uses only what the base commit f3784da already had, so the same script gives the before
and after columns of NOTES-generalisation.md (2026-12-02)::

    .venv/bin/python bench/expdate_fields.py N OFFSET

Counts per reader: ``exact`` value = print (separators removed, valid or not), ``valid`` the
same and valid, ``iso`` iso_date = the ground truth's ``--MM-DD``, ``wbv`` wrong but valid,
``acc`` / ``wacc`` accepted (needs_review False) / wrong among them, ``food_mfg`` /
``food_exp``: with the schema mfg_date + expiry_date, an mfg_date returned / the expiry date
exact and valid. Records whose ground-truth day is > 31 (``40 NOV``, ``45 NOV``) are skipped.
"""

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.chdir(ROOT)
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
from bench import generalisation as g  # noqa: E402
from bench.read_accuracy import norm  # noqa: E402
from workers.pipeline.config import PipelineConfig  # noqa: E402
from workers.pipeline.pipeline import build_field_extractor  # noqa: E402

n, off = int(sys.argv[1]), int(sys.argv[2])
FOOD = {"fields": [{"name": "mfg_date"}, {"name": "expiry_date", "required": True}]}
EXP = {"fields": [{"name": "expiry_date", "required": True}]}
cache = g.Cache(Path("var/bench/gen_exp"))
labels = json.loads((g.DATASETS / "expdate_turner" / "labels.json").read_text())
recs = [r for r in labels if r.get("image")][off : off + n]
ext = build_field_extractor(PipelineConfig.from_env().replace(device="cpu"))
for reader in ("ours", "ours_shipped"):
    c = dict(n=0, exact=0, valid=0, iso=0, wbv=0, acc=0, wacc=0, food_mfg=0, food_exp=0)
    for r in recs:
        data = open(g.DATASETS / "expdate_turner" / r["image"], "rb").read()
        d = cache.get(reader, "expdate_turner", data, g.EXPIRY_SCHEMA)
        if d is None:
            continue
        t = r["fields"]
        if t["expiry_day"] > 31:
            continue  # GT no real day (40 NOV, 45 NOV: the packs print 30 / 25 NOV)
        rd = g.reextract(d, EXP, ext)
        f = (rd.fields or {}).get("expiry_date") or {}
        ok = bool(f.get("value")) and norm(f["value"]) == norm(t["expiry_date"])
        c["n"] += 1
        c["exact"] += ok
        c["valid"] += ok and bool(f.get("valid"))
        c["iso"] += f.get("iso_date") == f"--{t['expiry_month']:02d}-{t['expiry_day']:02d}"
        c["wbv"] += bool(f.get("value")) and bool(f.get("valid")) and not ok
        if not rd.needs_review:
            c["acc"] += 1
            c["wacc"] += not ok
        fd = g.reextract(d, FOOD, ext)
        c["food_mfg"] += bool((fd.fields or {}).get("mfg_date"))
        fe = (fd.fields or {}).get("expiry_date") or {}
        c["food_exp"] += (
            bool(fe.get("value"))
            and norm(fe["value"]) == norm(t["expiry_date"])
            and bool(fe.get("valid"))
        )
    print(reader, c)
