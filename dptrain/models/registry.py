"""Model names → config classes, and which Opacus ``grad_sample_mode`` each model may use.

Every model config class carries two class attributes:

- ``grad_sample_modes``: the Opacus modes whose per-sample gradients the test suite checks against
  a batch-of-one reference for this model (``tests/models/test_per_sample_gradients.py``);
- ``default_grad_sample_mode``: the fastest of those measured on the reference machine
  (``experiments/bench_image_dp_overhead.py``), used for ``privacy.grad_sample_mode=auto``.

**Front ends.** A model config may also define ``frontend(input_shape) -> Frontend | None``: a
fixed, data-independent transform (no trainable parameters, so it costs no privacy) that the
data side applies once to every record before training, prediction and the audit, e.g. the
ScatterNet's scattering transform. ``build`` then receives ``frontend.output_shape(record_shape)``
instead of the record shape, and the trained module expects transformed records. Callers use
`model_frontend`, which returns None for models without one.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol, runtime_checkable

import numpy as np

from dptrain.errors import ConfigError
from dptrain.models.ecg import CNN1DConfig, Scatter1DConfig
from dptrain.models.mlp import MLPConfig
from dptrain.models.scattering import ScatterNetConfig
from dptrain.models.vision import CNNConfig, ResNetConfig

MODELS: dict[str, type] = {
    "mlp": MLPConfig,
    "cnn": CNNConfig,
    "resnet": ResNetConfig,
    "scatternet": ScatterNetConfig,
    "cnn1d": CNN1DConfig,
    "scatter1d": Scatter1DConfig,
}
AUTO = "auto"


@runtime_checkable
class Frontend(Protocol):
    """A fixed transform applied to records before the trained model (see the module docstring).

    Attributes:
        name: Identifies the transform and its settings (for cache keys and the report).
    """

    name: str

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of one transformed record, given the shape of one raw record."""

    def transform(self, records: np.ndarray) -> np.ndarray:
        """``(n, *input_shape)`` records to ``(n, *output_shape)`` float32 features."""


def model_config(name: str, **options: object) -> object:
    """The config of the model called ``name``, with ``options`` as its fields.

    Args:
        name: A key of `MODELS`.
        **options: Fields of that model's config class.

    Returns:
        The validated config (it builds modules with ``build(input_shape, n_outputs)``).

    Raises:
        ConfigError: For an unknown name or option, or an invalid value.

    Example:
        >>> model_config("cnn", channels=[8, 16]).channels
        [8, 16]
        >>> try:
        ...     model_config("vit")
        ... except ConfigError as error:
        ...     print(error)
        unknown model 'vit': use one of ['cnn', 'cnn1d', 'mlp', 'resnet', 'scatter1d', 'scatternet']
    """
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}: use one of {sorted(MODELS)}")
    config_class = MODELS[name]
    known = [item.name for item in dataclasses.fields(config_class)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"model={name} has no option {unknown[0]!r}: use one of {known}")
    return config_class(**options)


def model_name(model_config: object) -> str:
    """The registry name of a model config (its class name when not registered).

    Example:
        >>> model_name(CNNConfig())
        'cnn'
    """
    for name, config_class in MODELS.items():
        if type(model_config) is config_class:
            return name
    return type(model_config).__name__


def resolve_grad_sample_mode(model_config: object, requested: str) -> str:
    """The Opacus ``grad_sample_mode`` to train ``model_config`` with.

    A model factory outside the registry that declares no ``grad_sample_modes`` is not verified
    here: an explicit mode passes through unchanged (its author vouches for it) and ``auto`` is
    refused.

    Args:
        model_config: A model config with ``grad_sample_modes`` and ``default_grad_sample_mode``.
        requested: ``auto`` (the model's measured default) or an explicit Opacus mode.

    Returns:
        The mode, one the model's per-sample gradients are verified for.

    Raises:
        ConfigError: If the explicit mode is not verified for this model, or ``auto`` is asked of
            a model without a default.

    Example:
        >>> resolve_grad_sample_mode(CNNConfig(), "auto")
        'hooks'
        >>> resolve_grad_sample_mode(MLPConfig(), "functorch")
        'functorch'
    """
    allowed = getattr(model_config, "grad_sample_modes", None)
    if requested == AUTO:
        default = getattr(model_config, "default_grad_sample_mode", None)
        if default is None:
            raise ConfigError(
                f"privacy.grad_sample_mode=auto needs a measured default, and model="
                f"{model_name(model_config)} declares none: set privacy.grad_sample_mode to "
                "ghost, hooks, functorch or ew"
            )
        return str(default)
    if allowed is not None and requested not in allowed:
        raise ConfigError(
            f"privacy.grad_sample_mode={requested!r} is not verified for model="
            f"{model_name(model_config)}: use one of {list(allowed)} or auto"
        )
    return requested


def model_frontend(model_config: object, input_shape: tuple[int, ...]) -> Frontend | None:
    """The model's fixed front end for records of ``input_shape``, or None if it has none.

    Example:
        >>> model_frontend(MLPConfig(), (26,)) is None
        True
        >>> model_frontend(ScatterNetConfig(), (1, 28, 28)).output_shape((1, 28, 28))
        (81, 7, 7)
    """
    make_frontend = getattr(model_config, "frontend", None)
    return None if make_frontend is None else make_frontend(input_shape)
