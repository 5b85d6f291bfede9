"""Shared fixtures: users, stations, product types, and a real Celery worker process.

The test runner (``python -m ocrapp.devstack test``) provides a real PostgreSQL and a real Redis
through DATABASE_URL and CELERY_BROKER_URL.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _clear_shared_cache():
    """Every test starts with no rate-limit counters and no login lockouts (the shared cache:
    Redis database 1 of the test broker, never the broker's queues in database 0)."""
    from django.core.cache import cache

    with contextlib.suppress(Exception):
        cache.clear()
    yield


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup):
    """pytest-django's, and before the test database is dropped: stop the ?wait= listener
    thread (ocrapp.waiting), whose connection would keep the database in use."""
    yield
    from ocrapp import waiting

    waiting.waiters.stop()


@pytest.fixture
def user(db, django_user_model):
    """An operator (role ``operator``); the ``station`` fixture makes them one of its
    operators (``Station.members``) when a test asks for both."""
    from ocrapp import roles

    user = django_user_model.objects.create_user(username="operator", password="op-pass-1234")
    user.groups.add(roles.group(roles.OPERATOR))
    return user


@pytest.fixture
def product_type(db):
    from ocrapp import services
    from ocrapp.demo import DEMO_PRODUCT_TYPES

    return services.product_type_create(name="nameplate", **DEMO_PRODUCT_TYPES["nameplate"])


@pytest.fixture
def station(db, request):
    """Station LINE-1/station-A; the ``user`` fixture's operator works there if the test asks
    for ``user`` too."""
    from ocrapp import services

    station = services.station_create(line="LINE-1", name="station-A")
    if "user" in request.fixturenames:
        station.members.add(request.getfixturevalue("user"))
    return station


@pytest.fixture
def station_token(station):
    from ocrapp import services

    return services.station_token_issue(station=station)


@pytest.fixture
def api_client():
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def station_client(api_client, station_token):
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {station_token}")
    return api_client


def _test_database_url() -> str:
    """The DATABASE_URL of pytest-django's test database (same server, test_ name)."""
    from django.db import connection

    url = urlparse(os.environ["DATABASE_URL"])
    return urlunparse(url._replace(path="/" + connection.settings_dict["NAME"]))


class WorkerProcess:
    def __init__(self, proc: subprocess.Popen, log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def run_celery_worker(
    django_db_blocker,
    log_dir: Path,
    extra_env: dict[str, str] | None = None,
    *,
    queue: str = "ocr",
    pool: tuple[str, ...] = ("--pool", "prefork", "--concurrency", "1"),
):
    """Start a real ``celery worker`` subprocess on ``queue`` (default ``ocr``, prefork, 1
    process; the webhook tests: ``webhooks`` with a threads pool), real broker.

    It talks to the same test database as the tests and, unless ``extra_env`` says otherwise
    (e.g. ``IMAGE_STORAGE=s3``), to the same media folder. Stopped when the block exits.
    """
    from django.conf import settings

    from workers.celery import app

    with django_db_blocker.unblock():
        db_url = _test_database_url()
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(queue)
    log_path = log_dir / ("worker.log" if queue == "ocr" else f"worker-{queue}.log")
    env = dict(os.environ)
    env.update(
        DATABASE_URL=db_url,
        MEDIA_ROOT=str(settings.MEDIA_ROOT),
        DJANGO_SETTINGS_MODULE="ocrapp.settings",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra_env or {})
    log_file = open(log_path, "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers.celery",
            "worker",
            "-Q",
            queue,
            *pool,
            "--prefetch-multiplier",
            "1",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "INFO",
            "-n",
            f"test-{queue}-{os.getpid()}@%h",
        ],
        cwd=ROOT,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    worker = WorkerProcess(proc, log_path)
    try:
        deadline = time.monotonic() + 90
        while "ready." not in worker.log():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"celery worker did not start:\n{worker.log()[-4000:]}")
            time.sleep(0.2)
        yield worker
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log_file.close()


@pytest.fixture(scope="module")
def celery_worker_proc(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real Celery worker for the module (see ``run_celery_worker``).

    Tests that use it must commit their data (``transactional_db`` or ``live_server``).
    Module-scoped, so that it does not consume tasks that other modules enqueue and expect to
    stay PENDING.
    """
    with run_celery_worker(django_db_blocker, tmp_path_factory.mktemp("worker")) as worker:
        yield worker


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.2):
    """Poll ``predicate`` until it returns something truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    event = threading.Event()
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        event.wait(interval)
    pytest.fail(f"condition not met within {timeout}s")
