"""One run per run directory at a time, and no results.json left from an earlier run.

A second run into a directory another live run is using is refused (two runs would interleave
their files). A run into a directory an earlier run left behind may reuse what it saved (the
audit's finished models) but first removes that run's ``results.json``: a run without its own
``results.json`` did not finish, and must not look as if it had.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dptrain.errors import ConfigError
from dptrain.reporting.results import RESULTS_FILE

LOCK_FILE = ".dptrain.lock"


@contextmanager
def claim_run_directory(run_dir: Path) -> Iterator[None]:
    """Holds ``run_dir`` for this process while the block runs.

    Raises:
        ConfigError: If a live process holds the directory.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / LOCK_FILE
    for _ in range(2):
        try:
            descriptor = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            break
        except FileExistsError:
            holder = _holder(lock)
            if holder is not None and _alive(holder):
                raise ConfigError(
                    f"run directory {run_dir} is in use by process {holder}; wait for it or "
                    "choose another hydra.run.dir"
                ) from None
            lock.unlink(missing_ok=True)  # left by a run that was killed
    else:
        raise ConfigError(f"could not claim run directory {run_dir}; remove {lock} and retry")
    with os.fdopen(descriptor, "w") as handle:
        handle.write(str(os.getpid()))
    try:
        (run_dir / RESULTS_FILE).unlink(missing_ok=True)
        yield
    finally:
        lock.unlink(missing_ok=True)


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
