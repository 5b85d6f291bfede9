"""Warm a worker process: build its pipeline and read one small generated label.

Called in each Celery pool child right after fork (``worker_process_init``, wired in
``workers/celery.py``), never in the parent, which must not touch models or CUDA. Afterwards the
first photo of a shift is read as fast as the tenth: sessions, the exported extractor graph and
the lazily initialised kernels are all in place.
"""

from __future__ import annotations

import io
import logging
import os
import time

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
        "pipeline warm in pid %d: built in %.1fs, first read %.2fs (device %s)",
        os.getpid(),
        t1 - t0,
        t2 - t1,
        getattr(pipe, "device", "?"),
    )
    return t2 - t0
