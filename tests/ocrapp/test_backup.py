"""Backup and restore on the embedded PostgreSQL: ``db_backup`` (pg_dump -Fc) of the test
database with real rows, ``db_restore --new-database`` into a fresh database, the same row
counts there and ``audit_verify`` passing on the restored copy."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from io import StringIO
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg
import pytest
from django.apps import apps
from django.core.management import CommandError, call_command
from django.db import connection

from ocrapp import backup, services
from tests.review_data import accepted_result, failed_capture, queued_result, stored_capture

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db(transaction=True)


def _url(database: str) -> str:
    return urlunparse(urlparse(os.environ["DATABASE_URL"])._replace(path="/" + database))


def _counts(database: str) -> dict[str, int]:
    tables = sorted(
        {m._meta.db_table for m in apps.get_models()} | {"django_migrations", "auth_user"}
    )
    with psycopg.connect(_url(database)) as conn:
        return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}


def test_dump_and_restore_into_a_fresh_database(tmp_path, user, station, product_type):
    stored_capture(user, station, product_type, accepted_result("SN20260301"))
    stored_capture(user, station, product_type, queued_result("SN20260302"))
    failed_capture(user, station, product_type)
    services.station_token_issue(station=station)
    source = connection.settings_dict["NAME"]
    expected = _counts(source)
    assert expected["ocrapp_read"] == 2 and expected["ocrapp_auditevent"] > 0

    dump = tmp_path / "serialread.dump"
    out = StringIO()
    call_command("db_backup", "--out", str(dump), stdout=out)
    assert dump.stat().st_size > 0 and not (tmp_path / "serialread.dump.partial").exists()

    target = f"restore_{uuid.uuid4().hex[:8]}"
    try:
        call_command("db_restore", str(dump), "--new-database", target, stdout=out)
        assert _counts(target) == expected
        env = dict(os.environ, DATABASE_URL=_url(target), DJANGO_SETTINGS_MODULE="ocrapp.settings")
        verify = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), "audit_verify"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert verify.returncode == 0, verify.stdout + verify.stderr
        # the restored copy is a real, separate database: a change there does not reach here
        with psycopg.connect(_url(target), autocommit=True) as conn:
            conn.execute("UPDATE ocrapp_station SET name = 'renamed-in-copy'")
        assert _counts(source) == expected
        # restoring again under the same name is refused, the copy untouched
        with pytest.raises(CommandError, match="exists already"):
            call_command("db_restore", str(dump), "--new-database", target)
    finally:
        with connection.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')


def test_restore_refuses_a_non_empty_database(tmp_path, station):
    dump = backup.dump(tmp_path / "x.dump")
    with pytest.raises(CommandError, match="not empty"):
        call_command("db_restore", str(dump))
    with pytest.raises(CommandError, match="no such dump file"):
        call_command("db_restore", str(tmp_path / "missing.dump"), "--new-database", "never_made")
    with connection.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = 'never_made'")
        assert cur.fetchone() is None
