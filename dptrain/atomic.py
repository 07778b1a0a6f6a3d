"""Atomic file writes: a file a run writes is either complete or absent, never half-written.

Each write goes to a temporary file in the target's directory (same filesystem, so the rename is
atomic), is flushed and fsync'd, and is renamed over the target with `os.replace`; the directory is
then fsync'd so the rename itself survives a power cut. A process killed mid-write (SIGKILL, disk
full) leaves at most a temporary ``.<name>.*.tmp`` file, which `remove_stale_temporaries` clears.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TEMPORARY_SUFFIX = ".tmp"


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Writes ``path`` atomically: ``write`` fills a binary file handle, which then replaces it.

    Args:
        path: The target file.
        write: Writes the content to the handle it is given (``torch.save``, ``np.savez``, ...).

    Returns:
        The target path.

    Raises:
        OSError: If writing fails (e.g. disk full); the target is then untouched and no temporary
            file is left behind.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     target = atomic_write(Path(folder) / "a.bin", lambda handle: handle.write(b"ok"))
        ...     target.read_bytes(), sorted(p.name for p in Path(folder).iterdir())
        (b'ok', ['a.bin'])
    """
    path = Path(path)
    handle, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX
    )
    try:
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp's 0600, as open() would have made it
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as error:  # named after the target, not the temporary file
        Path(temporary).unlink(missing_ok=True)
        raise OSError(error.errno, error.strerror or str(error), str(path)) from error
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _sync_directory(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Writes ``text`` (UTF-8) to ``path`` atomically (see `atomic_write`)."""
    data = text.encode("utf-8")
    return atomic_write(path, lambda file: file.write(data))


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Removes the temporary files that killed writers left in ``directory``; returns them."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = [p for p in directory.glob(f".*{TEMPORARY_SUFFIX}") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def _umask() -> int:
    """The process's file-creation mask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _sync_directory(directory: Path) -> None:
    """Makes a rename in ``directory`` durable (not every filesystem allows it: then skipped)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # e.g. a filesystem without directory fsync; the rename itself already happened
    finally:
        os.close(descriptor)
