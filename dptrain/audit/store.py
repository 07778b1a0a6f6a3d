"""What the audit keeps of each trained model, and its file: saved as the model finishes.

Model k's signals, index, seed and privacy go to ``<run dir>/audit_models/model_<k>.npz`` the
moment the model exists (written to a temporary name, fsync'd and renamed, so a crash never leaves
half a file), under a fingerprint of everything that decides them: the recipe (model, privacy,
training configs), the data the models train on, the model's seed and its membership row. An audit
that starts in a directory holding such files loads every model whose fingerprint matches and
trains only the rest, so an interrupted audit resumes and a finished one extends to more models.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dptrain.atomic import atomic_write
from dptrain.privacy.accounting import PrivacySpend

log = logging.getLogger(__name__)
MODELS_FOLDER = "audit_models"


@dataclass(frozen=True)
class ReferenceModelOutput:
    """What the audit keeps of one trained model: its signals, never the model itself.

    Attributes:
        index: Model index k.
        signals: ``(n_records,)`` float64 logit-scaled confidence φ of every pool record.
        privacy: The model's privacy guarantee.
        train_seconds: Wall time of its training loop (when it was trained).
        reused: True when loaded from a saved file rather than trained by this audit.
        attribute_signals: ``(n_candidates, n_records)`` float64 φ of every pool record with each
            sensitive attribute set to each of its values (`dptrain.audit.attribute`); None when
            the audit infers no attribute.
        attribute_key: What ``attribute_signals`` were computed for (`probes_key`); "" if None.
        knowledge_signals: ``(n_partial_levels, n_records)`` float64 φ of every pool record as a
            partial-knowledge attacker imputes it (`dptrain.audit.knowledge`); None without one.
        knowledge_key: What ``knowledge_signals`` were computed for (`knowledge_key`).
    """

    index: int
    signals: np.ndarray
    privacy: PrivacySpend
    train_seconds: float
    reused: bool = False
    attribute_signals: np.ndarray | None = None
    attribute_key: str = ""
    knowledge_signals: np.ndarray | None = None
    knowledge_key: str = ""


def model_fingerprint(recipe_fingerprint: str, *, seed: int, membership_row: np.ndarray) -> str:
    """Hash of the recipe, the model's seed and the patients it trains on.

    Example:
        >>> row = np.array([True, False, True])
        >>> model_fingerprint("r", seed=1, membership_row=row) == model_fingerprint(
        ...     "r", seed=1, membership_row=row)
        True
        >>> model_fingerprint("r", seed=1, membership_row=row) == model_fingerprint(
        ...     "r", seed=2, membership_row=row)
        False
    """
    digest = hashlib.sha256(recipe_fingerprint.encode())
    digest.update(str(int(seed)).encode())
    row = np.asarray(membership_row, dtype=bool)
    digest.update(str(row.size).encode())
    digest.update(np.packbits(row).tobytes())
    return digest.hexdigest()


class ModelStore:
    """The saved signals of an audit's models, one ``.npz`` file per model.

    Args:
        directory: Where the files go (``<run dir>/audit_models``); created when needed.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    @classmethod
    def in_run_dir(cls, run_dir: Path) -> ModelStore:
        """The store of the run directory ``run_dir``."""
        return cls(Path(run_dir) / MODELS_FOLDER)

    def path(self, index: int) -> Path:
        """The file of model ``index``."""
        return self.directory / f"model_{index}.npz"

    def save(self, output: ReferenceModelOutput, *, seed: int, fingerprint: str) -> Path:
        """Writes one model's signals atomically (temporary file, fsync, then rename)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.path(output.index)
        arrays = {
            "signals": output.signals,
            "index": np.int64(output.index),
            "seed": np.int64(seed),
            "fingerprint": np.str_(fingerprint),
            "privacy": np.str_(json.dumps(dataclasses.asdict(output.privacy))),
            "train_seconds": np.float64(output.train_seconds),
        }
        if output.attribute_signals is not None:
            arrays["attribute_signals"] = output.attribute_signals
            arrays["attribute_key"] = np.str_(output.attribute_key)
        if output.knowledge_signals is not None:
            arrays["knowledge_signals"] = output.knowledge_signals
            arrays["knowledge_key"] = np.str_(output.knowledge_key)
        atomic_write(target, lambda file: np.savez(file, **arrays))
        return target

    def load(
        self, index: int, *, fingerprint: str, attribute_key: str = "", knowledge_key: str = ""
    ) -> ReferenceModelOutput | None:
        """Model ``index``'s saved output if its file exists with this fingerprint, else None.

        A file with another fingerprint (a changed recipe, data, seed or membership) is left in
        place and ignored; the model is retrained and the file overwritten. With an
        ``attribute_key`` the file must also hold the attribute-inference signals of those
        attributes (files from before attribute inference, or for other attributes, are
        retrained: the model itself is not saved); without one, such signals are ignored. The
        same holds for ``knowledge_key`` and the partial-knowledge signals.
        """
        path = self.path(index)
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as saved:
            if str(saved["fingerprint"]) != fingerprint or int(saved["index"]) != index:
                log.info("audit: %s is from another recipe or membership; retraining", path.name)
                return None
            saved_key = str(saved["attribute_key"]) if "attribute_key" in saved.files else ""
            if attribute_key and saved_key != attribute_key:
                log.info("audit: %s lacks these attributes' signals; retraining", path.name)
                return None
            saved_knowledge = str(saved["knowledge_key"]) if "knowledge_key" in saved.files else ""
            if knowledge_key and saved_knowledge != knowledge_key:
                log.info("audit: %s lacks these knowledge levels' signals; retraining", path.name)
                return None
            return ReferenceModelOutput(
                index=index,
                signals=saved["signals"].copy(),
                privacy=PrivacySpend(**json.loads(str(saved["privacy"]))),
                train_seconds=float(saved["train_seconds"]),
                reused=True,
                attribute_signals=saved["attribute_signals"].copy() if attribute_key else None,
                attribute_key=attribute_key,
                knowledge_signals=saved["knowledge_signals"].copy() if knowledge_key else None,
                knowledge_key=knowledge_key,
            )
