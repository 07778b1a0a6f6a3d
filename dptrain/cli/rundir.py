"""One run per run directory at a time, and no results.json left from an earlier run.

A second run into a directory another live run is using is refused (two runs would interleave
their files). A run into a directory an earlier run left behind may reuse what it saved (the
audit's finished models) but first removes that run's ``results.json`` (first, so that no moment
shows an old ``results.json`` beside new files), its checkpoint and report, and the temporary
files of writes a killed run never finished: a run without its own ``results.json`` did not
finish, and must not look as if it had, nor leave an earlier run's model looking like its own.
The deployed model's ``training_state.pt`` is kept: a re-launched run continues from it when it
was saved with the same recipe and data (`dptrain.training.resume`), and ignores it otherwise.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dptrain.atomic import remove_stale_temporaries
from dptrain.audit.store import MODELS_FOLDER
from dptrain.errors import ConfigError
from dptrain.reporting.results import RESULTS_FILE
from dptrain.reporting.writer import CHECKPOINT_FILE, REPORT_FILE

LOCK_FILE = ".dptrain.lock"
# Rewritten by every run: removed when a run starts, so a killed run leaves none of an earlier one.
# (Not training_state.pt: `fit` resumes from it only for the same recipe and data.)
EARLIER_RUN_FILES = (CHECKPOINT_FILE, REPORT_FILE)


@contextmanager
def claim_run_directory(run_dir: Path) -> Iterator[None]:
    """Holds ``run_dir`` for this process while the block runs.

    The claim is an exclusive ``flock`` on ``.dptrain.lock``, which the kernel releases when the
    process ends however it ends (SIGKILL included), so a killed run never blocks the next one;
    the file also names the holder's process id for the message.

    Raises:
        ConfigError: If a live process holds the directory.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / LOCK_FILE
    descriptor = _acquire(lock, run_dir)
    try:
        for name in (RESULTS_FILE, *EARLIER_RUN_FILES):
            (run_dir / name).unlink(missing_ok=True)
        for folder in (run_dir, run_dir / MODELS_FOLDER):
            remove_stale_temporaries(folder)
        yield
    finally:
        lock.unlink(missing_ok=True)  # while still locked: a waiter then sees a removed file
        os.close(descriptor)


def check_run_directory_free(run_dir: Path) -> None:
    """Refuses a run directory another live process holds, without claiming or writing anything.

    Hydra writes ``.hydra/`` into the run directory before the app starts: checked first (from a
    Hydra callback), a refused second run leaves the first run's files as they were.

    Raises:
        ConfigError: If a live process holds the directory.
    """
    lock = Path(run_dir) / LOCK_FILE
    try:
        descriptor = os.open(lock, os.O_RDONLY)
    except OSError:  # no lock (or no directory): nothing holds it; the run's own claim decides
        return
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _in_use(Path(run_dir), _holder(lock)) from None
    finally:
        os.close(descriptor)
    holder = _holder(lock)
    if holder is not None and holder != os.getpid() and _alive(holder):
        raise _in_use(Path(run_dir), holder)


def _acquire(lock: Path, run_dir: Path) -> int:
    """An open descriptor of ``lock`` holding its exclusive flock, with this process's id in it."""
    for _ in range(3):
        descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise _in_use(run_dir, _holder(lock)) from None
        if not _is_current(descriptor, lock):  # removed by the holder that just finished
            os.close(descriptor)
            continue
        holder = _holder(lock)
        if holder is not None and _alive(holder):  # a holder that wrote its id without a flock
            os.close(descriptor)
            raise _in_use(run_dir, holder)
        os.ftruncate(descriptor, 0)
        os.write(descriptor, str(os.getpid()).encode())
        return descriptor
    raise ConfigError(f"could not claim run directory {run_dir}; remove {lock} and retry")


def _in_use(run_dir: Path, holder: int | None) -> ConfigError:
    who = f"process {holder}" if holder is not None else "another process"
    return ConfigError(
        f"run directory {run_dir} is in use by {who}; wait for it or choose another hydra.run.dir"
    )


def _is_current(descriptor: int, lock: Path) -> bool:
    try:
        return os.fstat(descriptor).st_ino == os.stat(lock).st_ino
    except FileNotFoundError:
        return False


def _holder(lock: Path) -> int | None:
    try:
        return int(lock.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
