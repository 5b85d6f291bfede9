"""Device, precision, wall-clock budget and parallel data generation for the trainers.

Training side only (never imported by the app). ``rec_train``, ``det_train`` and
``extractor/train`` share these so that one flag set means the same in each:

- ``--device auto|cpu|cuda[:N]`` (:func:`resolve_device`): ``auto`` = ``cuda`` when torch sees
  a GPU, else ``cpu``. The model, the batches and the loss live on that device.
- ``--amp auto|off|bf16`` (:func:`autocast`): ``auto`` = bf16 autocast on CUDA, fp32 on CPU (the
  CPU results stay what they were). Losses are always computed in float32.
- ``--max-minutes M`` (:class:`TimeBudget`): the run stops cleanly when the next step would not
  leave ``reserve`` seconds for the last validation / checkpoint; the learning-rate schedule
  decays over whichever comes first, ``--max-steps`` or the time budget
  (:func:`budget_progress`), so a time-limited run still ends at a low learning rate.
- ``--data-workers N`` (:func:`default_data_workers`): synthetic samples are generated on the
  CPU; on CUDA ``N`` worker processes (default ``min(12, cpus - 2)``) keep the GPU fed, on the
  CPU the default is 0 = today's single-process path (bit-for-bit the same CPU runs).

Worker processes are forked (``fork`` start method: the synthetic engine's module state and
the font registry are inherited, nothing is pickled but the produced batches). The trainers
start them before the model is moved to CUDA, so no child ever inherits a CUDA context.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any


# ---- device and precision --------------------------------------------------------------------
def resolve_device(name: str | None) -> Any:
    """``torch.device`` for ``auto`` / ``cpu`` / ``cuda`` / ``cuda:N``. ``cuda`` without a GPU
    raises (a GPU run must never silently fall back to the CPU)."""
    import torch

    name = (name or "auto").strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"--device {name}: use auto, cpu or cuda[:N]") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"--device {name}: torch sees no CUDA device")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RuntimeError(
                f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) visible"
            )
        # TF32 for the float32 matmuls left outside autocast (validation, the CTC/DB losses)
        torch.set_float32_matmul_precision("high")
    elif dev.type != "cpu":
        raise ValueError(f"--device {name}: use auto, cpu or cuda[:N]")
    return dev


def amp_dtype(device: Any, amp: str | None) -> Any:
    """The autocast dtype for ``amp`` (``auto``: bf16 on CUDA, None on CPU; ``off``: None;
    ``bf16``: bf16 on either, CPU autocast is for tests)."""
    import torch

    amp = (amp or "auto").lower()
    if amp == "off":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    raise ValueError(f"--amp {amp}: use auto, off or bf16")


def autocast(device: Any, dtype: Any) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` on ``device`` with ``dtype``, or a no-op when ``dtype`` is None."""
    import torch

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def device_info(device: Any) -> dict[str, Any]:
    """What ran the training (for the metrics JSON and the logs)."""
    import torch

    info: dict[str, Any] = {
        "device": str(device),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
    }
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(idx)
        info.update(
            gpu=props.name,
            gpu_mem_gib=round(props.total_memory / 2**30, 1),
            cuda=torch.version.cuda,
        )
    return info


def to_device(batch: Any, device: Any) -> Any:
    """Tensors of a (nested) dict / list / tuple moved to ``device`` (non-blocking on CUDA)."""
    import torch

    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=device.type == "cuda")
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


# ---- defaults that depend on the device ------------------------------------------------------
def add_device_args(
    parser: Any, *, workers_what: str, max_minutes_help: str = "stop in time (best checkpoint kept)"
) -> None:
    """The trainers' shared GPU-path options: ``--device``, ``--amp``, ``--max-minutes`` and
    ``--data-workers`` (``workers_what`` names what the worker processes make)."""
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    parser.add_argument("--amp", default="auto", help="auto (bf16 on CUDA) | off | bf16")
    parser.add_argument("--max-minutes", type=float, default=None, help=max_minutes_help)
    parser.add_argument(
        "--data-workers",
        type=int,
        default=None,
        help=f"{workers_what} (default 0 on CPU, min(12, cpus-2) on CUDA)",
    )


