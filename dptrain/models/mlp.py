"""A multilayer perceptron for tables, built from config, with no BatchNorm.

BatchNorm mixes the records of a batch, so a record's gradient depends on others and per-sample
clipping no longer bounds its influence; LayerNorm normalises within a record and is DP-safe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from torch import nn

from dptrain.errors import ConfigError

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "elu": nn.ELU,
}
NORMS = ("layer", "none")


@dataclass
class MLPConfig:
    """Shape of the MLP.

    Attributes:
        hidden: Width of each hidden layer; empty gives logistic regression.
        activation: One of ``relu``, ``tanh``, ``gelu``, ``elu`` (tanh often trains better under
            DP-SGD: bounded activations keep per-sample gradients small).
        norm: ``layer`` (LayerNorm after each hidden layer) or ``none``.
        dropout: Dropout probability after each hidden layer.
    """

    # Verified against a batch-of-one reference in tests/models; ghost measured fastest
    # (experiments/bench_dp_overhead.py).
    grad_sample_modes: ClassVar[tuple[str, ...]] = ("ghost", "hooks", "functorch", "ew")
    default_grad_sample_mode: ClassVar[str] = "ghost"

    hidden: list[int] = field(default_factory=lambda: [64, 64])
    activation: str = "tanh"
    norm: str = "none"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if any(width < 1 for width in self.hidden):
            raise ConfigError(f"model.hidden widths must be >= 1, got {list(self.hidden)}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(
                f"model.activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}"
            )
        if self.norm not in NORMS:
            raise ConfigError(f"model.norm must be one of {list(NORMS)}, got {self.norm!r}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout}")

    def build(self, input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
        """Builds a freshly initialised MLP (seed torch before calling for reproducibility).

        Args:
            input_shape: Shape of one record; flattened into the first layer.
            n_outputs: Number of logits.

        Returns:
            The module, mapping ``(batch, *input_shape)`` to ``(batch, n_outputs)`` logits.

        Example:
            >>> import torch
            >>> model = MLPConfig(hidden=[8]).build((5,), 2)
            >>> model(torch.zeros(3, 5)).shape
            torch.Size([3, 2])
        """
        layers: list[nn.Module] = [nn.Flatten()]
        width = 1
        for size in input_shape:
            width *= size
        for hidden_width in self.hidden:
            layers.append(nn.Linear(width, hidden_width))
            if self.norm == "layer":
                layers.append(nn.LayerNorm(hidden_width))
            layers.append(ACTIVATIONS[self.activation]())
            if self.dropout:
                layers.append(nn.Dropout(self.dropout))
            width = hidden_width
        layers.append(nn.Linear(width, n_outputs))
        return nn.Sequential(*layers)
