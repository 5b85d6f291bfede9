"""The latest read's review state and weakest confidence on Capture (indexed, for the capture
list), backfilled from the reads with the rule of ``selectors.review_state_of``; the capture
list's line and review-state indexes in keyset order."""

from django.db import migrations, models

BACKFILL = """
WITH latest AS (
    SELECT DISTINCT ON (r.capture_id) r.id, r.capture_id, r.needs_review
    FROM ocrapp_read r
    ORDER BY r.capture_id, r.run DESC
), agg AS (
    SELECT l.capture_id,
           l.needs_review,
           count(f.id) AS n,
           count(f.id) FILTER (
               WHERE NOT EXISTS (SELECT 1 FROM ocrapp_fieldrevision v WHERE v.field_id = f.id)
           ) AS unsigned,
           min(f.confidence) AS weakest
    FROM latest l
    LEFT JOIN ocrapp_field f ON f.read_id = l.id
    GROUP BY l.capture_id, l.needs_review
)
UPDATE ocrapp_capture c
SET review_state = CASE
        WHEN agg.n > 0 AND agg.unsigned = 0 THEN 'reviewed'
        WHEN agg.needs_review THEN 'needs_review'
        ELSE 'accepted'
    END,
    weakest_confidence = agg.weakest
FROM agg
WHERE agg.capture_id = c.id
"""


class Migration(migrations.Migration):
    dependencies = [
        ("ocrapp", "0014_merge_search"),
    ]

    operations = [
        migrations.AddField(
            model_name="capture",
            name="review_state",
            field=models.CharField(
                blank=True, default="", max_length=16, verbose_name="review state"
            ),
        ),
        migrations.AddField(
            model_name="capture",
            name="weakest_confidence",
            field=models.FloatField(blank=True, null=True, verbose_name="weakest confidence"),
        ),
        migrations.RunSQL(BACKFILL, reverse_sql=migrations.RunSQL.noop),
        migrations.AddIndex(
            model_name="capture",
            index=models.Index(
                fields=["station_line", "-created_at", "-id"], name="capture_line_created_idx"
            ),
        ),
        migrations.AddIndex(
            model_name="capture",
            index=models.Index(
                fields=["review_state", "-created_at", "-id"], name="capture_review_created_idx"
            ),
        ),
    ]
