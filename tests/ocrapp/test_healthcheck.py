"""Container healthchecks (ocrapp/healthcheck.py) and the warm-up markers they read."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
import time

import pytest

from ocrapp import healthcheck
from workers import warmup


class _Handler(http.server.BaseHTTPRequestHandler):
    seen_hosts: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        _Handler.seen_hosts.append(self.headers.get("Host", ""))
        if self.path == "/healthz":
            self.send_response(200)
        elif self.path == "/moved":
            self.send_response(301)
            self.send_header("Location", "https://elsewhere.invalid/healthz")
        else:
            self.send_response(503)
        self.end_headers()

    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def local_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Handler.seen_hosts.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_web_check_wants_a_200_from_healthz_with_an_allowed_host(local_server, monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOWED_HOSTS", ".example.com,serial.example.com")
    assert healthcheck.check_web(f"{local_server}/healthz")[0] is True
    assert _Handler.seen_hosts == ["example.com"]
    ok, why = healthcheck.check_web(f"{local_server}/other")
    assert not ok and "503" in why
    ok, why = healthcheck.check_web(f"{local_server}/moved")  # not followed
    assert not ok and "301" in why and "SECURE_SSL_REDIRECT" in why
    ok, why = healthcheck.check_web("http://127.0.0.1:9/healthz", timeout=2)
    assert not ok
    monkeypatch.setenv("DJANGO_ALLOWED_HOSTS", "*")
    _Handler.seen_hosts.clear()
    assert healthcheck.check_web(f"{local_server}/healthz")[0] is True
    assert _Handler.seen_hosts == [local_server.removeprefix("http://")]


def test_web_command_exit_status(local_server):
    base = [sys.executable, "-m", "ocrapp.healthcheck", "web", "--url"]
    ok = subprocess.run([*base, f"{local_server}/healthz"], capture_output=True, text=True)
    bad = subprocess.run([*base, f"{local_server}/other"], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.startswith("healthy:")
    assert bad.returncode == 1 and bad.stderr.startswith("unhealthy:")


def test_reaper_heartbeat_must_be_fresh(tmp_path):
    beat = tmp_path / "reaper.alive"
    assert healthcheck.check_heartbeat(beat, 30)[0] is False  # never written
    beat.touch()
    assert healthcheck.check_heartbeat(beat, 30)[0] is True
    old = time.time() - 120
    os.utime(beat, (old, old))
    ok, why = healthcheck.check_heartbeat(beat, 30)
    assert not ok and "120s ago" in why


def test_warm_marker_belongs_to_that_very_process(tmp_path, monkeypatch):
    monkeypatch.setenv("APP_VAR_DIR", str(tmp_path))
    assert warmup.read_warm_marker(os.getpid()) is None
    marker = warmup.write_warm_marker(device="cpu", providers=["CPUExecutionProvider"], seconds=1)
    assert marker.parent == tmp_path / "run" / "warm"
    data = warmup.read_warm_marker(os.getpid())
    assert data["device"] == "cpu" and data["providers"] == ["CPUExecutionProvider"]
    # a marker left by a process that has ended is never taken for a live one
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    dead_pid = int(dead.stdout)
    stale = marker.with_name(f"{dead_pid}.json")
    stale.write_text(marker.read_text().replace(f'"pid": {os.getpid()}', f'"pid": {dead_pid}'))
    assert warmup.read_warm_marker(dead_pid) is None
    # nor a marker whose recorded start time is not this process's (a reused pid)
    marker.write_text(marker.read_text().replace('"start": "', '"start": "9'))
    assert warmup.read_warm_marker(os.getpid()) is None
    # the next marker written drops the stale ones
    warmup.write_warm_marker(device="cpu", providers=["CPUExecutionProvider"], seconds=1)
    assert not stale.exists() and warmup.read_warm_marker(os.getpid()) is not None
