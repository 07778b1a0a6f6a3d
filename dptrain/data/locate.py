"""Where shared data files (MedMNIST ``.npz``, image folders) live on this machine.

Real data sets are not shipped inside the package. They sit in a shared data folder beside the
repository (``../shared/data``), in a folder named by ``$DPTRAIN_DATA``, or in ``./data``. Configs
name a file relative to that folder, ``${shared_data:images/breastmnist/breastmnist.npz}``, and
this module finds it. When it is nowhere, the path returned is the default location, so the
loader's missing-file message tells the user exactly where to put the file.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV_VARIABLE = "DPTRAIN_DATA"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"


def shared_data_path(relative: str) -> str:
    """The first existing location of a shared data file, else its default location.

    Looks, in order, in ``$DPTRAIN_DATA/<relative>``, ``<repo root>/../shared/data/<relative>``,
    ``./../shared/data/<relative>`` and ``./data/<relative>`` (``.`` is the working directory).

    Args:
        relative: The file's path inside the data folder, e.g.
            ``images/breastmnist/breastmnist.npz``.

    Returns:
        The path found, or ``<repo root>/../shared/data/<relative>`` when none exists.

    Example:
        >>> shared_data_path("images/no-such-set/no-such-set.npz").endswith(
        ...     "shared/data/images/no-such-set/no-such-set.npz")
        True
    """
    candidates = []
    if os.environ.get(DATA_ENV_VARIABLE):
        candidates.append(Path(os.environ[DATA_ENV_VARIABLE]) / relative)
    candidates += [
        DEFAULT_DATA_DIR / relative,
        Path.cwd().parent / "shared" / "data" / relative,
        Path.cwd() / "data" / relative,
    ]
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    return str(DEFAULT_DATA_DIR / relative)
