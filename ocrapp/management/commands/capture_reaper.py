"""``manage.py capture_reaper``: every ``OCR_REAP_INTERVAL`` s, send again the captures whose
queue message was lost and quarantine those that exhausted their attempts
(``services.capture_reap``), and send again the webhook deliveries whose message was lost
(``webhooks.webhook_reap``). ``--once``: one pass, then exit (a manual repair).
``--heartbeat FILE``: touch ``FILE`` at start and after every pass, for the container
healthcheck (``python -m ocrapp.healthcheck reaper --heartbeat FILE``).

A process of its own, supervised beside the web and the worker by ``python -m ocrapp.devstack
run`` (and a service in docker-compose.yml): it must keep working when the worker is the thing
that failed, it touches only PostgreSQL and the broker, and it never forks a model process.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections
from django.db.utils import InterfaceError, OperationalError

from ocrapp import services, webhooks

log = logging.getLogger("ocrapp.reaper")


class Command(BaseCommand):
    help = "Resend captures whose queue message was lost; quarantine exhausted ones."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="one pass, then exit")
        parser.add_argument(
            "--interval",
            type=float,
            default=None,
            help="seconds between passes (default OCR_REAP_INTERVAL)",
        )
        parser.add_argument(
            "--heartbeat",
            type=Path,
            default=None,
            help="file touched at start and after every pass (container healthcheck)",
        )

    def handle(self, *args, **options):
        interval = options["interval"] or float(settings.OCR_REAP_INTERVAL)
        if options["once"]:
            report = services.capture_reap()
            resent = webhooks.webhook_reap()
            self.stdout.write(_describe(report) if report else "nothing to reap")
            if resent:
                self.stdout.write(f"webhook deliveries sent again: {len(resent)}")
            return
        stop = threading.Event()

        def _on_signal(signum, frame):  # noqa: ARG001
            stop.set()

        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
        log.info(
            "capture reaper: every %.0fs; PENDING after %ss, lease %ss, %s attempts",
            interval,
            settings.OCR_REAP_PENDING_AFTER,
            settings.OCR_LEASE_SECONDS,
            settings.OCR_MAX_ATTEMPTS,
        )
        beat = options["heartbeat"]
        _touch(beat)
        while not stop.wait(interval):
            _touch(beat)  # the loop is alive, whatever this pass finds
            close_old_connections()  # a PostgreSQL restart since the last pass: reconnect
            try:
                report = services.capture_reap()
            except (OperationalError, InterfaceError) as exc:
                log.warning("reaper pass skipped, database unavailable: %s", exc)
                continue
            except Exception:
                log.exception("reaper pass failed")
                continue
            if report:
                log.warning("reaper: %s", _describe(report))
            try:
                webhooks.webhook_reap()  # logs what it sent again
            except (OperationalError, InterfaceError) as exc:
                log.warning("webhook reap skipped, database unavailable: %s", exc)
            except Exception:
                log.exception("webhook reap failed")
        log.info("capture reaper stopped")


def _touch(path: Path | None) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    except OSError as exc:
        log.warning("reaper heartbeat %s not written: %s", path, exc)


def _describe(report: services.ReapReport) -> str:
    parts = []
    for label, ids in (
        ("resent (message lost)", report.resent_pending),
        ("resent (lease expired)", report.resent_expired),
        ("quarantined", report.quarantined),
        ("not sent (queue unavailable)", report.not_sent),
    ):
        if ids:
            parts.append(f"{label}: {len(ids)} [{', '.join(i[:8] for i in ids[:10])}]")
    return "; ".join(parts)
