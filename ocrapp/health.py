"""Readiness checks and the worker heartbeat.

``/healthz`` says only that the web process answers. ``/readyz`` runs ``readiness()``: the
database (``SELECT 1``), the broker (a Redis ``PING`` with a short timeout), a worker that wrote
its heartbeat recently, and that such a worker has its models loaded.

The heartbeat: each Celery pool child (``workers/celery.py``) writes, once warm-up is over and
then every ``WORKER_HEARTBEAT_INTERVAL`` s from a daemon thread, a small JSON document to the
broker's Redis under ``serialread:worker:<host>:<pid>`` that expires after
``WORKER_HEARTBEAT_TTL`` s: its host and pid, whether its pipeline is built (``models_loaded``),
the device, the onnxruntime providers it really got and the models (stage, name, version). A
child that stops cleanly deletes its key; one that is killed lets it expire. Web and workers only
share the broker, so this works with workers on other machines (docker compose).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.utils.translation import gettext as _

log = logging.getLogger(__name__)

HEARTBEAT_PREFIX = "serialread:worker:"


def redis_client(url: str | None = None, *, timeout: float | None = None):
    """A redis-py client on the broker (``CELERY_BROKER_URL``) with short socket timeouts."""
    import redis

    t = settings.READYZ_TIMEOUT if timeout is None else timeout
    return redis.Redis.from_url(
        url or settings.CELERY_BROKER_URL, socket_timeout=t, socket_connect_timeout=t
    )


# --- heartbeat (written by the worker's pool children) -----------------------------------------


def _pipeline_state() -> dict[str, Any]:
    """What this process's pipeline cache holds; never imports the pipeline itself."""
    loader = sys.modules.get("workers.pipeline.loader")
    if loader is None:
        return {"models_loaded": False}
    pid = os.getpid()
    pipes = [p for (owner, _cfg), p in list(getattr(loader, "_cache", {}).items()) if owner == pid]
    if not pipes:
        return {"models_loaded": False}
    pipe = pipes[0]
    return {
        "models_loaded": True,
        "device": str(getattr(pipe, "device", "")),
        "providers": list(getattr(pipe, "providers", ())),
        "models": [
            {"stage": m.stage, "name": m.name, "version": m.version}
            for m in getattr(pipe, "models", ())
        ],
    }


def heartbeat_document(*, warmup_error: str = "") -> dict[str, Any]:
    doc: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid(), "at": time.time()}
    doc.update(_pipeline_state())
    if warmup_error:
        doc["warmup_error"] = warmup_error
    return doc


def heartbeat_key() -> str:
    return f"{HEARTBEAT_PREFIX}{socket.gethostname()}:{os.getpid()}"


class Heartbeat:
    """The pool child's heartbeat thread (``start`` after warm-up, ``stop`` at shutdown)."""

    def __init__(self, *, warmup_error: str = "") -> None:
        self.warmup_error = warmup_error
        self.key = heartbeat_key()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._client = None

    def beat(self) -> bool:
        try:
            if self._client is None:
                self._client = redis_client(timeout=2.0)
            doc = heartbeat_document(warmup_error=self.warmup_error)
            self._client.set(self.key, json.dumps(doc), ex=settings.WORKER_HEARTBEAT_TTL)
            return True
        except Exception as exc:  # the broker is down: try again at the next beat
            log.warning("worker heartbeat not written (%s: %s)", type(exc).__name__, exc)
            self._client = None
            return False

    def start(self) -> Heartbeat:
        self.beat()
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(settings.WORKER_HEARTBEAT_INTERVAL):
            self.beat()

    def stop(self) -> None:
        self._stop.set()
        try:
            (self._client or redis_client(timeout=1.0)).delete(self.key)
        except Exception:  # expires by itself
            pass


def worker_heartbeats(client) -> list[dict[str, Any]]:
    """The live heartbeats (keys not yet expired and not older than the TTL)."""
    now = time.time()
    docs = []
    keys = list(client.scan_iter(match=f"{HEARTBEAT_PREFIX}*", count=100))
    for raw in client.mget(keys) if keys else []:
        if raw is None:
            continue
        try:
            doc = json.loads(raw)
            age = now - float(doc["at"])
        except (ValueError, KeyError, TypeError):
            continue
        if age <= settings.WORKER_HEARTBEAT_TTL:
            doc["age_s"] = round(max(age, 0.0), 1)
            docs.append(doc)
    return docs


# --- readiness ----------------------------------------------------------------------------------


@dataclass
class Check:
    ok: bool
    error: str = (
        ""  # a code: database_unreachable, broker_unreachable, no_worker, models_not_loaded
    )
    message: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": self.ok, **self.info}
        if not self.ok:
            body.update(error=self.error, message=self.message)
        return body


def check_database() -> Check:
    from django.db import connection

    t0 = time.perf_counter()
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()
    except Exception as exc:
        log.warning("readyz: database check failed (%s: %s)", type(exc).__name__, exc)
        from django.db import close_old_connections

        close_old_connections()
        return Check(False, "database_unreachable", _("The database does not answer."))
    return Check(True, info={"ms": round((time.perf_counter() - t0) * 1000, 1)})


def readiness() -> dict[str, Any]:
    """Every check, with ``ok`` overall and the names of the failing ones."""
    checks: dict[str, Check] = {"database": check_database()}
    t0 = time.perf_counter()
    heartbeats: list[dict[str, Any]] | None = None
    try:
        client = redis_client()
        client.ping()
        checks["broker"] = Check(True, info={"ms": round((time.perf_counter() - t0) * 1000, 1)})
        heartbeats = worker_heartbeats(client)
    except Exception as exc:
        log.warning("readyz: broker check failed (%s: %s)", type(exc).__name__, exc)
        checks["broker"] = Check(
            False, "broker_unreachable", _("The broker (Redis) does not answer.")
        )
    if heartbeats is None:
        unknown = _("Unknown: the broker, where workers report, does not answer.")
        checks["worker"] = Check(False, "broker_unreachable", unknown)
        checks["models"] = Check(False, "broker_unreachable", unknown)
    elif not heartbeats:
        checks["worker"] = Check(
            False,
            "no_worker",
            _("No worker reported in the last %(seconds)s seconds.")
            % {"seconds": settings.WORKER_HEARTBEAT_TTL},
            info={"workers": 0},
        )
        checks["models"] = Check(False, "no_worker", _("No worker is running to load the models."))
    else:
        checks["worker"] = Check(
            True,
            info={
                "workers": len(heartbeats),
                "last_seen_s": min(h["age_s"] for h in heartbeats),
            },
        )
        warm = [h for h in heartbeats if h.get("models_loaded") and not h.get("warmup_error")]
        if warm:
            checks["models"] = Check(
                True,
                info={
                    "workers": len(warm),
                    "device": warm[0].get("device", ""),
                    "providers": warm[0].get("providers", []),
                    "models": warm[0].get("models", []),
                },
            )
        else:
            errors = sorted({h["warmup_error"] for h in heartbeats if h.get("warmup_error")})
            checks["models"] = Check(
                False,
                "models_not_loaded",
                _("No worker has its models loaded yet."),
                info={"warmup_errors": errors} if errors else {},
            )
    failing = [name for name, c in checks.items() if not c.ok]
    return {
        "status": "fail" if failing else "ok",
        "failing": failing,
        "checks": {name: c.to_dict() for name, c in checks.items()},
    }
