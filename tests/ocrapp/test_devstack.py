"""ocrapp.devstack: the embedded Redis keeps its queue on disk, the supervisor restarts and stops
process groups, `manage` reuses the services of a running app."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from ocrapp import devstack
from tests.conftest import ROOT, wait_for

pytestmark = pytest.mark.slow


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_redis_append_only_file_keeps_a_queued_message_across_a_crash(tmp_path):
    from workers.celery import app
    from workers.tasks import read_capture

    port = devstack._free_port()
    data_dir = tmp_path / devstack.REDIS_DIR
    data_dir.mkdir()
    redis = devstack.Proc(
        "redis",
        devstack.redis_argv(port=port, data_dir=data_dir),
        ready=lambda: devstack._wait_port(port),
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    redis.start()
    try:
        with app.connection_for_write(url) as conn:
            read_capture.apply_async(args=["capture-in-the-queue"], connection=conn)
        aof = data_dir / "appendonly.aof"
        wait_for(lambda: aof.exists() and b"capture-in-the-queue" in aof.read_bytes(), 10)
        os.kill(redis.pid, signal.SIGKILL)  # a crash, not a clean shutdown
        redis.proc.wait(5)
        redis.start()  # as the supervisor does: same port, same folder
        with app.connection_for_write(url) as conn:
            message = conn.default_channel.basic_get("ocr", no_ack=True)
            assert message is not None, "the queued message did not survive the restart"
            assert message.headers["task"] == read_capture.name
            assert message.decode()[0] == ["capture-in-the-queue"]
    finally:
        redis.stop(5)


def test_supervisor_restarts_a_dead_process_and_clears_what_it_left(tmp_path, capsys):
    proc = devstack.Proc("svc", ["sh", "-c", "sleep 300 & wait"])
    proc.start()
    wait_for(lambda: psutil.Process(proc.pid).children(), 10)
    first, orphan = proc.pid, psutil.Process(proc.pid).children()[0].pid
    try:
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: proc.proc.poll() is not None, 10)
        assert proc.supervise() is False  # noticed: backoff starts, leftovers killed
        assert f"svc (pid {first}) was killed by SIGKILL" in capsys.readouterr().out
        wait_for(lambda: not _alive(orphan), 10)
        wait_for(proc.supervise, 10, 0.05)  # restarted after the 1 s backoff
        assert proc.alive() and proc.pid != first and proc.restarts == 1
        assert f"svc restarted (pid {proc.pid})" in capsys.readouterr().out
    finally:
        proc.kill_group()


def test_stop_is_bounded_even_when_a_process_ignores_sigterm():
    # The shell and its child ignore SIGTERM (like a gunicorn worker stuck in a handler).
    proc = devstack.Proc("stubborn", ["sh", "-c", "trap '' TERM; sleep 300 & wait; sleep 300"])
    proc.start()
    wait_for(lambda: psutil.Process(proc.pid).children(), 10)
    members = [proc.pid, *(c.pid for c in psutil.Process(proc.pid).children())]
    t0 = time.monotonic()
    proc.stop(timeout=1.0)
    assert time.monotonic() - t0 < 10  # bounded: the group was SIGKILLed after the timeout
    wait_for(lambda: not any(_alive(pid) for pid in members), 10)


def test_manage_uses_the_services_of_the_running_app(tmp_path):
    """With a live `run` state file, `manage` starts no PostgreSQL or Redis of its own."""
    state = {
        "pid": os.getpid(),  # alive: stands for the `run` process
        "env": {
            "DATABASE_URL": os.environ["DATABASE_URL"],
            "CELERY_BROKER_URL": os.environ["CELERY_BROKER_URL"],
        },
    }
    (tmp_path / devstack.STATE_FILE).write_text(json.dumps(state))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env["APP_VAR_DIR"] = str(tmp_path)
    code = "from django.conf import settings; print('BROKER', settings.CELERY_BROKER_URL)"
    out = subprocess.run(
        [sys.executable, "-m", "ocrapp.devstack", "manage", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "using the services of the running app" in out.stdout
    assert f"BROKER {os.environ['CELERY_BROKER_URL']}" in out.stdout
    assert not (tmp_path / "pgdata").exists() and not (tmp_path / devstack.REDIS_DIR).exists()

    state["pid"] = 2**22 + 12345  # not a running process: a stale file is ignored
    (tmp_path / devstack.STATE_FILE).write_text(json.dumps(state))
    assert devstack.read_state(tmp_path) is None
