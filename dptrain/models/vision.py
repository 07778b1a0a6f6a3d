"""GroupNorm CNN and ResNet for images ``(C, H, W)``, built from config, with no BatchNorm.

BatchNorm mixes the records of a batch, so one record's gradient depends on the others and
per-sample clipping no longer bounds its influence; GroupNorm normalises within a record. Weight
standardisation (Qiao et al. 2019), used with GroupNorm by De et al. 2022 for DP-SGD, standardises
each output filter of a convolution before use; Opacus computes its per-sample gradients through
the standardisation with functorch (the layer is not one of its built-in ones).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from dptrain.errors import ConfigError
from dptrain.models.mlp import ACTIVATIONS
from dptrain.models.weights import load_pretrained_weights

POOLS: dict[str, type[nn.Module]] = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}
CNN_HEADS = ("avg", "flatten")
RESNET_DEPTHS = (9, 18)
RESNET_STEMS = ("auto", "small", "large")
# Inputs at least this large get the ImageNet stem (stride-2 7x7 conv and max pool) under "auto".
LARGE_STEM_MIN_SIZE = 128
MIN_IMAGE_SIZE = 8


class WSConv2d(nn.Conv2d):
    """Conv2d whose filters are standardised (zero mean, unit variance per output channel)."""

    eps: float = 1e-5

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Convolves with the standardised weight."""
        weight = self.weight
        mean = weight.mean(dim=(1, 2, 3), keepdim=True)
        variance = weight.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
        return self._conv_forward(
            inputs, (weight - mean) * torch.rsqrt(variance + self.eps), self.bias
        )


