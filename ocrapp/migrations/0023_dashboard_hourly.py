import django.db.models.deletion
from django.db import migrations, models

# The reads stored before this migration (their ReadMetric rows) summed per UTC hour, station,
# line and product type, as ocrapp.dashboard.read_hourly_add does for each new read.
BACKFILL = """
INSERT INTO ocrapp_readhourly (
    hour, station_id, station_line, product_type_id, reads, auto_accepted, mislabel, glare,
    blur, exposure, confidence_sum, confidence_n)
SELECT date_trunc('hour', created_at, 'UTC'), station_id, station_line, product_type_id,
    count(*), count(*) FILTER (WHERE auto_accepted), count(*) FILTER (WHERE mislabel),
    count(*) FILTER (WHERE glare), count(*) FILTER (WHERE blur),
    count(*) FILTER (WHERE exposure), COALESCE(sum(confidence), 0), count(confidence)
FROM ocrapp_readmetric
GROUP BY 1, 2, 3, 4
"""


class Migration(migrations.Migration):
    dependencies = [
        ("ocrapp", "0022_similar_neighbours"),
    ]

    operations = [
        migrations.CreateModel(
            name="ReadHourly",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("hour", models.DateTimeField()),
                ("station_line", models.CharField(max_length=100)),
                ("reads", models.IntegerField(default=0)),
                ("auto_accepted", models.IntegerField(default=0)),
                ("mislabel", models.IntegerField(default=0)),
                ("glare", models.IntegerField(default=0)),
                ("blur", models.IntegerField(default=0)),
                ("exposure", models.IntegerField(default=0)),
                ("confidence_sum", models.FloatField(default=0.0)),
                ("confidence_n", models.IntegerField(default=0)),
                (
                    "product_type",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="ocrapp.producttype",
                    ),
                ),
                (
                    "station",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="ocrapp.station",
                    ),
                ),
            ],
            options={
                "verbose_name": "hourly read counts",
                "verbose_name_plural": "hourly read counts",
                "indexes": [
                    models.Index(fields=["station_line", "hour"], name="readhourly_line_hour_idx"),
                    models.Index(fields=["station", "hour"], name="readhourly_station_hour_idx"),
                ],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("hour", "station", "station_line", "product_type"),
                        name="readhourly_key",
                    )
                ],
            },
        ),
        migrations.RunSQL(BACKFILL, reverse_sql=migrations.RunSQL.noop),
    ]
