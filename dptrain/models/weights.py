"""User-supplied pretrained weights from a local file: checked, never downloaded.

A state dict with BatchNorm statistics cannot be used: BatchNorm mixes the records of a batch, so
per-sample clipping no longer bounds one record's influence (and Opacus refuses the layer). The
final linear layer of every image model is called ``head``; when its shape differs from the
checkpoint's (another number of classes) it keeps its fresh initialisation, the usual fine-tuning
recipe. Any other missing key or shape mismatch is an error: silently half-loaded weights would
make a run's results meaningless.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from dptrain.errors import ConfigError, DataError

log = logging.getLogger(__name__)
BATCHNORM_KEYS = ("running_mean", "running_var", "num_batches_tracked")
# Opacus' GradSampleModule stores the wrapped model under ``_module``; checkpoints saved from a
# wrapped model load into the plain one.
WRAPPER_PREFIX = "_module."


def load_pretrained_weights(module: nn.Module, path: str) -> nn.Module:
    """Loads a local state dict into ``module`` in place (``torch.load(weights_only=True)``).

    Args:
        module: A freshly built model whose final linear layer is named ``head``.
        path: File written by ``torch.save(model.state_dict(), path)``.

    Returns:
        ``module``, with the file's weights (its ``head`` re-initialised when the number of
        outputs differs).

    Raises:
        DataError: If the file is missing or is not a state dict of tensors.
        ConfigError: If it holds BatchNorm statistics, or keys or shapes that do not match the
            configured architecture.

    Example:
        >>> import tempfile, torch
        >>> from torch import nn
        >>> source = nn.Sequential()
        >>> source.head = nn.Linear(3, 2)
        >>> path = tempfile.mkdtemp() + "/weights.pt"
        >>> torch.save(source.state_dict(), path)
        >>> target = nn.Sequential()
        >>> target.head = nn.Linear(3, 2)
        >>> torch.equal(load_pretrained_weights(target, path).head.weight, source.head.weight)
        True
    """
    state = _read_state_dict(path)
    batchnorm = [key for key in state if key.rsplit(".", 1)[-1] in BATCHNORM_KEYS]
    if batchnorm:
        raise ConfigError(
            f"model.pretrained_path {path} holds BatchNorm statistics ({batchnorm[0]}): DP-SGD "
            "needs a model without BatchNorm; use weights of a GroupNorm model or "
            "model.pretrained_path=null"
        )
    expected = module.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if missing or unexpected:
        raise ConfigError(
            f"model.pretrained_path {path} does not match the configured architecture: "
            f"missing {missing[:3]}, unexpected {unexpected[:3]} (set model options, e.g. width "
            "and depth, to those the weights were trained with)"
        )
    mismatched = [key for key in expected if state[key].shape != expected[key].shape]
    skipped = [key for key in mismatched if _in_head(key)]
    wrong = [key for key in mismatched if not _in_head(key)]
    if wrong:
        key = wrong[0]
        raise ConfigError(
            f"model.pretrained_path {path}: {key} has shape {tuple(state[key].shape)}, the "
            f"configured model needs {tuple(expected[key].shape)} (set model options and the "
            "input size to those the weights were trained with)"
        )
    if skipped:
        log.info("pretrained %s: head shape differs, keeping a fresh head for this task", path)
    module.load_state_dict(
        {key: state[key] for key in expected if key not in skipped}, strict=False
    )
    return module


def _in_head(key: str) -> bool:
    """Whether ``key`` is a parameter of a module named ``head`` (the final linear layer)."""
    parts = key.split(".")
    return len(parts) >= 2 and parts[-2] == "head"


def _read_state_dict(path: str) -> dict[str, torch.Tensor]:
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(
            f"model.pretrained_path {path} not found: give a local file written by "
            "torch.save(model.state_dict(), path), or model.pretrained_path=null (nothing is "
            "downloaded)"
        )
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for unreadable or unsafe pickles
        raise DataError(
            f"model.pretrained_path {path} cannot be loaded with torch.load(weights_only=True) "
            f"({type(error).__name__}): save a plain state dict, torch.save(model.state_dict(), "
            "path)"
        ) from error
    if not isinstance(state, dict) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()
    ):
        raise DataError(
            f"model.pretrained_path {path} is not a state dict of tensors: save one with "
            "torch.save(model.state_dict(), path)"
        )
    return {key.removeprefix(WRAPPER_PREFIX): value for key, value in state.items()}
