"""Search indexes measured at 1M reads (bench/NOTES-search.md): look-alike over a btree the
trigram indexes cannot take from it (skeleton and value, both in the "C" collation,
``selectors._lookalikes``); ``capture_id`` included in it and in ``serial_value_c_idx`` and a
covering index of the capture's id, withdrawal and station, so that prefix and look-alike
candidates and their capped counts are index-only scans."""

import django.db.models.functions.comparison
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("ocrapp", "0015_wt_perf_capture_review"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="serialrecord",
            index=models.Index(
                django.db.models.functions.comparison.Collate("skeleton", "C"),
                django.db.models.functions.comparison.Collate("value", "C"),
                include=("capture",),
                name="serial_skeleton_c_idx",
            ),
        ),
        migrations.RemoveIndex(
            model_name="serialrecord",
            name="serial_value_c_idx",
        ),
        migrations.AddIndex(
            model_name="serialrecord",
            index=models.Index(
                django.db.models.functions.comparison.Collate("value", "C"),
                include=("capture",),
                name="serial_value_c_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="capture",
            index=models.Index(
                fields=["id"], include=("withdrawn_at", "station"), name="capture_id_cover_idx"
            ),
        ),
    ]