class ImageClassifier(nn.Module):
    """Feature extractor, optional dropout, then a linear ``head``.

    Pretrained weights whose head has another number of outputs leave ``head`` fresh.
    """

    def __init__(self, features: nn.Module, width: int, n_outputs: int, dropout: float) -> None:
        super().__init__()
        self.features = features
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.head = nn.Linear(width, n_outputs)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(batch, C, H, W)`` images to ``(batch, n_outputs)`` logits."""
        return self.head(self.dropout(self.features(images)))


def conv_layer(
    in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1, ws: bool
) -> nn.Conv2d:
    """A same-padded convolution, weight-standardised when ``ws``; no bias (a norm follows)."""
    conv = WSConv2d if ws else nn.Conv2d
    return conv(
        in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False
    )


def group_norm(groups: int, channels: int) -> nn.Module:
    """GroupNorm with ``groups`` groups, or nothing for ``groups = 0``."""
    return nn.GroupNorm(groups, channels) if groups else nn.Identity()


def check_image_shape(model: str, input_shape: tuple[int, ...], min_size: int) -> None:
    """Raises a ConfigError unless ``input_shape`` is ``(C, H, W)`` with H, W >= ``min_size``."""
    if len(input_shape) != 3 or min(input_shape[1:]) < min_size:
        raise ConfigError(
            f"model={model} needs image records (C, H, W) with H, W >= {min_size}, got "
            f"{tuple(input_shape)} (use model=mlp for tables)"
        )


def check_groups(field_name: str, groups: int, widths: list[int]) -> None:
    """Raises a ConfigError unless ``groups`` (0: no norm) divides every width."""
    if groups < 0 or any(groups and width % groups for width in widths):
        raise ConfigError(
            f"model.{field_name} must be 0 or divide every channel count {widths}, got {groups}"
        )


def check_common(activation: str, dropout: float) -> None:
    """Validates the options shared by every image model."""
    if activation not in ACTIVATIONS:
        raise ConfigError(
            f"model.activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}"
        )
    if not 0 <= dropout < 1:
        raise ConfigError(f"model.dropout must be in [0, 1), got {dropout}")


@dataclass
class CNNConfig:
    """A small GroupNorm CNN: conv blocks with pooling between them, then a linear head.

    Block i is conv (``kernel_size``, same padding) → GroupNorm → activation, followed by a 2×2
    pool except after the last block; the head global-average-pools (``avg``) or flattens.

    Attributes:
        channels: Output channels of each conv block.
        kernel_size: Odd convolution kernel size.
        groups: GroupNorm groups (must divide every channel count); 0 disables normalisation.
        activation: One of ``relu``, ``tanh``, ``gelu``, ``elu`` (tanh often trains better under
            DP-SGD: bounded activations keep per-sample gradients small).
        pool: ``max`` or ``avg`` pooling between blocks.
        head: ``avg`` (global average pool, any input size) or ``flatten``.
        weight_standardization: Standardise each conv filter (De et al. 2022).
        dropout: Dropout probability before the head.
        pretrained_path: Local state dict (``torch.save(model.state_dict(), path)``) to start from.
    """

    # "ew" is not listed: torch's ExpandedWeights cannot differentiate weight standardisation.
    grad_sample_modes: ClassVar[tuple[str, ...]] = ("hooks", "ghost", "functorch")
    # Measured with experiments/bench_image_dp_overhead.py (16-32-64, 28x28): hooks ~15% faster
    # than ghost.
    default_grad_sample_mode: ClassVar[str] = "hooks"

    channels: list[int] = field(default_factory=lambda: [16, 32, 64])
    kernel_size: int = 3
    groups: int = 8
    activation: str = "tanh"
    pool: str = "max"
    head: str = "avg"
    weight_standardization: bool = False
    dropout: float = 0.0
    pretrained_path: str | None = None

    def __post_init__(self) -> None:
        if not self.channels or any(width < 1 for width in self.channels):
            raise ConfigError(
                f"model.channels must be a non-empty list of widths >= 1, got {list(self.channels)}"
            )
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ConfigError(f"model.kernel_size must be odd and >= 1, got {self.kernel_size}")
        check_groups("groups", self.groups, list(self.channels))
        check_common(self.activation, self.dropout)
        if self.pool not in POOLS:
            raise ConfigError(f"model.pool must be one of {sorted(POOLS)}, got {self.pool!r}")
        if self.head not in CNN_HEADS:
            raise ConfigError(f"model.head must be one of {list(CNN_HEADS)}, got {self.head!r}")

    def build(self, input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
        """Builds a freshly initialised CNN (seed torch before calling for reproducibility).

        Args:
            input_shape: ``(C, H, W)`` of one image, H and W at least 8.
            n_outputs: Number of logits.

        Returns:
            The module, mapping ``(batch, C, H, W)`` float32 to ``(batch, n_outputs)`` logits.

        Raises:
            ConfigError: For a non-image shape, or one too small for the pooling stages.

        Example:
            >>> import torch
            >>> model = CNNConfig(channels=[8, 16]).build((1, 28, 28), 2)
            >>> model(torch.zeros(3, 1, 28, 28)).shape
            torch.Size([3, 2])
        """
        n_pools = len(self.channels) - 1
        check_image_shape("cnn", input_shape, max(MIN_IMAGE_SIZE, 2**n_pools))
        layers: list[nn.Module] = []
        in_channels = input_shape[0]
        for index, width in enumerate(self.channels):
            layers += [
                conv_layer(in_channels, width, self.kernel_size, ws=self.weight_standardization),
                group_norm(self.groups, width),
                ACTIVATIONS[self.activation](),
            ]
            if index < n_pools:
                layers.append(POOLS[self.pool](2))
            in_channels = width
        features_width = in_channels
        if self.head == "avg":
            layers.append(nn.AdaptiveAvgPool2d(1))
        else:
            height, width = (size // 2**n_pools for size in input_shape[1:])
            features_width *= height * width
        layers.append(nn.Flatten())
        model = ImageClassifier(nn.Sequential(*layers), features_width, n_outputs, self.dropout)
        if self.pretrained_path is not None:
            load_pretrained_weights(model, self.pretrained_path)
        return model


class BasicBlock(nn.Module):
    """Two 3×3 convs with GroupNorm and a residual connection (He et al. 2016), no BatchNorm."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int,
        groups: int,
        activation: str,
        ws: bool,
    ) -> None:
        super().__init__()
        self.conv1 = conv_layer(in_channels, out_channels, 3, stride=stride, ws=ws)
        self.norm1 = group_norm(groups, out_channels)
        self.act1 = ACTIVATIONS[activation]()
        self.conv2 = conv_layer(out_channels, out_channels, 3, ws=ws)
        self.norm2 = group_norm(groups, out_channels)
        self.act2 = ACTIVATIONS[activation]()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                conv_layer(in_channels, out_channels, 1, stride=stride, ws=ws),
                group_norm(groups, out_channels),
            )

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """``act(norm(conv(act(norm(conv(x))))) + shortcut(x))``."""
        hidden = self.act1(self.norm1(self.conv1(inputs)))
        return self.act2(self.norm2(self.conv2(hidden)) + self.shortcut(inputs))