def default_data_workers(device: Any) -> int:
    """0 on the CPU (single process, reproducible), ``min(12, cpus - 2)`` on CUDA."""
    if device.type != "cuda":
        return 0
    return max(1, min(12, (os.cpu_count() or 4) - 2))


def pick(value: Any, device: Any, *, cpu: Any, cuda: Any) -> Any:
    """``value`` when given (not None), else the device's default."""
    if value is not None:
        return value
    return cuda if device.type == "cuda" else cpu


# ---- wall-clock budget -----------------------------------------------------------------------
class TimeBudget:
    """A training run's wall-clock budget of ``minutes`` (None: unlimited), counted from
    construction. ``reserve_s`` is kept free for what follows the last step (validation,
    checkpoint); the per-step estimate is the running mean of the recorded steps."""

    def __init__(self, minutes: float | None, reserve_s: float = 0.0) -> None:
        self.limit = None if minutes is None or minutes <= 0 else minutes * 60.0
        self.reserve = reserve_s
        self.start = time.monotonic()
        self.steps = 0
        self.step_s = 0.0
        self._train_start: float | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def begin_training(self) -> None:
        """Mark the end of set-up (data pool filled, first validation): the schedule's time
        fraction counts from here."""
        self._train_start = time.monotonic()

    def record_step(self, seconds: float) -> None:
        self.steps += 1
        self.step_s += (seconds - self.step_s) / self.steps

    def fraction(self) -> float:
        """Share of the training time (budget less set-up and reserve) used so far, in [0, 1];
        0 when unlimited."""
        if self.limit is None:
            return 0.0
        t0 = self._train_start if self._train_start is not None else self.start
        avail = self.limit - (t0 - self.start) - self.reserve
        if avail <= 0:
            return 1.0
        return min(1.0, (time.monotonic() - t0) / avail)

    def exhausted(self, extra_s: float = 0.0) -> bool:
        """True when one more step (+ ``extra_s``, e.g. a validation due after it) would eat
        into the reserve."""
        if self.limit is None:
            return False
        return self.elapsed() + self.step_s + extra_s + self.reserve >= self.limit


def budget_progress(step: int, warmup: int, total: int, budget: TimeBudget | None) -> float:
    """Progress of the decay phase in [0, 1]: by steps, or by the time budget when that is
    further along."""
    prog = min(1.0, max(0, step - warmup) / max(total - warmup, 1))
    if budget is not None:
        prog = max(prog, budget.fraction())
    return prog


def warmup_cosine_budget(
    opt: Any, warmup: int, total: int, budget: TimeBudget | None, min_ratio: float = 0.05
) -> Any:
    """``common.warmup_cosine`` whose decay also follows the time budget (a ``LambdaLR``
    stepped once per optimiser step). Without a budget it is ``common.warmup_cosine``."""
    import torch

    if budget is None or budget.limit is None:
        from workers.training.common import warmup_cosine

        return warmup_cosine(opt, warmup, total, min_ratio)

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(warmup, 1)
        prog = budget_progress(step, warmup, total, budget)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * prog))

    return torch.optim.lr_scheduler.LambdaLR(opt, f)


def warmup_linear_budget(opt: Any, warmup: int, total: int, budget: TimeBudget | None) -> Any:
    """``common.warmup_linear`` (decay to 0 at ``total``) that also follows the time budget
    (without one it is ``common.warmup_linear``)."""
    import torch

    if budget is None or budget.limit is None:
        from workers.training.common import warmup_linear

        return warmup_linear(opt, warmup, total)

    warm = max(1, warmup)

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, 1.0 - budget_progress(step, warm, total, budget))

    return torch.optim.lr_scheduler.LambdaLR(opt, f)


# ---- parallel data generation ----------------------------------------------------------------
def _limit_threads() -> None:
    """One compute thread per worker process (they run side by side on the CPU cores).

    OpenCV: ``setNumThreads(0)`` (no thread pool). ``setNumThreads(1)`` in a forked child
    whose parent had used OpenCV's pthreads pool deadlocks (seen here with torch + cv2 in the
    parent: the child hangs on a futex); 0 and leaving it alone do not."""
    import cv2

    cv2.setNumThreads(0)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


def _ctx() -> Any:
    return mp.get_context("fork")


