"""Checkpoints that load with ``torch.load(weights_only=True)``: tensors and plain values only.

A checkpoint holds the state dict, the data's fitted preprocessing (its kind and statistics, so
the deployed model applies exactly the pipeline it was trained with), the accountant's state (its
history of (σ, q, steps)) and the privacy guarantee, so a loaded model still says what it cost.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from dptrain.data.preprocessing import FittedPreprocessing, preprocessing_from_state
from dptrain.training.fit import TrainedModel

CHECKPOINT_FORMAT = 2


def save_checkpoint(
    model: TrainedModel,
    path: Path,
    *,
    model_config: dict[str, Any],
    frontend: str | None = None,
) -> Path:
    """Writes ``model`` to ``path`` (atomically: a crash leaves no half-written checkpoint).

    Args:
        model: The trained model.
        path: Target file, conventionally ``model.pt``.
        model_config: The model's config as plain values, to rebuild the module before loading.
        frontend: Name of the fixed front end the inputs went through before ``preprocessing``
            (e.g. ``scattering2d(J=2,L=8)``; rebuilt from ``model_config``), None without one.

    Returns:
        The path written.
    """
    privacy = {
        key: (value if value != float("inf") else "inf")
        for key, value in dataclasses.asdict(model.privacy).items()
    }
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "state_dict": model.module.state_dict(),
        "preprocessing": {
            "kind": model.preprocessing.kind,
            "arrays": {k: torch.from_numpy(v) for k, v in model.preprocessing.state().items()},
        },
        "grad_sample_mode": model.grad_sample_mode,
        "accountant": model.accountant_state,
        "privacy": privacy,
        "task": model.task,
        "model_config": model_config,
        "frontend": frontend or "",
    }
    partial = path.with_suffix(path.suffix + ".partial")
    torch.save(checkpoint, partial)
    partial.replace(path)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Reads a checkpoint safely (``weights_only=True``: no code runs while loading)."""
    return torch.load(path, weights_only=True)


def checkpoint_preprocessing(checkpoint: dict[str, Any]) -> FittedPreprocessing:
    """The fitted preprocessing stored in a loaded checkpoint, ready to transform new records."""
    stored = checkpoint["preprocessing"]
    return preprocessing_from_state(stored["kind"], stored["arrays"])
