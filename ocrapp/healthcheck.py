"""Container healthchecks (docker-compose.yml, Dockerfile): ``python -m ocrapp.healthcheck ...``.

- ``web [--url URL]``: ``GET /healthz`` of the local web server (default
  ``http://127.0.0.1:$PORT/healthz``) answers 200. The request names the first host of
  ``DJANGO_ALLOWED_HOSTS`` so that a production host list does not turn it into a 400.
- ``worker [--node NAME]``: the Celery worker ``NAME`` (default ``ocr@<hostname>``, as
  ``celery worker -n ocr@%h`` names it) answers a ``stats`` broadcast, and every process of its
  pool has warmed its pipeline (the markers ``workers.warmup`` writes; not checked when
  ``OCR_WARMUP=0``).
- ``webhooks [--node NAME]``: the webhook worker ``NAME`` (default ``webhooks@<hostname>``)
  answers a ``stats`` broadcast (a threads pool: no model, nothing to warm).
- ``reaper --heartbeat FILE [--max-age S]``: the reaper touched ``FILE`` (``manage.py
  capture_reaper --heartbeat FILE``) within ``S`` seconds (default 3 x ``OCR_REAP_INTERVAL``).

Exit status 0 when healthy, 1 when not, with one line saying why. Only ``worker`` and
``webhooks`` import Django and Celery; nothing here imports a model library.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def _allowed_host() -> str | None:
    """The first ``DJANGO_ALLOWED_HOSTS`` entry usable as a Host header (None: any will do)."""
    for host in os.environ.get("DJANGO_ALLOWED_HOSTS", "").split(","):
        host = host.strip().lstrip(".")
        if host and host != "*" and "*" not in host:
            return host
    return None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # noqa: ARG002
        return None  # a redirect (e.g. to https) is an answer to report, not to follow


def check_web(url: str, timeout: float = 5.0) -> tuple[bool, str]:
    request = urllib.request.Request(url)
    host = _allowed_host()
    if host:
        request.add_header("Host", host)
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=timeout) as resp:
            return resp.status == 200, f"{url}: {resp.status}"
    except urllib.error.HTTPError as exc:
        hint = " (exempt it from SECURE_SSL_REDIRECT)" if 300 <= exc.code < 400 else ""
        return False, f"{url}: {exc.code}{hint}"
    except OSError as exc:
        return False, f"{url}: {exc}"


def check_worker(node: str, timeout: float = 5.0) -> tuple[bool, str]:
    from workers.celery import app
    from workers.warmup import read_warm_marker

    replies = app.control.inspect(destination=[node], timeout=timeout).stats() or {}
    stats = replies.get(node)
    if not stats:
        return False, f"worker {node} did not answer"
    pids = [int(p) for p in stats.get("pool", {}).get("processes", [])]
    if not pids:
        return False, f"worker {node}: no pool process"
    if os.environ.get("OCR_WARMUP", "1").strip().lower() in ("0", "false", "no", "off"):
        return True, f"worker {node}: pool {pids} (warm-up off)"
    markers = {pid: read_warm_marker(pid) for pid in pids}
    cold = [pid for pid, marker in markers.items() if marker is None]
    if cold:
        return False, f"worker {node}: pool processes {cold} not warm (models not loaded)"
    devices = sorted({f"{m['device']} {m['providers']}" for m in markers.values() if m})
    return True, f"worker {node}: pool {pids} warm on {'; '.join(devices)}"


def check_webhook_worker(node: str, timeout: float = 5.0) -> tuple[bool, str]:
    from workers.celery import app

    replies = app.control.inspect(destination=[node], timeout=timeout).stats() or {}
    stats = replies.get(node)
    if not stats:
        return False, f"webhook worker {node} did not answer"
    return True, f"webhook worker {node}: {stats.get('pool', {}).get('max-concurrency')} threads"


def check_heartbeat(path: Path, max_age: float) -> tuple[bool, str]:
    try:
        age = time.time() - path.stat().st_mtime
    except OSError:
        return False, f"{path}: no heartbeat yet"
    return age <= max_age, f"{path}: last beat {age:.0f}s ago (limit {max_age:.0f}s)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ocrapp.healthcheck")
    sub = parser.add_subparsers(dest="what", required=True)
    web = sub.add_parser("web")
    web.add_argument("--url", default=f"http://127.0.0.1:{os.environ.get('PORT', '8000')}/healthz")
    worker = sub.add_parser("worker")
    worker.add_argument("--node", default=f"ocr@{socket.gethostname()}")
    webhooks = sub.add_parser("webhooks")
    webhooks.add_argument("--node", default=f"webhooks@{socket.gethostname()}")
    reaper = sub.add_parser("reaper")
    reaper.add_argument("--heartbeat", type=Path, required=True)
    reaper.add_argument("--max-age", type=float, default=None)
    args = parser.parse_args(argv)

    if args.what == "web":
        ok, why = check_web(args.url)
    elif args.what == "worker":
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ocrapp.settings")
        ok, why = check_worker(args.node)
    elif args.what == "webhooks":
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ocrapp.settings")
        ok, why = check_webhook_worker(args.node)
    else:
        interval = float(os.environ.get("OCR_REAP_INTERVAL", "10"))
        ok, why = check_heartbeat(args.heartbeat, args.max_age or 3 * interval + 5)
    print(("healthy: " if ok else "unhealthy: ") + why, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
