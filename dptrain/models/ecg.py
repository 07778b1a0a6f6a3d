"""Models for ECG signals ``(leads, samples)``: a GroupNorm 1-D CNN and a scattering-1D head.

Small by default: under DP-SGD the noise grows with the number of parameters, and a ~100K
parameter ECG CNN loses far less utility than a multi-million one (Orabe et al. 2026: at ε = 10,
−0.03 macro AUC for 143K parameters, −0.11 for 8.8M). No BatchNorm, which mixes the records of a
batch; GroupNorm normalises within a record.

The scattering model is the 1-D analogue of `dptrain.models.scattering`: a fixed kymatio
``Scattering1D`` (no trainable parameters, no statistics fitted on data, so no privacy cost) runs
once per data set as a front end, and only a small head is trained. ``import kymatio.torch``
fails with scipy >= 1.17 (kymatio issue #1068), so the 1-D torch front end is imported directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from dptrain.errors import ConfigError, DataError
from dptrain.models.mlp import ACTIVATIONS
from dptrain.models.vision import ImageClassifier, check_common, group_norm

SIGNAL_HEADS = ("linear", "cnn")


def check_signal_shape(model: str, input_shape: tuple[int, ...], min_samples: int) -> None:
    """Raises a ConfigError unless ``input_shape`` is ``(leads, samples)`` with enough samples."""
    if len(input_shape) != 2 or input_shape[1] < min_samples:
        raise ConfigError(
            f"model={model} needs signal records (leads, samples) with at least {min_samples} "
            f"samples, got {tuple(input_shape)} (use model=cnn for images, model=mlp for tables)"
        )


class ConvBlock1D(nn.Module):
    """conv → GroupNorm → activation, or two of them with a residual shortcut (``residual``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int,
        groups: int,
        activation: str,
        residual: bool,
        stride: int = 1,
    ) -> None:
        super().__init__()
        padding = kernel_size // 2
        self.residual = residual
        self.conv1 = nn.Conv1d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False
        )
        self.norm1 = group_norm(groups, out_channels)
        self.act1 = ACTIVATIONS[activation]()
        if residual:
            self.conv2 = nn.Conv1d(
                out_channels, out_channels, kernel_size, padding=padding, bias=False
            )
            self.norm2 = group_norm(groups, out_channels)
            self.shortcut: nn.Module = nn.Identity()
            if in_channels != out_channels or stride != 1:
                self.shortcut = nn.Sequential(
                    nn.Conv1d(in_channels, out_channels, 1, stride=stride, bias=False),
                    group_norm(groups, out_channels),
                )
            self.act2 = ACTIVATIONS[activation]()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(batch, in_channels, samples)`` → ``(batch, out_channels, samples)``."""
        hidden = self.act1(self.norm1(self.conv1(inputs)))
        if not self.residual:
            return hidden
        return self.act2(self.norm2(self.conv2(hidden)) + self.shortcut(inputs))


@dataclass
class CNN1DConfig:
    """A small GroupNorm 1-D CNN for ECGs: conv blocks with 2× max pooling, global average pool.

    Block i has ``width · 2**(i // 2)`` channels (widths double every second block) and kernel
    ``kernel_sizes[i]`` (a single size applies to every block); every block but the last is
    followed by a 2× max pool. With ``residual`` each block is two convs with a shortcut
    (ResNet-style, as in Strodthoff et al.'s resnet1d, with GroupNorm instead of BatchNorm).
    The first conv has stride ``stem_stride``: a 100 Hz 10 s ECG is 1,000 samples, and halving
    them at once halves the cost of the most expensive block at little loss (the 0.5-40 Hz band
    is already smooth at 100 Hz).

    Attributes:
        width: Channels of the first block.
        depth: Number of blocks.
        kernel_sizes: Odd kernel size per block, or one size for all.
        groups: GroupNorm groups (must divide every width); 0 disables normalisation.
        residual: Two convs and a shortcut per block.
        activation: One of ``relu``, ``tanh``, ``gelu``, ``elu``.
        dropout: Dropout probability before the linear head.
        stem_stride: Stride of the first convolution.
    """

    # All four verified against a batch-of-one reference (tests/models/test_ecg_models.py);
    # functorch measured fastest on 12 x 1000 ECGs (experiments/bench_ecg_dp_overhead.py).
    grad_sample_modes: ClassVar[tuple[str, ...]] = ("hooks", "ghost", "functorch", "ew")
    default_grad_sample_mode: ClassVar[str] = "functorch"

    width: int = 32
    depth: int = 4
    kernel_sizes: list[int] = field(default_factory=lambda: [9, 7, 5, 5])
    groups: int = 8
    residual: bool = False
    activation: str = "relu"
    dropout: float = 0.0
    stem_stride: int = 2

    def __post_init__(self) -> None:
        if self.stem_stride < 1:
            raise ConfigError(f"model.stem_stride must be >= 1, got {self.stem_stride}")
        if self.width < 1 or self.depth < 1:
            raise ConfigError(
                f"model.width and model.depth must be >= 1, got {self.width}, {self.depth}"
            )
        sizes = list(self.kernel_sizes)
        if len(sizes) not in (1, self.depth) or any(k < 1 or k % 2 == 0 for k in sizes):
            raise ConfigError(
                f"model.kernel_sizes must be one odd size or {self.depth} (model.depth) odd "
                f"sizes, got {sizes}"
            )
        if self.groups < 0 or any(self.groups and w % self.groups for w in self.widths()):
            raise ConfigError(
                f"model.groups must be 0 or divide every width {self.widths()}, got {self.groups}"
            )
        check_common(self.activation, self.dropout)

    def widths(self) -> list[int]:
        """Channels of each block."""
        return [self.width * 2 ** (index // 2) for index in range(self.depth)]

    def build(self, input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
        """Builds a freshly initialised 1-D CNN (seed torch before calling for reproducibility).

        Args:
            input_shape: ``(leads, samples)`` of one ECG.
            n_outputs: Number of logits.

        Returns:
            The module, mapping ``(batch, leads, samples)`` float32 to ``(batch, n_outputs)``.

        Raises:
            ConfigError: For a non-signal shape or one too short for the pooling stages.

        Example:
            >>> model = CNN1DConfig().build((12, 1000), 5)
            >>> model(torch.zeros(2, 12, 1000)).shape, sum(p.numel() for p in model.parameters())
            (torch.Size([2, 5]), 42053)
        """
        check_signal_shape("cnn1d", input_shape, self.stem_stride * 2 ** (self.depth - 1))
        sizes = list(self.kernel_sizes) * (self.depth if len(self.kernel_sizes) == 1 else 1)
        layers: list[nn.Module] = []
        in_channels = input_shape[0]
        for index, (width, kernel_size) in enumerate(zip(self.widths(), sizes)):
            layers.append(
                ConvBlock1D(
                    in_channels,
                    width,
                    kernel_size=kernel_size,
                    groups=self.groups,
                    activation=self.activation,
                    residual=self.residual,
                    stride=self.stem_stride if index == 0 else 1,
                )
            )
            if index < self.depth - 1:
                layers.append(nn.MaxPool1d(2))
            in_channels = width
        layers += [nn.AdaptiveAvgPool1d(1), nn.Flatten()]
        return ImageClassifier(nn.Sequential(*layers), in_channels, n_outputs, self.dropout)


class Scattering1DFrontend:
    """The fixed 1-D scattering transform of signals of one shape, applied in chunks without grad.

    Attributes:
        input_shape: ``(leads, samples)``.
        J: Scales: the output is ``2**J`` times shorter (the averaging window is ~``2**J``
            samples).
        Q: Wavelets per octave of the first order.
        chunk_size: Records per forward pass.
        name: Identifies the transform.
    """

    def __init__(
        self, input_shape: tuple[int, ...], *, J: int, Q: int, chunk_size: int = 256
    ) -> None:
        check_signal_shape("scatter1d", input_shape, 2**J)
        self.input_shape = tuple(input_shape)
        self.J = J
        self.Q = Q
        self.chunk_size = chunk_size
        self.name = f"scattering1d(J={J},Q={Q})"
        self._scattering: nn.Module | None = None
        self._output_shape: tuple[int, int] | None = None

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, int]:
        """``(leads · K, samples')``: K scattering paths per lead.

        Example:
            >>> Scattering1DFrontend((2, 256), J=4, Q=4).output_shape((2, 256))
            (58, 16)
        """
        if self._output_shape is None:
            probe = self._module()(torch.zeros(1, *self.input_shape[1:]))  # (1, K, samples')
            self._output_shape = (self.input_shape[0] * probe.shape[-2], probe.shape[-1])
        return self._output_shape

    def transform(self, signals: np.ndarray) -> np.ndarray:
        """Scattering coefficients of ``(n, leads, samples)`` float signals.

        Returns:
            ``(n, leads · K, samples')`` float32; lead l's paths are ``[l K, (l + 1) K)``.

        Raises:
            DataError: If the signals do not have the shape this front end was built for.

        Example:
            >>> Scattering1DFrontend((1, 64), J=3, Q=2).transform(np.zeros((3, 1, 64))).shape
            (3, 12, 8)
        """
        if signals.ndim != 3 or tuple(signals.shape[1:]) != self.input_shape:
            raise DataError(
                f"{self.name} was built for signals {self.input_shape}, got a batch of shape "
                f"{signals.shape}"
            )
        signals = np.ascontiguousarray(signals, dtype=np.float32)
        out = np.empty((len(signals), *self.output_shape(self.input_shape)), np.float32)
        scattering = self._module()
        with torch.no_grad():
            for start in range(0, len(signals), self.chunk_size):
                chunk = torch.from_numpy(signals[start : start + self.chunk_size])
                out[start : start + len(chunk)] = scattering(chunk).flatten(1, 2).numpy()
        return out

    def _module(self) -> nn.Module:
        if self._scattering is None:
            from kymatio.scattering1d.frontend.torch_frontend import ScatteringTorch1D

            self._scattering = ScatteringTorch1D(J=self.J, shape=self.input_shape[1], Q=self.Q)
        return self._scattering

    def __getstate__(self) -> dict:
        # The filter bank is rebuilt on first use; worker processes need not receive it.
        return {**self.__dict__, "_scattering": None}


@dataclass
class Scatter1DConfig:
    """Scattering-1D front end (`frontend`, fixed) and a small trained head (`build`).

    The head normalises the scattering channels within each record (parameter-free GroupNorm),
    then either a linear layer on the flattened coefficients (``linear``) or one conv
    → GroupNorm → activation block, global average pooling and a linear layer (``cnn``).

    Attributes:
        J: Scattering scales (output ``2**J`` times shorter).
        Q: First-order wavelets per octave.
        head: ``linear`` or ``cnn``.
        norm_groups: Groups of the parameter-free GroupNorm over the scattering channels; 0
            disables it, and it is skipped where it does not divide the channel count.
        channels: Conv width of the ``cnn`` head.
        kernel_size: Odd kernel size of the ``cnn`` head.
        groups: GroupNorm groups after the ``cnn`` head's conv; 0 disables them.
        activation: One of ``relu``, ``tanh``, ``gelu``, ``elu``.
        dropout: Dropout probability before the output layer.
        chunk_size: Records per scattering forward pass.
    """

    # All four verified against a batch-of-one reference; ew had the lowest median step time on
    # the PTB-XL head (experiments/bench_ecg_dp_overhead.py, a noisy shared machine).
    grad_sample_modes: ClassVar[tuple[str, ...]] = ("hooks", "ghost", "functorch", "ew")
    default_grad_sample_mode: ClassVar[str] = "ew"

    J: int = 5
    Q: int = 4
    head: str = "cnn"
    norm_groups: int = 0
    channels: int = 32
    kernel_size: int = 3
    groups: int = 8
    activation: str = "relu"
    dropout: float = 0.0
    chunk_size: int = 256

    def __post_init__(self) -> None:
        if self.J < 1 or self.Q < 1:
            raise ConfigError(f"model.J and model.Q must be >= 1, got J={self.J}, Q={self.Q}")
        if self.head not in SIGNAL_HEADS:
            raise ConfigError(f"model.head must be one of {list(SIGNAL_HEADS)}, got {self.head!r}")
        if self.norm_groups < 0:
            raise ConfigError(f"model.norm_groups must be >= 0, got {self.norm_groups}")
        if self.channels < 1:
            raise ConfigError(f"model.channels must be >= 1, got {self.channels}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ConfigError(f"model.kernel_size must be odd and >= 1, got {self.kernel_size}")
        if self.groups < 0 or (self.groups and self.channels % self.groups):
            raise ConfigError(
                f"model.groups must be 0 or divide model.channels={self.channels}, got "
                f"{self.groups}"
            )
        check_common(self.activation, self.dropout)
        if self.chunk_size < 1:
            raise ConfigError(f"model.chunk_size must be >= 1, got {self.chunk_size}")

    def frontend(self, input_shape: tuple[int, ...]) -> Scattering1DFrontend:
        """The fixed transform for signals of ``input_shape`` ``(leads, samples)``.

        Example:
            >>> Scatter1DConfig(J=3, Q=2).frontend((12, 64)).output_shape((12, 64))
            (144, 8)
        """
        return Scattering1DFrontend(input_shape, J=self.J, Q=self.Q, chunk_size=self.chunk_size)

    def build(self, input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
        """Builds a freshly initialised head for scattering coefficients of ``input_shape``.

        Args:
            input_shape: ``(leads · K, samples')``, the front end's output shape.
            n_outputs: Number of logits.

        Returns:
            The head, mapping ``(batch, leads · K, samples')`` to ``(batch, n_outputs)``.

        Example:
            >>> Scatter1DConfig().build((144, 8), 5)(torch.zeros(2, 144, 8)).shape
            torch.Size([2, 5])
        """
        check_signal_shape("scatter1d", input_shape, 1)
        channels, samples = input_shape
        layers: list[nn.Module] = []
        if self.norm_groups and channels % self.norm_groups == 0:
            layers.append(nn.GroupNorm(self.norm_groups, channels, affine=False))
        if self.head == "linear":
            layers.append(nn.Flatten())
            width = channels * samples
        else:
            layers += [
                nn.Conv1d(channels, self.channels, self.kernel_size, padding=self.kernel_size // 2),
                group_norm(self.groups, self.channels),
                ACTIVATIONS[self.activation](),
                nn.AdaptiveAvgPool1d(1),
                nn.Flatten(),
            ]
            width = self.channels
        return ImageClassifier(nn.Sequential(*layers), width, n_outputs, self.dropout)
