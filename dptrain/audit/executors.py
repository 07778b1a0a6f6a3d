"""Where the audit's K models train: a local process pool, Ray, or SLURM through submitit.

The models are independent jobs with a shared read-only payload (the audit pool and the recipe),
so one small interface covers every engine: `ModelExecutor.map_unordered(function, items,
shared=...)` calls ``function(item, shared)`` once per item and yields ``(position, result)`` as
each job finishes, which lets the caller save every model the moment it exists. The payload is
shipped once, the engine's own way (a fork-inherited worker initialiser, ``ray.put``, one pickle in
submitit's folder), never once per model. Distribution itself is the engine's: nothing here
schedules, retries or moves data between machines.

A job's result depends only on its item and the payload (each model's seed is fixed by its
index), so every engine returns the same numbers; the functions shipped must be module-level
(picklable by reference) and must set their own thread count.

Engines are chosen by name through `EXECUTORS` (``audit.executor=local|ray|submitit``); Ray and
submitit are optional extras, imported only when chosen.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import os
import pickle
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from dptrain.errors import ConfigError

if TYPE_CHECKING:
    from dptrain.audit.config import AuditConfig

log = logging.getLogger(__name__)

# fork starts a worker in milliseconds with the payload already in memory, and torch resets its
# intra-op thread pool in a forked child; where fork is unavailable (Windows) or not the platform
# default (macOS, where it is unsafe with system frameworks), spawn re-imports (~seconds a worker).
# CUDA cannot be re-initialised in a forked child, so GPU recipes always spawn.
DEFAULT_START_METHOD = "fork" if sys.platform.startswith("linux") else "spawn"


class ModelExecutor(Protocol):
    """Runs independent jobs that share one read-only payload; a context manager.

    Entering starts (or connects to) the engine, leaving releases what entering started.
    """

    def __enter__(self) -> ModelExecutor:
        """Starts or connects to the engine."""

    def __exit__(self, *exc_info: object) -> None:
        """Releases what `__enter__` started."""

    def map_unordered(
        self, function: Callable[[Any, Any], Any], items: Sequence[Any], *, shared: Any
    ) -> Iterator[tuple[int, Any]]:
        """Yields ``(position in items, function(item, shared))`` as each job finishes."""


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, not the host's core count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass
class LocalExecutor:
    """Worker processes on this machine (`concurrent.futures`), or this process for one worker.

    Attributes:
        workers: Worker processes; 0 means one per available core, 1 runs in this process.
        start_method: ``fork`` or ``spawn`` (`DEFAULT_START_METHOD`; ``spawn`` for CUDA).
    """

    name: ClassVar[str] = "local"
    workers: int = 0
    start_method: str = DEFAULT_START_METHOD

    @classmethod
    def from_audit(cls, audit: AuditConfig, *, run_dir: Path | None, gpu: bool) -> LocalExecutor:
        """The pool ``audit.workers`` asks for."""
        return cls(workers=audit.workers, start_method="spawn" if gpu else DEFAULT_START_METHOD)

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def map_unordered(
        self, function: Callable[[Any, Any], Any], items: Sequence[Any], *, shared: Any
    ) -> Iterator[tuple[int, Any]]:
        """Runs the jobs in a process pool, yielding each result as it finishes."""
        workers = min(self.workers or available_cores(), len(items))
        if workers <= 1:
            for position, item in enumerate(items):
                yield position, function(item, shared)
            return
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context(self.start_method),
            initializer=_receive_shared,
            initargs=(shared,),
        ) as pool:
            pending = {
                pool.submit(_call_with_received, function, item): position
                for position, item in enumerate(items)
            }
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield pending.pop(future), future.result()


_received: dict[str, Any] = {}


def _receive_shared(shared: Any) -> None:
    """Worker initialiser: the payload arrives once per worker, not once per job."""
    _received["shared"] = shared


def _call_with_received(function: Callable[[Any, Any], Any], item: Any) -> Any:
    return function(item, _received["shared"])


@dataclass
class RayExecutor:
    """Ray tasks, one per job, on a local Ray started here or on an existing cluster.

    Attributes:
        address: Cluster to join (``auto``, ``ray://head:10001``); empty starts a local Ray, or
            uses the one this process has already started.
        num_cpus: CPUs of a local Ray started here; 0 lets Ray use every core.
        cpus_per_task: CPUs Ray reserves for each job.
        gpus_per_task: GPUs Ray reserves for each job (1 for CUDA recipes, else 0).
    """

    name: ClassVar[str] = "ray"
    address: str = ""
    num_cpus: int = 0
    cpus_per_task: float = 1.0
    gpus_per_task: float = 0.0
    _started: bool = field(default=False, init=False, repr=False)

    @classmethod
    def from_audit(cls, audit: AuditConfig, *, run_dir: Path | None, gpu: bool) -> RayExecutor:
        """Ray at ``audit.ray_address``, or a local Ray with ``audit.workers`` CPUs."""
        return cls(address=audit.ray_address, num_cpus=audit.workers, gpus_per_task=float(gpu))

    def __enter__(self) -> RayExecutor:
        ray = _import_extra("ray", extra="ray", executor=self.name)
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if self.address:
                options["address"] = self.address
            elif self.num_cpus:
                options["num_cpus"] = self.num_cpus
            ray.init(**options)
            self._started = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._started:
            importlib.import_module("ray").shutdown()
            self._started = False

    def map_unordered(
        self, function: Callable[[Any, Any], Any], items: Sequence[Any], *, shared: Any
    ) -> Iterator[tuple[int, Any]]:
        """Submits one Ray task per job; the payload is put in Ray's object store once."""
        ray = _import_extra("ray", extra="ray", executor=self.name)
        remote = ray.remote(num_cpus=self.cpus_per_task, num_gpus=self.gpus_per_task)(_call)
        shared_ref = ray.put(shared)  # a top-level ObjectRef argument arrives dereferenced
        pending = {
            remote.remote(function, item, shared_ref): position
            for position, item in enumerate(items)
        }
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    yield pending.pop(ref), ray.get(ref)
        finally:
            for ref in pending:  # an abandoned or failed map leaves no work behind
                ray.cancel(ref)


def _call(function: Callable[[Any, Any], Any], item: Any, shared: Any) -> Any:
    return function(item, shared)


@dataclass
class SubmititExecutor:
    """SLURM jobs through submitit (or its local executor, which runs them as subprocesses).

    Each model is one job of one array; the payload is pickled once into ``folder`` (which must be
    on a file system the nodes share, as submitit's own folder must) and read by every job.

    Attributes:
        folder: submitit's folder for job pickles, logs and results.
        cluster: ``slurm``, ``local`` or ``debug``; empty lets submitit detect SLURM.
        partition: SLURM partition (empty: the cluster's default).
        time_minutes: Time limit of each job.
        cpus_per_task: CPUs of each job.
        max_parallel: Jobs of the array running at once (0: no limit).
        options: Further submitit parameters, passed through (e.g. ``slurm_mem``).
        poll_seconds: How often finished jobs are looked for.
    """

    name: ClassVar[str] = "submitit"
    folder: Path
    cluster: str = ""
    partition: str = ""
    time_minutes: int = 60
    cpus_per_task: int = 1
    max_parallel: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    poll_seconds: float = 10.0

    @classmethod
    def from_audit(cls, audit: AuditConfig, *, run_dir: Path | None, gpu: bool) -> SubmititExecutor:
        """The ``audit.submitit_*`` and ``audit.slurm_*`` settings.

        The folder defaults to ``<run dir>/submitit`` (a temporary folder without a run dir).
        """
        if audit.submitit_folder:
            folder = Path(audit.submitit_folder)
        elif run_dir is not None:
            folder = Path(run_dir) / "submitit"
        else:
            folder = Path(tempfile.mkdtemp(prefix="dptrain-submitit-"))
        options = dict(audit.slurm_options)
        if gpu:
            options.setdefault("gpus_per_node", 1)
        return cls(
            folder=folder,
            cluster=audit.submitit_cluster,
            partition=audit.slurm_partition,
            time_minutes=audit.slurm_time_minutes,
            cpus_per_task=audit.slurm_cpus_per_task,
            max_parallel=audit.workers,
            options=options,
            # Local jobs finish in seconds; SLURM's queue is not worth polling more than this.
            poll_seconds=0.5 if audit.submitit_cluster in ("local", "debug") else 10.0,
        )

    def __enter__(self) -> SubmititExecutor:
        _import_extra("submitit", extra="slurm", executor=self.name)
        self.folder.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def map_unordered(
        self, function: Callable[[Any, Any], Any], items: Sequence[Any], *, shared: Any
    ) -> Iterator[tuple[int, Any]]:
        """Submits one array of jobs and yields each result as its job finishes."""
        submitit = _import_extra("submitit", extra="slurm", executor=self.name)
        staged = self.folder / f"shared-{uuid.uuid4().hex}.pkl"
        with staged.open("wb") as file:
            pickle.dump(shared, file, protocol=pickle.HIGHEST_PROTOCOL)
        executor = submitit.AutoExecutor(folder=self.folder / "%j", cluster=self.cluster or None)
        parameters: dict[str, Any] = {
            "name": "dptrain-audit",
            "timeout_min": self.time_minutes,
            "cpus_per_task": self.cpus_per_task,
            **self.options,
        }
        if self.partition:
            parameters["slurm_partition"] = self.partition
        if self.max_parallel:
            parameters["slurm_array_parallelism"] = self.max_parallel
        executor.update_parameters(**parameters)
        try:
            with executor.batch():
                jobs = [
                    executor.submit(_call_with_staged, function, item, staged) for item in items
                ]
            position = {job.job_id: index for index, job in enumerate(jobs)}
            for job in submitit.helpers.as_completed(jobs, poll_frequency=self.poll_seconds):
                yield position[job.job_id], job.result()
        finally:
            staged.unlink(missing_ok=True)


def _call_with_staged(function: Callable[[Any, Any], Any], item: Any, staged: Path) -> Any:
    with Path(staged).open("rb") as file:
        shared = pickle.load(file)  # written by this audit's own process, never foreign input
    return function(item, shared)


EXECUTORS: dict[str, type[LocalExecutor] | type[RayExecutor] | type[SubmititExecutor]] = {
    executor.name: executor for executor in (LocalExecutor, RayExecutor, SubmititExecutor)
}
EXECUTOR_NAMES = tuple(EXECUTORS)


def make_executor(audit: AuditConfig, *, run_dir: Path | None = None, gpu: bool = False):
    """The executor ``audit.executor`` names, configured from the audit settings.

    Args:
        audit: Audit settings (``executor`` and its options).
        run_dir: The run directory, where submitit's folder goes unless configured.
        gpu: Whether the recipe trains on CUDA (spawned local workers, a GPU per Ray task or
            SLURM job).

    Returns:
        An executor, to be entered as a context manager.

    Raises:
        ConfigError: For an unknown executor name.

    Example:
        >>> from dptrain.audit.config import AuditConfig
        >>> make_executor(AuditConfig(workers=2))
        LocalExecutor(workers=2, start_method='fork')
    """
    if audit.executor not in EXECUTORS:
        raise ConfigError(
            f"audit.executor must be one of {list(EXECUTOR_NAMES)}, got {audit.executor!r}"
        )
    return EXECUTORS[audit.executor].from_audit(audit, run_dir=run_dir, gpu=gpu)


def _import_extra(module: str, *, extra: str, executor: str) -> ModuleType:
    """Imports an optional engine, or says in one line how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ConfigError(
            f"audit.executor={executor} needs {module}: pip install 'dptrain[{extra}]'"
        ) from error
