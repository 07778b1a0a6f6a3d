"""Checkpoints that load with ``torch.load(weights_only=True)``: tensors and plain values only.

A checkpoint holds the state dict, the data's fitted preprocessing (its kind and statistics, so
the deployed model applies exactly the pipeline it was trained with), the accountant's state (its
history of (σ, q, steps)) and the privacy guarantee, so a loaded model still says what it cost.

Format 3 adds what applying the model to new data needs without the training file: the model's
registry name, the shape of one input record and the class names, and for tables the feature
encoding (`dptrain.data.table_encoding.FeatureEncoding` as plain values: input columns, numeric
columns, category levels, feature order). Format-2 checkpoints still load; they lack those keys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from dptrain.atomic import atomic_write
from dptrain.data.preprocessing import FittedPreprocessing, preprocessing_from_state
from dptrain.data.table_encoding import FeatureEncoding
from dptrain.errors import DataError
from dptrain.models.registry import MODELS
from dptrain.training.fit import TrainedModel

CHECKPOINT_FORMAT = 3
READABLE_FORMATS = (2, 3)


def save_checkpoint(
    model: TrainedModel,
    path: Path,
    *,
    model_config: dict[str, Any],
    frontend: str | None = None,
    model_name: str | None = None,
    input_shape: Sequence[int] = (),
    class_names: Sequence[str] = (),
) -> Path:
    """Writes ``model`` to ``path`` atomically (a crash leaves the old file or none, never half).

    Args:
        model: The trained model.
        path: Target file, conventionally ``model.pt``.
        model_config: The model's config as plain values, to rebuild the module before loading.
        frontend: Name of the fixed front end the inputs went through before ``preprocessing``
            (e.g. ``scattering2d(J=2,L=8)``; rebuilt from ``model_config``), None without one.
        model_name: The model's registry name (``mlp``); inferred from ``model_config``'s keys
            when omitted ("" if they match no registered model).
        input_shape: Shape of one record as the model's preprocessing receives it.
        class_names: One name per model output.

    Returns:
        The path written.
    """
    privacy = {
        key: (value if value != float("inf") else "inf")
        for key, value in dataclasses.asdict(model.privacy).items()
    }
    encoding = getattr(model.preprocessing, "encoding", None)
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
        "model_name": model_name if model_name is not None else infer_model_name(model_config),
        "input_shape": [int(size) for size in input_shape],
        "class_names": [str(name) for name in class_names],
        "feature_encoding": encoding.to_plain() if encoding is not None else None,
    }
    return atomic_write(path, lambda file: torch.save(checkpoint, file))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Reads a checkpoint safely (``weights_only=True``: no code runs while loading).

    Raises:
        DataError: If the file is missing, not a dptrain checkpoint, or of an unknown format.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint not found: {path} (a run writes it as model.pt)")
    try:
        checkpoint = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as error:  # torch raises many types for a file that is not a checkpoint
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:120]
        raise DataError(
            f"{path.name} is not a readable dptrain checkpoint ({reason}); give the model.pt of a "
            "finished run"
        ) from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise DataError(f"{path.name} is not a dptrain checkpoint (no state_dict)")
    if checkpoint.get("format") not in READABLE_FORMATS:
        raise DataError(
            f"{path.name} has checkpoint format {checkpoint.get('format')!r}; this dptrain reads "
            f"formats {list(READABLE_FORMATS)} (upgrade dptrain for newer ones)"
        )
    return checkpoint


def checkpoint_preprocessing(checkpoint: dict[str, Any]) -> FittedPreprocessing:
    """The fitted preprocessing stored in a loaded checkpoint, ready to transform new records."""
    stored = checkpoint["preprocessing"]
    return preprocessing_from_state(stored["kind"], stored["arrays"])


def checkpoint_feature_encoding(checkpoint: dict[str, Any]) -> FeatureEncoding | None:
    """The table feature encoding of a loaded checkpoint; None for other data and format 2."""
    plain = checkpoint.get("feature_encoding")
    return FeatureEncoding.from_plain(plain) if plain else None


def infer_model_name(model_config: dict[str, Any]) -> str:
    """The registered model whose config has all of ``model_config``'s keys ("" if not one).

    Example:
        >>> infer_model_name({"hidden": [8], "activation": "tanh", "norm": "none"})
        'mlp'
    """
    keys = set(model_config)
    matches = [
        name
        for name, config_class in MODELS.items()
        if keys and keys <= {item.name for item in dataclasses.fields(config_class)}
    ]
    return matches[0] if len(matches) == 1 else ""
