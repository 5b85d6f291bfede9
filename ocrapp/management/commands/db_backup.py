"""``manage.py db_backup --out FILE``: ``pg_dump -Fc`` of the configured database
(``ocrapp.backup``; restore with ``manage.py db_restore``)."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from ocrapp import backup


class Command(BaseCommand):
    help = "Dump the database (pg_dump custom format) into FILE."

    def add_arguments(self, parser):
        parser.add_argument("--out", required=True, type=Path, metavar="FILE")

    def handle(self, *args, **options):
        try:
            out = backup.dump(options["out"])
        except backup.BackupError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"database dumped to {out} ({out.stat().st_size} bytes)")
