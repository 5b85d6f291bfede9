"""``manage.py audit_baseline``: once, after upgrading a database that holds reads saved before
the audit trail recorded field values, record each such read's current field values (one
``baseline`` event per read, actor: system) so that ``audit_verify`` can check them from then
on. Idempotent: reads already recorded are skipped."""

from __future__ import annotations

from django.core.management.base import BaseCommand
from django.db import transaction
from django.db.models import BigIntegerField, Count
from django.db.models.functions import Cast

from ocrapp import audit
from ocrapp.models import AuditEvent, Read
from ocrapp.services import read_audit_state

REASON = "field values present when the audit trail started recording them"


class Command(BaseCommand):
    help = __doc__

    def handle(self, *args, **options):
        recorded = (
            AuditEvent.objects.filter(
                object_type="ocrapp.read",
                action__in=audit.READ_VALUE_ACTIONS,
                object_id__regex=r"^[0-9]+$",
            )
            .annotate(read_id=Cast("object_id", BigIntegerField()))
            .values("read_id")
        )
        reads = (
            Read.objects.exclude(pk__in=recorded)
            .annotate(n_lines=Count("lines", distinct=True))
            .prefetch_related("fields")
            .order_by("pk")
        )
        n = 0
        for read in reads.iterator(chunk_size=500):
            fields = list(read.fields.all())
            records = sum(1 for f in fields if f.serial_records.filter(superseded=False).exists())
            with transaction.atomic():
                audit.record(
                    actor=None,
                    action="baseline",
                    obj=read,
                    after=read_audit_state(
                        read=read, fields=fields, lines=read.n_lines, records=records
                    ),
                    reason=REASON,
                )
            n += 1
        self.stdout.write(f"recorded {n} reads' field values as the audit baseline")
