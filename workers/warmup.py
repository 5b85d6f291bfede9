"""Warm a worker process: build its pipeline and read one small generated label.

Called in each Celery pool child right after fork (``worker_process_init``, wired in
``workers/celery.py``), never in the parent, which must not touch models or CUDA. Afterwards the
first photo of a shift is read as fast as the tenth: sessions, the exported extractor graph and
the lazily initialised kernels are all in place.

A warmed process leaves a marker, ``$APP_VAR_DIR/run/warm/<pid>.json`` (device, the providers its
sessions really got, seconds), which the container healthcheck (``python -m ocrapp.healthcheck
worker``) matches against the worker's live pool processes: a worker whose models did not load
is not healthy.
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# A schema with a traced field, so the field extractor and the validation run too.
WARMUP_SCHEMA = {"fields": [{"name": "serial_number", "required": True}]}
LAST_ERROR = ""  # why this process's last warm-up failed (its heartbeat reports it)


def warmup_image() -> bytes:
    """A 480x160 PNG: a light label with one dark line of text (Pillow's built-in font)."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", (480, 160), (236, 236, 230))
    draw = ImageDraw.Draw(img)
    draw.rectangle([6, 6, 473, 153], outline=(60, 60, 60), width=3)
    draw.text((24, 52), "S/N: WU20260001", fill=(20, 20, 20), font=ImageFont.load_default(size=40))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def warm_up() -> float:
    """Build this process's pipeline (``loader.get_pipeline``) and run one read; returns the
    seconds it took. Never raises: a worker that cannot warm up still starts and reports the
    error on its first real capture."""
    global LAST_ERROR
    t0 = time.perf_counter()
    try:
        from workers.pipeline.loader import get_pipeline

        pipe = get_pipeline()
        t1 = time.perf_counter()
        pipe.run(warmup_image(), schema=WARMUP_SCHEMA)
    except Exception as exc:
        LAST_ERROR = f"{type(exc).__name__}: {exc}"[:500]
        log.exception("warm-up failed in pid %d; models load on the first capture", os.getpid())
        return time.perf_counter() - t0
    t2 = time.perf_counter()
    log.info(
        "pipeline warm in pid %d: built in %.1fs, first read %.2fs (device %s, providers %s)",
        os.getpid(),
        t1 - t0,
        t2 - t1,
        getattr(pipe, "device", "?"),
        list(getattr(pipe, "providers", ())),
    )
    try:
        write_warm_marker(
            device=str(getattr(pipe, "device", "?")),
            providers=list(getattr(pipe, "providers", ())),
            seconds=t2 - t0,
        )
    except OSError:
        log.exception("could not write the warm-up marker in %s", warm_dir())
    return t2 - t0


def warm_dir() -> Path:
    """``$APP_VAR_DIR/run/warm`` (``APP_VAR_DIR`` defaults to ``var/`` in the repository root, as
    in ``ocrapp/settings.py``)."""
    var = os.environ.get("APP_VAR_DIR") or Path(__file__).resolve().parent.parent / "var"
    return Path(var) / "run" / "warm"


def process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (``/proc/<pid>/stat`` field 22, clock ticks since
    boot), so that a marker left by a dead process is never taken for a reused pid; None when
    no such process runs."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # fields after "(comm)" start at field 3


def write_warm_marker(*, device: str, providers: list[str], seconds: float) -> Path:
    """Record that this process is warm (atomically), and drop markers of dead processes."""
    folder = warm_dir()
    folder.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    marker = folder / f"{pid}.json"
    tmp = folder / f".{pid}.tmp"
    tmp.write_text(
        json.dumps(
            {
                "pid": pid,
                "start": process_start(pid),
                "device": device,
                "providers": providers,
                "seconds": round(seconds, 3),
                "at": time.time(),
            }
        )
    )
    os.replace(tmp, marker)
    for other in folder.glob("*.json"):
        if other != marker and read_warm_marker(int(other.stem)) is None:
            other.unlink(missing_ok=True)
    return marker


def read_warm_marker(pid: int) -> dict[str, Any] | None:
    """The marker of ``pid`` if that very process (same start time) is alive, else None."""
    try:
        data = json.loads((warm_dir() / f"{pid}.json").read_text())
    except (OSError, ValueError):
        return None
    if data.get("start") is None or data.get("start") != process_start(pid):
        return None
    return data
