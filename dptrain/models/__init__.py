"""Models built from config: each config class has ``build(input_shape, n_outputs)``."""

from typing import Protocol

from torch import nn

from dptrain.models.mlp import MLPConfig


class ModelFactory(Protocol):
    """Anything that builds a fresh model for one record shape and number of outputs."""

    def build(self, input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
        """Returns a freshly initialised module."""


__all__ = ["MLPConfig", "ModelFactory"]
