"""``manage.py purge_images --older-than DAYS [--dry-run]``: retention of capture images.

Deletes the stored images (local files or S3 objects, through Django's storage API) of finished
captures older than DAYS days and marks each capture "image deleted by retention"; the capture,
its reads, fields, search rows and the image's sha256 stay (``services.images_purge``). Captures
still being read and those waiting for review keep their image. Each capture is one
transaction with its own audit row, and the run ends with a ``retention_run`` audit row with the
counts: interrupt it anywhere and run it again. Exit status 1 when an image could not be deleted.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from ocrapp import services
from ocrapp.errors import ApplicationError


class Command(BaseCommand):
    help = "Delete capture images older than N days; keep the reads, fields and sha256."

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than", type=int, required=True, metavar="DAYS", help="age in days"
        )
        parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")
        parser.add_argument("--batch", type=int, default=200, help="captures fetched at a time")

    def handle(self, *args, **options):
        try:
            report = services.images_purge(
                older_than_days=options["older_than"],
                dry_run=options["dry_run"],
                batch=max(1, options["batch"]),
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        verb = "would delete" if report.dry_run else "deleted"
        self.stdout.write(
            f"images older than {report.cutoff:%Y-%m-%d %H:%M:%S %Z}: {verb} {report.purged}; "
            f"kept {report.kept_unfinished} still being read, {report.kept_for_review} waiting "
            f"for review; {report.errors} error(s)"
        )
        if report.errors:
            raise CommandError(f"{report.errors} image(s) could not be deleted; run again")