@dataclass
class ResNetConfig:
    """A GroupNorm ResNet in plain torch: ResNet-18 (He et al. 2016) or ResNet-9 (Myrtle) layout.

    ``depth=18``: a stem, then stages of two `BasicBlock` each at widths ``width × (1, 2, 4, 8)``,
    each stage after the first halving the resolution. ``depth=9``: the ResNet-9 common in DP-SGD
    work: stem, conv+pool to 2w with one residual block, conv+pool to 4w, conv+pool to 8w with one
    residual block. Both end in a global average pool and a linear head. The stem is a 3×3 conv
    for small images and the ImageNet 7×7 stride-2 conv + max pool for large ones.

    Attributes:
        depth: 9 or 18.
        blocks: Blocks per stage of the ResNet-18 layout (e.g. ``[1, 1]`` for a tiny net); set, it
            replaces ``depth``.
        width: Channels of the stem (the first stage's width).
        groups: GroupNorm groups (must divide every width); 0 disables normalisation.
        activation: One of ``relu``, ``tanh``, ``gelu``, ``elu``.
        stem: ``small`` (3×3, stride 1), ``large`` (7×7 stride 2 + max pool) or ``auto`` (large
            from 128×128 up).
        weight_standardization: Standardise each conv filter (De et al. 2022).
        dropout: Dropout probability before the head.
        pretrained_path: Local state dict (``torch.save(model.state_dict(), path)``) to start from.
    """

    # "ew" is not listed: torch's ExpandedWeights cannot differentiate weight standardisation.
    grad_sample_modes: ClassVar[tuple[str, ...]] = ("ghost", "hooks", "functorch")
    # Measured with experiments/bench_image_dp_overhead.py (width 16, 28x28): ghost ~20% faster.
    default_grad_sample_mode: ClassVar[str] = "ghost"

    depth: int = 18
    blocks: list[int] | None = None
    width: int = 32
    groups: int = 8
    activation: str = "relu"
    stem: str = "auto"
    weight_standardization: bool = False
    dropout: float = 0.0
    pretrained_path: str | None = None

    def __post_init__(self) -> None:
        if self.depth not in RESNET_DEPTHS:
            raise ConfigError(f"model.depth must be one of {list(RESNET_DEPTHS)}, got {self.depth}")
        if self.blocks is not None and (not self.blocks or min(self.blocks) < 1):
            raise ConfigError(
                f"model.blocks must be null or a non-empty list of counts >= 1, got "
                f"{list(self.blocks)}"
            )
        if self.width < 1:
            raise ConfigError(f"model.width must be >= 1, got {self.width}")
        check_groups("groups", self.groups, self.stage_widths())
        check_common(self.activation, self.dropout)
        if self.stem not in RESNET_STEMS:
            raise ConfigError(f"model.stem must be one of {list(RESNET_STEMS)}, got {self.stem!r}")

    def stage_widths(self) -> list[int]:
        """Channels of the stem and of each stage."""
        n_stages = 3 if self.blocks is None and self.depth == 9 else len(self.blocks or [2] * 4)
        first = 0 if self.blocks is None and self.depth == 9 else 1
        return [self.width] + [self.width * 2 ** (stage + 1 - first) for stage in range(n_stages)]

    def build(self, input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
        """Builds a freshly initialised ResNet (seed torch before calling for reproducibility).

        Args:
            input_shape: ``(C, H, W)`` of one image, H and W at least 8.
            n_outputs: Number of logits.

        Returns:
            The module, mapping ``(batch, C, H, W)`` float32 to ``(batch, n_outputs)`` logits.

        Raises:
            ConfigError: For a non-image shape.

        Example:
            >>> import torch
            >>> model = ResNetConfig(blocks=[1, 1], width=8, groups=4).build((3, 32, 32), 5)
            >>> model(torch.zeros(2, 3, 32, 32)).shape
            torch.Size([2, 5])
        """
        check_image_shape("resnet", input_shape, MIN_IMAGE_SIZE)
        large = self.stem == "large" or (
            self.stem == "auto" and min(input_shape[1:]) >= LARGE_STEM_MIN_SIZE
        )
        ws = self.weight_standardization
        widths = self.stage_widths()
        layers: list[nn.Module] = [
            conv_layer(
                input_shape[0], self.width, 7 if large else 3, stride=2 if large else 1, ws=ws
            ),
            group_norm(self.groups, self.width),
            ACTIVATIONS[self.activation](),
        ]
        if large:
            layers.append(nn.MaxPool2d(3, stride=2, padding=1))
        if self.blocks is None and self.depth == 9:
            for width, residual in zip(widths[1:], (True, False, True)):
                layers += [
                    conv_layer(layers_width(layers), width, 3, ws=ws),
                    group_norm(self.groups, width),
                    ACTIVATIONS[self.activation](),
                    nn.MaxPool2d(2),
                ]
                if residual:
                    layers.append(self._block(width, width, 1))
        else:
            for stage, (width, count) in enumerate(zip(widths[1:], self.blocks or [2] * 4)):
                for index in range(count):
                    stride = 2 if stage > 0 and index == 0 else 1
                    layers.append(self._block(layers_width(layers), width, stride))
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        model = ImageClassifier(nn.Sequential(*layers), widths[-1], n_outputs, self.dropout)
        if self.pretrained_path is not None:
            load_pretrained_weights(model, self.pretrained_path)
        return model

    def _block(self, in_channels: int, out_channels: int, stride: int) -> BasicBlock:
        return BasicBlock(
            in_channels,
            out_channels,
            stride=stride,
            groups=self.groups,
            activation=self.activation,
            ws=self.weight_standardization,
        )


def layers_width(layers: list[nn.Module]) -> int:
    """Output channels of the last convolution (or block) in ``layers``."""
    for layer in reversed(layers):
        if isinstance(layer, nn.Conv2d):
            return layer.out_channels
        if isinstance(layer, BasicBlock):
            return layer.conv2.out_channels
    raise ValueError("no convolution in layers")