_POOL_FN: Callable[[Any], Any] | None = None


def _call(item: Any) -> Any:
    assert _POOL_FN is not None
    return _POOL_FN(item)


def _init_pool() -> None:
    _limit_threads()


def parallel_map(fn: Callable[[Any], Any], items: Sequence[Any], workers: int) -> list[Any]:
    """``[fn(x) for x in items]``, in order, over ``workers`` forked processes (0 or 1: in
    this process). ``fn`` may be any callable (closures too: the children inherit it through
    the fork, only the items and the results are pickled); it must be deterministic per item
    for the result to equal the single-process one."""
    global _POOL_FN
    if workers <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    _POOL_FN = fn
    try:
        with _ctx().Pool(min(workers, len(items)), initializer=_init_pool) as pool:
            chunk = max(1, len(items) // (workers * 4))
            return pool.map(_call, list(items), chunksize=chunk)
    finally:
        _POOL_FN = None


def _producer(
    make: Callable[[int, int], Iterator[Any]], wid: int, n: int, q: Any, stop: Any
) -> None:
    _limit_threads()
    try:
        for item in make(wid, n):
            while not stop.is_set():
                try:
                    q.put((wid, item), timeout=0.5)
                    break
                except Exception:  # queue.Full
                    continue
            if stop.is_set():
                return
    except BaseException as exc:  # report instead of hanging the consumer
        import traceback

        q.put((wid, RuntimeError(f"data worker {wid}: {exc!r}\n{traceback.format_exc()}")))


class WorkerStream:
    """Items from ``n`` forked producer processes: worker ``w`` runs ``make(w, n)`` (an
    infinite generator; it must draw its own seeds, e.g. ``base + w + n * k``) and its items
    arrive through one queue of ``prefetch`` slots per worker. Iterating yields
    ``(worker_id, item)`` in arrival order. ``close()`` stops the workers (also on exit of a
    ``with`` block). A worker's exception is re-raised in the consumer."""

    def __init__(
        self, make: Callable[[int, int], Iterator[Any]], n: int, prefetch: int = 4
    ) -> None:
        if n < 1:
            raise ValueError("WorkerStream needs at least one worker")
        ctx = _ctx()
        self.n = n
        self.queue = ctx.Queue(maxsize=max(2, prefetch * n))
        self.stop = ctx.Event()
        self.procs = [
            ctx.Process(target=_producer, args=(make, w, n, self.queue, self.stop), daemon=True)
            for w in range(n)
        ]
        for p in self.procs:
            p.start()

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        return self

    def __next__(self) -> tuple[int, Any]:
        while True:
            try:
                wid, item = self.queue.get(timeout=5.0)
            except Exception:  # queue.Empty: check that the workers are alive
                dead = [p for p in self.procs if not p.is_alive()]
                if dead:
                    codes = ", ".join(f"{p.pid}: {p.exitcode}" for p in dead)
                    raise RuntimeError(f"data worker(s) exited ({codes})") from None
                continue
            if isinstance(item, BaseException):
                self.close()
                raise item
            return wid, item

    def close(self) -> None:
        """Stop the workers: they see the stop flag within 0.5 s; what they still flush is
        read and dropped (reading only whole messages while they live: a worker killed while
        writing leaves half a message, so the queue is not read after a terminate). Workers
        still alive after 5 s in all are terminated."""
        self.stop.set()
        deadline = time.monotonic() + 5.0
        while any(p.is_alive() for p in self.procs) and time.monotonic() < deadline:
            try:
                self.queue.get(timeout=0.1)
            except Exception:  # queue.Empty
                pass
        for p in self.procs:
            if p.is_alive():
                p.terminate()
            p.join(timeout=2)
        self.queue.cancel_join_thread()
        self.queue.close()

    def __enter__(self) -> WorkerStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def interleaved_seeds(base: int, wid: int, n: int, limit: int | None = None) -> Iterable[int]:
    """Seeds of data worker ``wid`` of ``n``: ``base + wid + n * k`` for k = 0, 1, ...
    (below ``limit`` when given)."""
    k = 0
    while True:
        s = base + wid + n * k
        if limit is not None and s >= limit:
            raise ValueError(f"training seeds exhausted at {s} (limit {limit})")
        yield s
        k += 1
