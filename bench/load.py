"""Load: N line clients each posting a photo and waiting for its read (``?wait=30``), at once.

    .venv/bin/python bench/load.py --clients 50 --duration 60          # fast pipeline (rules)
    .venv/bin/python bench/load.py --clients 50 --duration 300 --full  # the issue's target run
    .venv/bin/python bench/load.py --clients 50 --duration 60 --peer   # and the old server too

Starts the whole app stack as ``make run`` does (``bench/faults.py``'s ``Stack``: embedded
PostgreSQL and Redis, the web server, one Celery worker, the reaper) in a temporary var dir on
loopback. Each client, in its own thread (started one after the other over the first quarter
of ``--duration``, at most 15 s), loops: POST a generated label photo (station token,
its own Idempotency-Key, retried with the same key on a connection error or a 5xx) and then GET
``/api/v1/captures/{id}?wait=30`` until the read is DONE/FAILED; it starts no new upload after
``--duration`` s or once ``--count`` uploads were started. Then it waits (``--drain`` s at most)
for every accepted capture to finish and reconciles from PostgreSQL and the media folder: lost
(accepted, not final, or no row), duplicated (more than one read of a capture, or more than one
capture for one upload), sha256 mismatches (the stored file or the row's sha256 differ from the
bytes sent). Prints: clients, uploads, throughput, acknowledgement (POST answered) p50/p95/max,
answer (POST sent to final status received) p50/p95, the acknowledgement of the uploads sent
while at least 32 waits were open (the old server's thread count: the issue's condition), 5xx,
most waits open at once, and the reconciliation. ``--peer`` runs the same load against the old server (gunicorn gthread, where
each waiting request holds one of 2 x 16 threads) for comparison.

Bounded: at most 200 clients, 900 s of uploads and 2000 uploads; startup 180 s, each request
40 s, drain ``--drain`` s, stop 60 s; everything listens on 127.0.0.1 and is removed at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.faults import FINAL, Db, Stack, _stack_env  # noqa: E402

WAIT = 30
REQUEST_TIMEOUT = 40.0
MAX_CLIENTS, MAX_DURATION, MAX_COUNT = 200, 900.0, 2000
OLD_THREADS = 32  # the old server's request threads (gunicorn gthread, 2 x 16)


@dataclass
class Upload:
    ref: str
    key: str
    sha256: str
    sent: float = 0.0
    acked: float | None = None  # the POST answered 202
    answered: float | None = None  # a GET answered a final status
    capture_id: str | None = None
    status: str = ""
    waits_open_at_send: int = 0  # other clients' ?wait requests open when this POST was sent
    tries: int = 0
    errors: list[str] = field(default_factory=list)


class Counters:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.http_5xx = 0
        self.waits_open = 0
        self.waits_open_max = 0
        self.requests = 0

    def five_xx(self) -> None:
        with self.lock:
            self.http_5xx += 1

    def wait_started(self) -> None:
        with self.lock:
            self.waits_open += 1
            self.waits_open_max = max(self.waits_open_max, self.waits_open)

    def wait_ended(self) -> None:
        with self.lock:
            self.waits_open -= 1


def _post(session, url: str, token: str, image: bytes, up: Upload, counters: Counters) -> None:
    """POST like line software: the same Idempotency-Key on every retry (at most 60 s)."""
    import requests

    up.sent = time.monotonic()
    up.waits_open_at_send = counters.waits_open
    deadline = up.sent + 60
    delay = 0.2
    while time.monotonic() < deadline:
        up.tries += 1
        try:
            resp = session.post(
                f"{url}/api/v1/captures",
                headers={"Authorization": f"Token {token}", "Idempotency-Key": up.key},
                data={"product_type": "nameplate", "client_ref": up.ref},
                files={"image": (f"{up.ref}.jpg", image, "image/jpeg")},
                timeout=REQUEST_TIMEOUT,
            )
        except requests.RequestException as exc:
            up.errors.append(type(exc).__name__)
        else:
            if resp.status_code == 202:
                up.acked = time.monotonic()
                up.capture_id = resp.json()["id"]
                return
            if resp.status_code >= 500:
                counters.five_xx()
            up.errors.append(f"POST {resp.status_code} {resp.text[:120]}")
            if resp.status_code < 500:
                return  # a client error: retrying cannot help
        time.sleep(delay)
        delay = min(2.0, delay * 2)


def _wait(session, url: str, token: str, up: Upload, counters: Counters, until: float) -> None:
    """GET ?wait=30 until the capture is final (or ``until``)."""
    import requests

    while time.monotonic() < until:
        counters.wait_started()
        try:
            resp = session.get(
                f"{url}/api/v1/captures/{up.capture_id}?wait={WAIT}",
                headers={"Authorization": f"Token {token}"},
                timeout=REQUEST_TIMEOUT,
            )
        except requests.RequestException as exc:
            up.errors.append(f"GET {type(exc).__name__}")
            time.sleep(0.2)
            continue
        finally:
            counters.wait_ended()
        if resp.status_code >= 500:
            counters.five_xx()
            up.errors.append(f"GET {resp.status_code}")
            time.sleep(0.2)
            continue
        if resp.status_code != 200:
            up.errors.append(f"GET {resp.status_code} {resp.text[:120]}")
            return
        up.status = resp.json()["status"]
        if up.status in FINAL:
            up.answered = time.monotonic()
            return


@dataclass
class LoadReport:
    server: str
    clients: int
    seconds: float = 0.0  # from the first upload to the last answer
    uploads: list[Upload] = field(default_factory=list)
    http_5xx: int = 0
    waits_open_max: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    sha_mismatch: list[str] = field(default_factory=list)
    done: int = 0
    failed: int = 0
    not_accepted: int = 0
    stop_seconds: float | None = None
    leftovers: list[str] = field(default_factory=list)
    log_tail: str = ""

    @property
    def accepted(self) -> list[Upload]:
        return [u for u in self.uploads if u.capture_id]

    def _pcts(self, values: list[float]) -> tuple[float | None, float | None, float | None]:
        if not values:
            return None, None, None
        values = sorted(values)
        p95 = values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]
        return statistics.median(values), p95, values[-1]

    def ack(self, min_waits: int = 0):
        return self._pcts(
            [
                u.acked - u.sent
                for u in self.uploads
                if u.acked and u.waits_open_at_send >= min_waits
            ]
        )

    def busy(self) -> list[Upload]:
        """Uploads sent while at least OLD_THREADS waits were open (the issue's condition)."""
        return [u for u in self.uploads if u.waits_open_at_send >= OLD_THREADS]

    def answer(self):
        return self._pcts([u.answered - u.sent for u in self.uploads if u.answered])

    def row(self) -> str:
        def ms(v):
            return "-" if v is None else f"{v * 1000:.0f}"

        def s(v):
            return "-" if v is None else f"{v:.1f}"

        a50, a95, amax = self.ack()
        _, b95, bmax = self.ack(OLD_THREADS)
        r50, r95, _ = self.answer()
        rate = len(self.accepted) / self.seconds if self.seconds else 0.0
        return (
            f"| {self.server} | {self.clients} | {len(self.uploads)} | {len(self.accepted)} |"
            f" {rate:.2f} | {ms(a50)} / {ms(a95)} / {ms(amax)} |"
            f" {len(self.busy())}: {ms(b95)} / {ms(bmax)} | {s(r50)} / {s(r95)} |"
            f" {self.http_5xx} | {self.waits_open_max} | {len(self.lost)} |"
            f" {len(self.duplicated)} | {len(self.sha_mismatch)} | {self.done} / {self.failed} |"
            f" {s(self.stop_seconds)} |"
        )


HEADER = (
    "| server | clients | uploads | accepted | throughput (reads/s) |"
    " ack p50 / p95 / max (ms) | uploads sent with >= 32 waits open: ack p95 / max (ms) |"
    " answer p50 / p95 (s) | 5xx | waits open at once (max) |"
    " lost | duplicated | sha256 mismatch | done / failed | stop (s) |\n"
    "|---|---:|---:|---:|---:|---|---|---|---:|---:|---:|---:|---:|---|---:|"
)


def run_load(
    *,
    clients: int = 50,
    duration: float = 60.0,
    count: int | None = None,
    drain: float = 180.0,
    fast: bool = True,
    server: str = "uvicorn",
    concurrency: int = 1,
    var_dir: Path | None = None,
    keep: bool = False,
    progress=print,
) -> LoadReport:
    """Run the load (see the module docstring); returns the reconciled report."""
    import requests

    from workers.training.synth.simple_labels import label_set

    clients = max(1, min(clients, MAX_CLIENTS))
    duration = max(1.0, min(duration, MAX_DURATION))
    count = min(count or MAX_COUNT, MAX_COUNT)
    own_dir = var_dir is None
    var_dir = Path(var_dir or tempfile.mkdtemp(prefix="load-"))
    var_dir.mkdir(parents=True, exist_ok=True)
    cache = ROOT / "var" / "cache"
    if not fast and cache.is_dir() and not (var_dir / "cache").exists():
        shutil.copytree(cache, var_dir / "cache")  # the exported extractor graph: no re-export
    photos = [b for b, _ in label_set(16, seed=23)]
    env = _stack_env(var_dir, fast, {"WEB_SERVER": server})
    stack = Stack(var_dir, concurrency=concurrency, env=env)
    report = LoadReport(server=server, clients=clients)
    counters = Counters()
    run_id = uuid.uuid4().hex[:8]
    lock = threading.Lock()
    db: Db | None = None
    try:
        progress(f"[{server}] starting the stack in {var_dir} ...")
        stack.start()
        progress(f"[{server}] stack up at {stack.url}; {clients} clients for {duration:.0f}s")
        db = Db(stack.state()["env"]["DATABASE_URL"])
        t0 = time.monotonic()
        stop_at = t0 + duration
        hard_stop = stop_at + drain

        def next_upload() -> tuple[Upload, bytes] | None:
            with lock:
                n = len(report.uploads)
                if n >= count or time.monotonic() >= stop_at:
                    return None
                image = photos[n % len(photos)]
                up = Upload(
                    ref=f"load-{run_id}-{n:05d}",
                    key=f"load-{run_id}-{n}",
                    sha256=hashlib.sha256(image).hexdigest(),
                )
                report.uploads.append(up)
            return up, image

        ramp = min(15.0, duration / 4)  # clients start one after the other, not in one burst

        def client(i: int) -> None:
            time.sleep(i * ramp / clients)
            with requests.Session() as session:
                while (item := next_upload()) is not None:
                    up, image = item
                    _post(session, stack.url, stack.token, image, up, counters)
                    if up.capture_id:
                        _wait(session, stack.url, stack.token, up, counters, hard_stop)

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(0.0, hard_stop - time.monotonic()) + REQUEST_TIMEOUT + 5)
        answered = [u.answered for u in report.uploads if u.answered]
        report.seconds = (max(answered) if answered else time.monotonic()) - t0
        ids = [u.capture_id for u in report.accepted]
        deadline = time.monotonic() + 30  # what a client gave up on may still finish
        while time.monotonic() < deadline:
            if all(c["status"] in FINAL for c in db.captures(ids).values()):
                break
            time.sleep(0.5)
        _reconcile(report, db, var_dir, run_id)
        report.http_5xx = counters.http_5xx
        report.waits_open_max = counters.waits_open_max
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


