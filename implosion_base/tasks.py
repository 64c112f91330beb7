"""Independent tasks run in this process, in local worker processes or on a Dask cluster — resumably.

A long pass over data too large for memory (the dataset audit's blocks of rows) is a list of tasks, each a
picklable call ``fn(*args)`` returning a dict of arrays. :func:`run_tasks` runs them

- here, one after another (``workers`` 0 or 1, no ``dask``);
- in ``workers`` local processes (:func:`process_pool`, the one process pool of the toolkit; nothing passed but the
  arguments);
- on a Dask cluster (``dask`` = a scheduler address, ``tcp://host:8786``; the workers must have this toolkit
  installed and read the same paths; ``pip install .[dask]``),
- on Ray (``ray`` = "local" for an instance on this machine, "auto" or ``ray://host:10001`` for a cluster;
  ``pip install .[ray]``),

and hands each result to the caller as it arrives, in whatever order. With a :class:`TaskRecord`, every finished
task's result is saved at once (one ``.npz`` per task, written atomically), and a rerun after a kill loads those
instead of running them again. Results cross process boundaries as the executor's own messages between this
toolkit's processes; nothing read from a user's file is ever unpickled.

The caller makes the results independent of where they ran (the tasks are pure functions of their arguments), so
every mode gives the same numbers.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from implosion_base.validate import check_scalar, usable_cores
from implosion_base.errors import InputError
from implosion_base.files import atomic_write_text, save_npz_atomically
from implosion_base.records import key_difference

__all__ = ["Task", "TaskRecord", "run_tasks", "dask_client", "dask_results"]


@dataclass(frozen=True)
class Task:
    """One call ``fn(*args)`` named ``key`` (a file-name-safe string unique within a run)."""

    key: str
    fn: Callable[..., dict[str, np.ndarray]]
    args: tuple


class TaskRecord:
    """A folder recording finished tasks of one computation, identified by ``identity`` (a JSON-able dict: what the
    results depend on). Opening a folder that records another computation is an InputError naming the difference;
    the caller removes the folder once the computation's own output is written."""

    #: The file naming the computation a record folder holds (its presence marks the folder as a record).
    HEAD = "identity.json"

    def __init__(self, folder: Path, identity: dict[str, Any]):
        self.folder = Path(folder)
        self.identity = json.loads(json.dumps(identity, default=str))
        head = self.folder / self.HEAD
        if head.is_file():
            try:
                old = json.loads(head.read_text(encoding="utf-8"))
                if not isinstance(old, dict):
                    raise ValueError(f"a JSON {type(old).__name__}, not an object")
            except (OSError, ValueError, RecursionError) as exc:
                raise InputError(f"{head}: unreadable record of finished tasks ({exc}); remove {self.folder}") from None
            if old != self.identity:
                raise InputError(f"{self.folder} records tasks of another computation (differs in: "
                                 f"{key_difference(old, self.identity)}); remove it or choose another output folder")
        else:
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(head, json.dumps(self.identity, indent=1, sort_keys=True) + "\n")

    def read_note(self, name: str) -> Any:
        """The JSON value noted under ``name`` (e.g. how the work was cut into tasks), or None."""
        path = self.folder / f"{name}.json"
        try:
            return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
        except (OSError, ValueError, RecursionError) as exc:
            raise InputError(f"{path}: unreadable ({exc}); remove {self.folder}") from None

    def write_note(self, name: str, value: Any) -> None:
        atomic_write_text(self.folder / f"{name}.json", json.dumps(value) + "\n")

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.npz"

    def done(self) -> set[str]:
        """Keys of the tasks whose results are recorded."""
        return {p.stem for p in self.folder.glob("*.npz")}

    def load(self, key: str) -> dict[str, np.ndarray]:
        with np.load(self.path(key), allow_pickle=False) as data:
            return {k: data[k] for k in data.files}

    def save(self, key: str, result: dict[str, np.ndarray]) -> None:
        save_npz_atomically(self.path(key), **result)


def _local(tasks: Sequence[Task]) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    for t in tasks:
        yield t.key, t.fn(*t.args)


def _worker_start(initializer: Callable[..., None] | None, initargs: tuple, blas_threads: int = 0) -> None:
    """Every pool worker's start: ignore Ctrl-C (the parent handles it), on Linux die with the parent (a parent
    killed with SIGKILL leaves no orphan computing for nobody), share the cores with the other workers (BLAS limited
    to ``blas_threads``: the workers' threads together never outnumber the cores); then the caller's
    ``initializer``."""
    import signal
    import sys

    if blas_threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(blas_threads)  # holds for the worker's life (nothing restores it)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass
    if initializer is not None:
        initializer(*initargs)


def pool_queue():
    """A queue worker processes of :func:`process_pool` can send through (give it to them in ``initargs``)."""
    import multiprocessing

    return multiprocessing.get_context().Queue()


