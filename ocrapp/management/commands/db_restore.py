"""``manage.py db_restore FILE [--new-database NAME]``: ``pg_restore`` of a ``db_backup`` dump
into a new database on the same server, or into the configured database when it is empty
(``ocrapp.backup``). One transaction: a failed restore leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from ocrapp import backup


class Command(BaseCommand):
    help = "Restore a db_backup dump into a new database, or into the (empty) configured one."

    def add_arguments(self, parser):
        parser.add_argument("dump", type=Path, metavar="FILE")
        parser.add_argument(
            "--new-database", metavar="NAME", help="create this database and restore into it"
        )

    def handle(self, *args, **options):
        try:
            target = backup.restore(options["dump"], new_database=options["new_database"])
        except backup.BackupError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"restored {options['dump']} into database {target!r}")