def _reconcile(report: LoadReport, db: Db, var_dir: Path, run_id: str) -> None:
    """Every accepted upload: one capture, final, with exactly one read, whose stored image
    (under the stack's MEDIA_ROOT, var_dir/media) and row sha256 match the bytes sent."""
    accepted = report.accepted
    ids = [u.capture_id for u in accepted]
    rows = db.captures(ids)
    files = dict(
        (r[0], (r[1], r[2]))
        for r in db.query(
            "SELECT id::text, sha256, image FROM ocrapp_capture WHERE id::text = ANY(%s)", [ids]
        )
    )
    report.not_accepted = len(report.uploads) - len(accepted)
    for up in accepted:
        c = rows.get(up.capture_id)
        if c is None or c["status"] not in FINAL:
            report.lost.append(up.capture_id)
            continue
        report.done += c["status"] == "DONE"
        report.failed += c["status"] == "FAILED"
        if c["reads"] > 1 or (c["status"] == "DONE" and c["reads"] != 1):
            report.duplicated.append(up.capture_id)
        sha, name = files[up.capture_id]
        path = var_dir / "media" / name
        stored = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        if sha != up.sha256 or stored != up.sha256:
            report.sha_mismatch.append(up.capture_id)
    per_ref = db.captures_per_ref(f"load-{run_id}-")
    report.duplicated += [ref for ref, n in per_ref.items() if n > 1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60.0, help="s of uploads (<= 900)")
    parser.add_argument("--count", type=int, default=None, help="at most this many uploads")
    parser.add_argument("--drain", type=float, default=180.0, help="s to wait for the reads")
    parser.add_argument("--concurrency", type=int, default=1, help="OCR worker processes")
    parser.add_argument("--full", action="store_true", help="the transformer field extractor")
    parser.add_argument("--peer", action="store_true", help="also run the old gunicorn server")
    parser.add_argument("--keep", action="store_true", help="keep the temporary var dirs")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= MAX_CLIENTS:
        parser.error(f"--clients must be between 1 and {MAX_CLIENTS}")
    reports = []
    for server in ("uvicorn", "gunicorn") if args.peer else ("uvicorn",):
        reports.append(
            run_load(
                clients=args.clients,
                duration=args.duration,
                count=args.count,
                drain=min(max(10.0, args.drain), 900.0),
                fast=not args.full,
                server=server,
                concurrency=args.concurrency,
                keep=args.keep,
            )
        )
    print()
    print(HEADER)
    for r in reports:
        print(r.row())
    bad = [r for r in reports if r.server == "uvicorn"]
    bad = [r for r in bad if r.lost or r.duplicated or r.sha_mismatch or r.http_5xx]
    for r in bad:
        print(f"\n[{r.server}] lost {r.lost} duplicated {r.duplicated} sha {r.sha_mismatch}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
