"""Patient ids out of trackers: keyed pseudonyms, the key kept on this machine.

A tracker may upload what it logs (``wandb sync`` sends it to a third-party service), and the
per-patient table pairs each patient's id with their subgroups and exposure. By default every
table sent to a tracker carries HMAC-SHA256 pseudonyms instead of ids. The key is created once per
machine in ``$DPTRAIN_HOME/pseudonym.key`` (default ``~/.dptrain``), readable by its owner only,
so pseudonyms are stable across the runs of a sweep, and only this machine can map them back.
``patient_risk.csv`` in the run directory keeps the ids as given.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from dptrain.errors import ConfigError

PATIENT_ID_MODES = ("pseudonymised", "raw", "none")
KEY_FILE = "pseudonym.key"


def check_patient_ids(mode: str) -> None:
    """Refuses an unknown ``tracker.patient_ids`` value, naming the valid ones."""
    if mode not in PATIENT_ID_MODES:
        raise ConfigError(
            f"tracker.patient_ids must be one of {list(PATIENT_ID_MODES)}, got {mode!r}"
        )


def pseudonym_key(home: Path | None = None) -> bytes:
    """This machine's pseudonym key, created (owner-readable only) on first use."""
    home = Path(home or os.environ.get("DPTRAIN_HOME") or Path.home() / ".dptrain")
    path = home / KEY_FILE
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as key_file:
            key_file.write(secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


def pseudonymise(ids: pd.Series, key: bytes) -> pd.Series:
    """Keyed pseudonyms ``p-<16 hex>`` of patient ids (the same id gives the same pseudonym).

    Example:
        >>> pseudonymise(pd.Series(["A7", "A7", "B2"]), b"k").tolist()[0].startswith("p-")
        True
    """
    return ids.astype(str).map(
        lambda value: "p-" + hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:16]
    )


@dataclass
class PatientIdGuard:
    """Wraps a tracker so tables with a ``patient_id`` column reach it pseudonymised (or not).

    Attributes:
        tracker: The tracker to protect.
        mode: ``pseudonymised`` (default), ``raw`` (the user opted in to sending ids) or ``none``
            (tables with patient ids are not sent at all).
        key: The pseudonym key.
    """

    tracker: Any
    mode: str
    key: bytes

    def __post_init__(self) -> None:
        check_patient_ids(self.mode)
        self.name = getattr(self.tracker, "name", type(self.tracker).__name__)

    def log_table(self, name: str, table: pd.DataFrame) -> None:
        """Logs ``table`` with its patient ids handled by ``mode``."""
        if "patient_id" in table.columns and self.mode != "raw":
            if self.mode == "none":
                return
            table = table.assign(patient_id=pseudonymise(table["patient_id"], self.key))
        self.tracker.log_table(name, table)

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.tracker, attribute)