@contextmanager
def process_pool(workers: int, *, initializer: Callable[..., None] | None = None,
                 initargs: tuple = (), blas_threads: int = 0) -> Iterator[Any]:
    """``workers`` local worker processes (the platform's start method: a fork on Linux, so a worker computes with
    its parent's numerical settings and gives its numbers bit for bit) — the toolkit's one process pool (the
    sweep's seeds, the phase diagram's cells, the audit's blocks). One shutdown rule: when the
    block ends normally the workers finish and are joined; on any exception (Ctrl-C included) what has not
    started is cancelled and the workers are terminated, so none is ever orphaned. Workers ignore Ctrl-C and die
    with the parent (:func:`_worker_start`)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(),
                               initializer=_worker_start, initargs=(initializer, initargs, blas_threads))
    try:
        yield pool
    except BaseException:
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def _processes(tasks: Sequence[Task], workers: int) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    from concurrent.futures import as_completed

    # the workers share the cores: their BLAS threads together never outnumber them (block tasks give the same
    # numbers with any thread count; the sweep's and the phase grid's pools keep the parent's, for bit-identity)
    with process_pool(workers, blas_threads=max(1, usable_cores() // workers)) as pool:
        futures = {pool.submit(t.fn, *t.args): t.key for t in tasks}
        for f in as_completed(futures):
            yield futures[f], f.result()


def dask_client(address: str):
    """A ``distributed.Client`` connected to the Dask scheduler at ``address``, waiting as long as Dask's own
    connect timeout says (``distributed.comm.timeouts.connect``; environment ``DASK_DISTRIBUTED__COMM__TIMEOUTS__
    CONNECT``, 30 s by default); a missing package or an unreachable scheduler is an InputError saying which."""
    try:
        import dask
        from distributed import Client
    except ImportError:
        raise InputError("--dask needs the distributed package: pip install 'dask[distributed]' "
                         "(or this toolkit's [dask] extra)") from None
    try:
        return Client(address, timeout=dask.config.get("distributed.comm.timeouts.connect"))
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        raise InputError(f"--dask {address}: cannot reach a Dask scheduler there ({type(exc).__name__}: {exc})") \
            from None


def dask_results(client, futures: Sequence) -> Iterator:
    """The futures of ``client`` as they finish (``distributed.as_completed`` on the client's own loop)."""
    from distributed import as_completed

    return as_completed(list(futures), loop=client.loop)


def _dask(tasks: Sequence[Task], address: str) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    client = dask_client(address)
    try:
        futures = {client.submit(t.fn, *t.args, key=f"{t.key}-{id(tasks)}", pure=False): t.key for t in tasks}
        for f in dask_results(client, futures):
            yield futures[f], f.result()
    finally:
        client.close()


def _ray(tasks: Sequence[Task], address: str) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """The tasks on Ray: ``address`` "local" starts a Ray instance on this machine (loopback only, no dashboard, no
    usage statistics) for the run; "auto" or ``ray://host:10001`` joins a running cluster, whose workers need this
    toolkit installed and the shard paths readable. Results arrive as they finish; what has not run is cancelled
    when the run stops."""
    import os

    try:
        import ray
    except ImportError:
        raise InputError("--ray needs Ray: pip install 'implosion-toolkit[ray]'") from None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=None if address == "local" else address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False, **({"_node_ip_address": "127.0.0.1"} if address == "local" else {}))
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise InputError(f"--ray {address}: cannot start or reach Ray ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    call = ray.remote(_call)
    refs = {call.remote(t.fn, t.args): t.key for t in tasks}
    pending = list(refs)
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            yield refs[ready[0]], ray.get(ready[0])
    finally:
        for ref in pending:
            ray.cancel(ref)
        if started:
            ray.shutdown()


def _call(fn: Callable[..., dict[str, np.ndarray]], args: tuple) -> dict[str, np.ndarray]:
    """A task's call where it runs (the remote function Ray ships)."""
    return fn(*args)


#: The engines a pass over the data can run on besides this machine's processes: name -> adapter.
ENGINES: dict[str, Callable[[Sequence[Task], str], Iterator[tuple[str, dict[str, np.ndarray]]]]] = {
    "dask": _dask, "ray": _ray}


def run_tasks(tasks: Sequence[Task], *, workers: int = 0, dask: str | None = None, ray: str | None = None,
              record: TaskRecord | None = None,
              on_result: Callable[[str, dict[str, np.ndarray], bool], None] | None = None) -> dict[str, dict]:
    """Every task's result by key. Recorded results are loaded, not rerun; the others run here (``workers`` ≤ 1),
    in ``workers`` local processes (the default), on the Dask scheduler at ``dask`` or on Ray at ``ray``
    (:data:`ENGINES`), and each is recorded the moment it arrives. ``on_result(key, result, was_recorded)`` is
    called once per task (progress, memory accounting). A task's error stops the run with the results so far kept
    in the record."""
    check_scalar(workers, "--workers", low=0, integer=True)
    keys = [t.key for t in tasks]
    if len(set(keys)) != len(keys):
        raise ValueError("task keys must be unique")
    out: dict[str, dict] = {}
    done = record.done() if record is not None else set()
    for key in keys:
        if key in done:
            out[key] = record.load(key)
            if on_result:
                on_result(key, out[key], True)
    todo = [t for t in tasks if t.key not in out]
    if not todo:
        return out
    if dask and ray:
        raise InputError("give --dask or --ray, not both")
    engine = ("dask", dask) if dask else ("ray", ray) if ray else None
    stream = (ENGINES[engine[0]](todo, engine[1]) if engine else _processes(todo, workers)
              if workers > 1 and len(todo) > 1 else _local(todo))
    for key, result in stream:
        if record is not None:
            record.save(key, result)
        out[key] = result
        if on_result:
            on_result(key, result, False)
    return out
