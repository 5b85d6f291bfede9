"""The ASGI web server as devstack runs it (uvicorn, ``devstack.web_argv``) on the test database:
hundreds of open ``?wait=`` requests do not keep an upload from being acknowledged, waiters are
woken by the status change, the sync pages (sessions, CSRF, admin, static files) still work, and
start/stop cycles always stop cleanly and free the port.

No Celery worker here: the captures stay PENDING until the test finishes them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from pathlib import Path

import psutil
import pytest
import requests
from django.conf import settings

from ocrapp import services
from ocrapp.devstack import Proc, _free_port, web_argv
from tests.conftest import _test_database_url
from tests.images import label_png

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


class Server:
    def __init__(self, proc: Proc, port: int, log_path: Path) -> None:
        self.proc, self.port, self.log_path = proc, port, log_path
        self.url = f"http://127.0.0.1:{port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def web_server(django_db_blocker, log_dir: Path, *, workers: int = 2):
    """uvicorn with devstack's arguments on a free port, talking to the test database; yields
    once it answers (a static file), stops it (SIGTERM, then devstack's bounded kill)."""
    with django_db_blocker.unblock():
        db_url = _test_database_url()
    port = _free_port()
    env = dict(os.environ)
    env.pop(
        "DJANGO_ALLOW_ASYNC_UNSAFE", None
    )  # as in production: a sync DB call in async code fails
    env.update(
        DATABASE_URL=db_url,
        MEDIA_ROOT=str(settings.MEDIA_ROOT),
        DJANGO_SETTINGS_MODULE="ocrapp.settings",
        PYTHONUNBUFFERED="1",
    )
    log_path = log_dir / f"web-{port}.log"
    with open(log_path, "wb") as log:
        proc = Proc(
            "web",
            web_argv(host="127.0.0.1", port=port, workers=workers),
            env=env,
            stdout=log,
            stop_timeout=20,
        )
        proc.start()
        server = Server(proc, port, log_path)
        try:
            deadline = time.monotonic() + 90
            while True:
                with contextlib.suppress(requests.RequestException):
                    if requests.get(f"{server.url}/static/ocrapp/app.css", timeout=5).ok:
                        break
                if not proc.alive() or time.monotonic() > deadline:
                    pytest.fail(f"the web server did not start:\n{server.log()[-4000:]}")
                time.sleep(0.2)
            yield server
        finally:
            proc.stop()


def _open_wait(server: Server, capture_id, token: str, wait: int = 30) -> socket.socket:
    """A ?wait= request sent in full on its own connection; the answer is read later."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(
        (
            f"GET /api/v1/captures/{capture_id}?wait={wait} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{server.port}\r\nAuthorization: Token {token}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
    )
    return sock


def _answered(sock: socket.socket) -> bool:
    """Whether any byte of an answer (or the close) arrived, without waiting."""
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) is not None
    except BlockingIOError:
        return False
    finally:
        sock.setblocking(True)


def _read_answer(sock: socket.socket, timeout: float = 60) -> tuple[int, dict]:
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def _pending(user, station, product_type, n: int) -> list[str]:
    return [
        str(
            services.capture_create(
                user=user,
                image_bytes=label_png([f"S/N: SN2026{i:04d}"]),
                product_type=product_type,
                station=station,
                client_ref=f"pending-{i}",
            )[0].pk
        )
        for i in range(n)
    ]


def test_two_hundred_open_waits_do_not_hold_back_an_upload(
    django_db_blocker, tmp_path, user, station, product_type, station_token
):
    captures = _pending(user, station, product_type, 20)
    with web_server(django_db_blocker, tmp_path) as server:
        waiters = [_open_wait(server, captures[i % 20], station_token) for i in range(200)]
        # more waits than the old server had threads (2 x 16), all sent, none answered
        resp = requests.post(
            f"{server.url}/api/v1/captures",
            headers={"Authorization": f"Token {station_token}", "Idempotency-Key": "w-1"},
            data={"product_type": product_type.name, "client_ref": "while-waiting"},
            files={"image": ("a.png", label_png(["S/N: SN20269999"]), "image/png")},
            timeout=60,
        )
        assert resp.status_code == 202, resp.text
        assert resp.json()["status"] == "PENDING"
        still_open = [not _answered(s) for s in waiters]
        assert all(still_open), f"{still_open.count(False)} waits answered before the upload"
        for capture_id in captures:  # the status change wakes every waiter of that capture
            assert services.capture_fail(capture_id=capture_id, code="test", reason="done")
        answers = [_read_answer(s) for s in waiters]
        log = server.log()
    assert {status for status, _ in answers} == {200}, log[-3000:]
    assert {body["status"] for _, body in answers} == {"FAILED"}
    assert {body["failure"]["code"] for _, body in answers} == {"test"}
    assert {body["id"] for _, body in answers} == set(captures)


def test_wait_through_the_asgi_server_keeps_errors_scope_and_language(
    django_db_blocker, tmp_path, user, station, product_type, station_token
):
    from ocrapp.models import Station

    (capture_id,) = _pending(user, station, product_type, 1)
    other = services.station_create(line="LINE-2", name="station-B")
    other_token = services.station_token_issue(station=Station.objects.get(pk=other.pk))
    with web_server(django_db_blocker, tmp_path, workers=1) as server:
        url = f"{server.url}/api/v1/captures/{capture_id}"

        def get(query: str, token: str | None = station_token, **headers):
            if token:
                headers["Authorization"] = f"Token {token}"
            return requests.get(url + query, headers=headers, timeout=60)

        pending = get("?wait=0.5")
        assert pending.status_code == 200 and pending.json()["status"] == "PENDING"
        assert pending.json() == get("").json()  # the same body with and without wait
        assert get("?wait=1", token=None).status_code == 401
        assert get("?wait=1", token="bogus").json()["error"]["code"] == "authentication_failed"
        hidden = get("?wait=1", token=other_token)  # another station's capture: 404 at once
        assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "not_found"
        bad = get("?wait=99", **{"Accept-Language": "ko"})
        assert bad.status_code == 400 and "wait는 0에서 30" in bad.json()["error"]["message"]
        # sessions, CSRF and the browser pages, as a person logs in on the login page
        browser = requests.Session()
        login = browser.get(f"{server.url}/login/", timeout=30)
        assert login.status_code == 200 and "csrftoken" in browser.cookies
        refused = requests.post(
            f"{server.url}/login/", data={"username": "operator", "password": "x"}, timeout=30
        )
        assert refused.status_code == 403  # no CSRF token
        logged_in = browser.post(
            f"{server.url}/login/",
            data={
                "username": "operator",
                "password": "op-pass-1234",
                "csrfmiddlewaretoken": browser.cookies["csrftoken"],
            },
            headers={"Referer": f"{server.url}/login/"},
            timeout=30,
            allow_redirects=False,
        )
        assert logged_in.status_code == 302, logged_in.text[:500]
        assert browser.get(f"{server.url}/", timeout=30).status_code == 200
        by_session = browser.get(url + "?wait=0.5", timeout=30)
        assert by_session.status_code == 200 and by_session.json()["id"] == capture_id
        assert requests.get(f"{server.url}/admin/login/", timeout=30).status_code == 200


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _alive_in_group(group: int) -> list[str]:
    """The processes of ``group`` that are not dead (a zombie waits for init to reap it)."""
    out = []
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if _pgid(p.pid) == group and p.status() != psutil.STATUS_ZOMBIE:
                out.append(f"{p.pid} {' '.join(p.cmdline())[:120]}")
    return out


def test_start_stop_cycles_stop_cleanly_and_free_the_port(
    django_db_blocker, tmp_path, user, station, product_type, station_token
):
    (capture_id,) = _pending(user, station, product_type, 1)
    for _cycle in range(3):
        with web_server(django_db_blocker, tmp_path) as server:
            waiter = _open_wait(server, capture_id, station_token)  # open while it stops
            time.sleep(0.5)  # let the server take the request before it is told to stop
            group = server.proc.pid
        # web_server stopped it: SIGTERM, then (had it hung) SIGKILL of the group
        assert server.proc.proc.returncode != -signal.SIGKILL, server.log()[-3000:]
        deadline = time.monotonic() + 10  # SIGKILLed leftovers take a moment to be gone
        while (left := _alive_in_group(group)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert left == [], server.log()[-3000:]
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", server.port))  # nothing holds the port
        waiter.settimeout(10)
        with contextlib.suppress(OSError):
            waiter.recv(65536)  # answered or closed, not left hanging
        waiter.close()
