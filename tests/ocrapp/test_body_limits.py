"""Body and header limits through the server side of the application: the WSGI wrapper with a
chunked body, Django's real ASGI handler wrapped in ASGIBodyLimit, and the real gunicorn and
uvicorn run with the flags README asks for (their own limits looser than the application's)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.signals import request_started
from django.db import close_old_connections
from django.test.client import encode_multipart

from ocrapp.limits import ASGIBodyLimit, limit_wsgi_body
from ocrapp.models import Capture
from tests.conftest import ROOT, _test_database_url
from tests.images import label_png

pytestmark = pytest.mark.django_db

CHUNK = 64 * 1024


class EndlessBody(io.RawIOBase):
    """A request body that never ends (a client streaming 300 MB or more): counts what is read."""

    def __init__(self) -> None:
        self.read_bytes = 0

    def read(self, n: int = -1) -> bytes:
        n = CHUNK if n is None or n < 0 else min(n, CHUNK)
        self.read_bytes += n
        return b"x" * n


def _wsgi(app, environ: dict) -> tuple[str, dict, bytes]:
    """Call a WSGI app as a server does, keeping the test's database connection (as Django's
    test client does: the handler would close it at request start)."""
    seen = {}
    request_started.disconnect(close_old_connections)
    try:
        return _wsgi_call(app, environ, seen)
    finally:
        request_started.connect(close_old_connections)


def _wsgi_call(app, environ: dict, seen: dict) -> tuple[str, dict, bytes]:

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, dict(headers)

    body = b"".join(app(environ, start_response))
    return seen["status"], seen["headers"], body


def _environ(path: str, stream, **extra) -> dict:
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": stream,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        **extra,
    }


def test_wsgi_chunked_body_is_read_only_to_the_cap(settings):
    from ocrapp.wsgi import application

    settings.MAX_REQUEST_BYTES = 2 * 1024 * 1024
    body = EndlessBody()
    status, headers, content = _wsgi(
        application,
        _environ(
            "/api/v1/captures",
            body,
            HTTP_TRANSFER_ENCODING="chunked",
            CONTENT_TYPE="multipart/form-data; boundary=x",
        ),
    )
    assert status.startswith("413")
    assert headers["Content-Type"] == "application/json"
    assert json.loads(content)["error"]["code"] == "request_too_large"
    assert settings.MAX_REQUEST_BYTES < body.read_bytes <= settings.MAX_REQUEST_BYTES + CHUNK


def test_wsgi_chunked_upload_under_the_cap_is_taken(station_token, product_type):
    payload = encode_multipart(
        "BoUnDaRy",
        {
            "image": SimpleUploadedFile("a.png", label_png(["S/N: 9"]), "image/png"),
            "product_type": product_type.name,
        },
    )
    seen = []

    def inner(environ, start_response):
        seen.append(environ)
        start_response("204 No Content", [])
        return [environ["wsgi.input"].read()]

    app = limit_wsgi_body(inner)
    _s, _h, echoed = _wsgi(
        app, _environ("/x", io.BytesIO(payload), HTTP_TRANSFER_ENCODING="chunked")
    )
    assert seen[0]["CONTENT_LENGTH"] == str(len(payload)) and echoed == payload
    from ocrapp.wsgi import application

    status, _h, content = _wsgi(
        application,
        _environ(
            "/api/v1/captures",
            io.BytesIO(payload),
            HTTP_TRANSFER_ENCODING="chunked",
            CONTENT_TYPE="multipart/form-data; boundary=BoUnDaRy",
            HTTP_AUTHORIZATION=f"Token {station_token}",
        ),
    )
    assert status.startswith("202"), content
    assert Capture.objects.filter(pk=json.loads(content)["id"]).exists()


def _asgi(app, scope_extra: dict, chunks) -> tuple[int, dict, bytes, int]:
    """Drive an ASGI app with an HTTP request whose body is ``chunks`` (an iterator)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/captures",
        "raw_path": b"/api/v1/captures",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
        **scope_extra,
    }
    sent: list[dict] = []
    received = {"bytes": 0, "done": False}

    async def receive():
        if received["done"]:
            await asyncio.sleep(3600)  # the client waits for the answer
        chunk = next(chunks, None)
        if chunk is None:
            received["done"] = True
            return {"type": "http.request", "body": b"", "more_body": False}
        received["bytes"] += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message):
        sent.append(message)

    asyncio.run(asyncio.wait_for(app(scope, receive, send), 60))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body, received["bytes"]


def _endless():
    while True:
        yield b"x" * CHUNK


def test_asgi_content_length_over_cap_is_413_unread(settings):
    from django.core.asgi import get_asgi_application

    app = ASGIBodyLimit(get_asgi_application())
    status, headers, body, received = _asgi(
        app, {"headers": [(b"content-length", str(300 * 1024 * 1024).encode())]}, _endless()
    )
    assert status == 413 and received == 0
    assert json.loads(body)["error"]["details"]["max_bytes"] == settings.MAX_REQUEST_BYTES


