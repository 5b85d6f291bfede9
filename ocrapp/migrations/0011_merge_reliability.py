"""Merge of the capture-lease branch (0006_reliab_capture_lease) with the audit, review and
roles migrations (0010)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("ocrapp", "0006_reliab_capture_lease"),
        ("ocrapp", "0010_serial_record_protect"),
    ]

    operations = []
