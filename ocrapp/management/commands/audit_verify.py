"""``manage.py audit_verify``: recompute the audit trail's hash chain; exit 1 at the first
broken row, naming it."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from ocrapp.audit import verify_chain


class Command(BaseCommand):
    help = "Verify the hash chain of the audit trail; name the first broken row."

    def handle(self, *args, **options):
        n, broken = verify_chain()
        if broken is not None:
            what = (
                "its content was altered"
                if broken.reason == "hash"
                else ("its link to the row before it is broken (a row was removed or inserted)")
            )
            raise CommandError(
                f"audit trail broken at event #{broken.event_id}: {what} ({n} rows read)"
            )
        self.stdout.write(f"audit trail intact: {n} events")