def test_asgi_chunked_body_stops_at_the_cap(settings):
    from django.core.asgi import get_asgi_application

    settings.MAX_REQUEST_BYTES = 2 * 1024 * 1024
    app = ASGIBodyLimit(get_asgi_application())
    status, headers, body, received = _asgi(
        app, {"headers": [(b"accept-language", b"ko")]}, _endless()
    )
    assert status == 413 and headers[b"content-type"] == b"application/json"
    err = json.loads(body)["error"]
    assert err["code"] == "request_too_large" and "바이트" in err["message"]
    assert settings.MAX_REQUEST_BYTES < received <= settings.MAX_REQUEST_BYTES + CHUNK


def test_asgi_small_request_reaches_django():
    from django.core.asgi import get_asgi_application

    app = ASGIBodyLimit(get_asgi_application())
    status, _h, body, _r = _asgi(
        app,
        {"method": "GET", "path": "/api/v1/serials", "query_string": b"q=a%00"},
        iter([]),
    )
    assert status == 400 and json.loads(body)["error"]["code"] == "invalid"


# --- the real servers ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _server(argv: list[str], port: int):
    env = {
        **os.environ,
        "DATABASE_URL": _test_database_url(),
        "MAX_UPLOAD_BYTES": str(1024 * 1024),  # MAX_REQUEST_BYTES: 2 MiB
        "DJANGO_SETTINGS_MODULE": "ocrapp.settings",
    }
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(proc.stdout.read().decode(errors="replace")[-3000:])
            time.sleep(0.2)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def _exchange(port: int, head: bytes, body_chunks=(), limit: int = 20 * 1024 * 1024):
    """Send ``head`` then body chunks until the server answers or ``limit`` bytes went;
    return (status, content type, body, bytes of body sent)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), 30) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        for chunk in body_chunks:
            if sent >= limit:
                break
            try:
                sock.sendall(chunk)
                sent += len(chunk)
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                break
            with contextlib.suppress(BlockingIOError):
                if sock.recv(1, socket.MSG_PEEK):
                    break
        sock.setblocking(True)
        data = b""
        with contextlib.suppress(ConnectionResetError):
            while b"\r\n\r\n" not in data or len(data) < data.find(b"\r\n\r\n") + 4 + _length(data):
                part = sock.recv(65536)
                if not part:
                    break
                data += part
    head_raw, _sep, body = data.partition(b"\r\n\r\n")
    lines = head_raw.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _s, v in (ln.partition(":") for ln in lines[1:])}
    return int(lines[0].split()[1]), headers.get("content-type", ""), body, sent


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def _chunked_endless():
    piece = b"x" * CHUNK
    frame = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    while True:
        yield frame


def _check_server(port: int) -> None:
    host = f"127.0.0.1:{port}"
    status, ctype, body, _ = _exchange(
        port, f"GET /api/v1/serials?q={'S' * 5000} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    )
    assert (status, ctype) == (414, "application/json"), body[:300]
    status, ctype, body, _ = _exchange(
        port,
        f"GET /api/v1/serials?q=1 HTTP/1.1\r\nHost: {host}\r\nX-Filler: {'a' * 9000}\r\n\r\n".encode(),
    )
    assert (status, ctype) == (431, "application/json"), body[:300]
    assert json.loads(body)["error"]["code"] == "header_too_large"
    # a declared 300 MB body is refused before a byte of it is sent
    status, ctype, body, sent = _exchange(
        port,
        (
            f"POST /api/v1/captures HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Type: multipart/form-data; boundary=x\r\n"
            f"Content-Length: {300 * 1024 * 1024}\r\n\r\n"
        ).encode(),
    )
    assert (status, ctype) == (413, "application/json") and sent == 0, body[:300]
    # a chunked body without end: answered 413 once the cap (2 MiB here) is passed
    status, ctype, body, sent = _exchange(
        port,
        (
            f"POST /api/v1/captures HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Type: multipart/form-data; boundary=x\r\n"
            f"Transfer-Encoding: chunked\r\n\r\n"
        ).encode(),
        _chunked_endless(),
    )
    assert (status, ctype) == (413, "application/json"), body[:300]
    assert json.loads(body)["error"]["code"] == "request_too_large"
    assert sent < 20 * 1024 * 1024


@pytest.mark.slow
def test_real_gunicorn_with_looser_limits(transactional_db):
    port = _free_port()
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "ocrapp.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--worker-class",
        "gthread",
        "--threads",
        "2",
        "--limit-request-line",
        "16384",
        "--limit-request-field_size",
        "16384",
        "--limit-request-fields",
        "200",
    ]
    with _server(argv, port):
        _check_server(port)


@pytest.mark.slow
def test_real_uvicorn_with_looser_limits(transactional_db):
    port = _free_port()
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "tests.asgi_limited:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--http",
        "h11",
        "--h11-max-incomplete-event-size",
        "131072",
        "--no-access-log",
    ]
    with _server(argv, port):
        _check_server(port)
