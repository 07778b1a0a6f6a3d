"""ScatterNet (Tramèr & Boneh 2021): a fixed scattering transform, then a small trained head.

The scattering transform (kymatio's ``Scattering2D``, J=2 scales, L=8 angles) is fixed and
data-independent, so it costs no privacy and is not part of the trained module: it runs once per
data set, as a front end, and the target and every audit model train only the head on its
output. Tramèr & Boneh show that this beats end-to-end CNNs under DP-SGD below ~500K images.

``import kymatio.torch`` fails with scipy >= 1.17 (its 3-D code imports
``scipy.special.sph_harm``, kymatio issue #1068), so the 2-D torch front end is imported directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from dptrain.errors import ConfigError, DataError
from dptrain.models.mlp import ACTIVATIONS
from dptrain.models.vision import (
    ImageClassifier,
    check_common,
    check_groups,
    check_image_shape,
    group_norm,
)
from dptrain.models.weights import load_pretrained_weights

SCATTER_HEADS = ("linear", "cnn")


def scattering_channels(J: int, L: int) -> int:
    """Coefficients per input channel, K = 1 + J L + L² J (J − 1) / 2 (81 for J=2, L=8).

    Example:
        >>> scattering_channels(2, 8)
        81
    """
    return 1 + J * L + L * L * J * (J - 1) // 2


class ScatteringFrontend:
    """The fixed scattering transform of images of one shape, applied in chunks without grad.

    Attributes:
        input_shape: ``(C, H, W)`` of the images it takes.
        J: Number of scales (the output is ``2**J`` times smaller per side).
        L: Number of angles.
        chunk_size: Images per forward pass (bounds memory).
        name: Identifies the transform (e.g. in a cache key or the report).
    """

    def __init__(
        self, input_shape: tuple[int, ...], *, J: int = 2, L: int = 8, chunk_size: int = 256
    ) -> None:
        check_image_shape("scatternet", input_shape, 2 ** (J + 1))
        self.input_shape = tuple(input_shape)
        self.J = J
        self.L = L
        self.chunk_size = chunk_size
        self.name = f"scattering2d(J={J},L={L})"
        self._scattering: nn.Module | None = None

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
        """``(C K, H // 2**J, W // 2**J)`` for images of ``input_shape`` ``(C, H, W)``.

        Example:
            >>> ScatteringFrontend((1, 28, 28)).output_shape((1, 28, 28))
            (81, 7, 7)
        """
        channels, height, width = input_shape
        scale = 2**self.J
        return (channels * scattering_channels(self.J, self.L), height // scale, width // scale)

    def transform(self, images: np.ndarray) -> np.ndarray:
        """Scattering coefficients of ``images``.

        Args:
            images: ``(n, C, H, W)`` float32 in [0, 1] (uint8 in [0, 255] is scaled to it).

        Returns:
            ``(n, C K, H // 2**J, W // 2**J)`` float32; the K coefficients of channel c are
            ``[c K, (c + 1) K)``.

        Raises:
            DataError: If the images do not have the shape this front end was built for.

        Example:
            >>> import numpy as np
            >>> frontend = ScatteringFrontend((1, 8, 8))
            >>> frontend.transform(np.zeros((2, 1, 8, 8), np.float32)).shape
            (2, 81, 2, 2)
        """
        if images.ndim != 4 or tuple(images.shape[1:]) != self.input_shape:
            raise DataError(
                f"{self.name} was built for images {self.input_shape}, got a batch of shape "
                f"{images.shape} (build the front end with the data set's record shape)"
            )
        if images.dtype == np.uint8:
            images = images.astype(np.float32) / 255.0
        images = np.ascontiguousarray(images, dtype=np.float32)
        out = np.empty((len(images), *self.output_shape(self.input_shape)), dtype=np.float32)
        scattering = self._module()
        with torch.no_grad():
            for start in range(0, len(images), self.chunk_size):
                chunk = torch.from_numpy(images[start : start + self.chunk_size])
                coefficients = scattering(chunk)  # (n, C, K, H', W')
                out[start : start + len(chunk)] = coefficients.flatten(1, 2).numpy()
        return out

    def _module(self) -> nn.Module:
        if self._scattering is None:
            from kymatio.scattering2d.frontend.torch_frontend import ScatteringTorch2D

            self._scattering = ScatteringTorch2D(
                J=self.J, shape=tuple(self.input_shape[1:]), L=self.L
            )
        return self._scattering

    def __getstate__(self) -> dict:
        # The filter bank is rebuilt on first use; worker processes need not receive it.
        return {**self.__dict__, "_scattering": None}


class ScatterHead(nn.Module):
    """The trained part of a ScatterNet: per-record GroupNorm, then a classifier.

    The GroupNorm has no affine parameters and normalises the scattering channels within a record.
    """

    def __init__(self, norm: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.norm = norm
        self.classifier = classifier

    def forward(self, coefficients: torch.Tensor) -> torch.Tensor:
        """``(batch, C K, h, w)`` scattering coefficients to ``(batch, n_outputs)`` logits."""
        return self.classifier(self.norm(coefficients))


@dataclass
class ScatterNetConfig:
    """ScatterNet: fixed scattering front end (`frontend`) and a trained head (`build`).

    The ``cnn`` head follows Tramèr & Boneh's: 3×3 conv → GroupNorm → activation blocks with a
    2×2 max pool after the first, flattened into a hidden linear layer and the output layer.

    Attributes:
        J: Scattering scales; the front end shrinks each side by ``2**J``.
        L: Scattering angles.
        head: ``linear`` (logistic regression on the coefficients) or ``cnn``.
        norm_groups: Groups of the parameter-free GroupNorm over the scattering channels (must
            divide ``C K``; 27 for K = 81); 0 disables it.
        channels: Conv widths of the ``cnn`` head.
        groups: GroupNorm groups after each conv of the ``cnn`` head; 0 disables them.
        hidden: Hidden linear width of the ``cnn`` head; 0 goes straight to the outputs.
        activation: One of ``relu``, ``tanh``, ``gelu``, ``elu`` (``cnn`` head).
        dropout: Dropout probability before the output layer.
        chunk_size: Images per scattering forward pass.
        pretrained_path: Local state dict of the head to start from.
    """

    grad_sample_modes: ClassVar[tuple[str, ...]] = ("hooks", "ghost", "functorch", "ew")
    # Measured with experiments/bench_image_dp_overhead.py (linear head, 28x28): hooks ~10% faster
    # than ghost; "ew" is as fast but fails on an empty Poisson-sampled batch.
    default_grad_sample_mode: ClassVar[str] = "hooks"

    J: int = 2
    L: int = 8
    head: str = "linear"
    norm_groups: int = 27
    channels: list[int] = field(default_factory=lambda: [32, 64])
    groups: int = 8
    hidden: int = 32
    activation: str = "tanh"
    dropout: float = 0.0
    chunk_size: int = 256
    pretrained_path: str | None = None

    def __post_init__(self) -> None:
        if self.J < 1 or self.L < 1:
            raise ConfigError(f"model.J and model.L must be >= 1, got J={self.J}, L={self.L}")
        if self.head not in SCATTER_HEADS:
            raise ConfigError(f"model.head must be one of {list(SCATTER_HEADS)}, got {self.head!r}")
        if self.norm_groups < 0:
            raise ConfigError(f"model.norm_groups must be >= 0, got {self.norm_groups}")
        if not self.channels or min(self.channels) < 1:
            raise ConfigError(
                f"model.channels must be a non-empty list of widths >= 1, got {list(self.channels)}"
            )
        check_groups("groups", self.groups, list(self.channels))
        if self.hidden < 0:
            raise ConfigError(f"model.hidden must be >= 0, got {self.hidden}")
        check_common(self.activation, self.dropout)
        if self.chunk_size < 1:
            raise ConfigError(f"model.chunk_size must be >= 1, got {self.chunk_size}")

    def frontend(self, input_shape: tuple[int, ...]) -> ScatteringFrontend:
        """The fixed transform for images of ``input_shape`` ``(C, H, W)``.

        `build` takes the front end's ``output_shape(input_shape)``, not the image shape.

        Example:
            >>> ScatterNetConfig().frontend((3, 28, 28)).output_shape((3, 28, 28))
            (243, 7, 7)
        """
        return ScatteringFrontend(input_shape, J=self.J, L=self.L, chunk_size=self.chunk_size)

    def build(self, input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
        """Builds a freshly initialised head for scattering coefficients of ``input_shape``.

        Args:
            input_shape: ``(C K, h, w)``, the front end's output shape (not the image shape).
            n_outputs: Number of logits.

        Returns:
            The head, mapping ``(batch, C K, h, w)`` float32 to ``(batch, n_outputs)`` logits.

        Raises:
            ConfigError: For a shape that is not a scattering output this config can take.

        Example:
            >>> import torch
            >>> head = ScatterNetConfig(head="cnn").build((81, 7, 7), 2)
            >>> head(torch.zeros(3, 81, 7, 7)).shape
            torch.Size([3, 2])
        """
        if len(input_shape) != 3 or min(input_shape[1:]) < 1:
            raise ConfigError(
                f"model=scatternet builds its head for scattering coefficients (C K, h, w), got "
                f"{tuple(input_shape)}: apply model.frontend(image_shape) to the images first"
            )
        channels, height, width = input_shape
        if self.norm_groups and channels % self.norm_groups:
            raise ConfigError(
                f"model.norm_groups={self.norm_groups} must divide the {channels} scattering "
                "channels (27 does for J=2, L=8), or be 0"
            )
        norm = (
            nn.GroupNorm(self.norm_groups, channels, affine=False)
            if self.norm_groups
            else nn.Identity()
        )
        if self.head == "linear":
            classifier = ImageClassifier(
                nn.Flatten(), channels * height * width, n_outputs, self.dropout
            )
        else:
            classifier = self._cnn_head(input_shape, n_outputs)
        model = ScatterHead(norm, classifier)
        if self.pretrained_path is not None:
            load_pretrained_weights(model, self.pretrained_path)
        return model

    def _cnn_head(self, input_shape: tuple[int, ...], n_outputs: int) -> ImageClassifier:
        in_channels, height, width = input_shape
        layers: list[nn.Module] = []
        for index, out_channels in enumerate(self.channels):
            layers += [
                nn.Conv2d(in_channels, out_channels, 3, padding=1),
                group_norm(self.groups, out_channels),
                ACTIVATIONS[self.activation](),
            ]
            if index == 0 and min(height, width) >= 2:
                layers.append(nn.MaxPool2d(2))
                height, width = height // 2, width // 2
            in_channels = out_channels
        layers.append(nn.Flatten())
        features = in_channels * height * width
        if self.hidden:
            layers += [nn.Linear(features, self.hidden), ACTIVATIONS[self.activation]()]
            features = self.hidden
        return ImageClassifier(nn.Sequential(*layers), features, n_outputs, self.dropout)
