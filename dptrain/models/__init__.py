"""Models built from config: each config class has ``build(input_shape, n_outputs)``.

`MODELS` maps the names used in config (``model=mlp|cnn|resnet|scatternet``) to config classes;
each declares the Opacus ``grad_sample_modes`` verified for it and its measured default. A config
may also have ``frontend(input_shape)``, a fixed transform applied to records before the model
(see `dptrain.models.registry`).
"""

from typing import Protocol

from torch import nn

from dptrain.models.mlp import MLPConfig
from dptrain.models.registry import (
    MODELS,
    Frontend,
    model_config,
    model_frontend,
    model_name,
    resolve_grad_sample_mode,
)
from dptrain.models.scattering import ScatteringFrontend, ScatterNetConfig
from dptrain.models.vision import CNNConfig, ResNetConfig
from dptrain.models.weights import load_pretrained_weights


class ModelFactory(Protocol):
    """Anything that builds a fresh model for one record shape and number of outputs.

    Attributes:
        grad_sample_modes: Opacus modes whose per-sample gradients are verified for the model.
        default_grad_sample_mode: The fastest of them, used for ``grad_sample_mode=auto``.
    """

    grad_sample_modes: tuple[str, ...]
    default_grad_sample_mode: str

    def build(self, input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
        """Returns a freshly initialised module."""


__all__ = [
    "MODELS",
    "CNNConfig",
    "Frontend",
    "MLPConfig",
    "ModelFactory",
    "ResNetConfig",
    "ScatterNetConfig",
    "ScatteringFrontend",
    "load_pretrained_weights",
    "model_config",
    "model_frontend",
    "model_name",
    "resolve_grad_sample_mode",
]
