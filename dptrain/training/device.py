"""Where training runs: ``auto`` takes CUDA when present, else the CPU (the tested path)."""

from __future__ import annotations

import torch

from dptrain.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """The torch device for ``train.device``.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')

    Raises:
        ConfigError: For an unknown name, or ``cuda`` on a machine without a CUDA device.
    """
    if name not in DEVICES:
        raise ConfigError(f"train.device must be one of {list(DEVICES)}, got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "train.device=cuda but no CUDA device is available; use train.device=auto"
        )
    return torch.device(name)


def uses_cuda(name: str) -> bool:
    """Whether ``train.device`` resolves to CUDA here (decides how audit workers start)."""
    return resolve_device(name).type == "cuda"
