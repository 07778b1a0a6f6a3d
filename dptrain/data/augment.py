"""Training-only image augmentations on normalised float batches, seeded, in plain torch.

Configured as a list of names with an optional argument, e.g. ``[hflip, "crop:2", "rotate:10"]``.
Augmentation is applied to the records of a training batch only (never to evaluation or audit
queries); with ``train.augment_multiplicity = k`` each record contributes the average gradient of k
views, taken before clipping (De et al. 2022), so the privacy unit and its sensitivity are
unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dptrain.errors import ConfigError


@dataclass(frozen=True)
class HorizontalFlip:
    """Mirrors each image left-right with probability ½."""

    def __call__(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One random view of ``(n, C, H, W)``."""
        flip = torch.rand(len(batch), generator=generator) < 0.5
        return torch.where(flip[:, None, None, None], batch.flip(-1), batch)


@dataclass(frozen=True)
class VerticalFlip:
    """Mirrors each image top-bottom with probability ½ (not for chest X-rays)."""

    def __call__(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One random view of ``(n, C, H, W)``."""
        flip = torch.rand(len(batch), generator=generator) < 0.5
        return torch.where(flip[:, None, None, None], batch.flip(-2), batch)


@dataclass(frozen=True)
class RandomCrop:
    """Pads by ``padding`` pixels (edge values repeated) and crops back at a random offset."""

    padding: int

    def __call__(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One random view of ``(n, C, H, W)``."""
        n, _, height, width = batch.shape
        padded = F.pad(batch, (self.padding,) * 4, mode="replicate")
        offsets = torch.randint(0, 2 * self.padding + 1, (n, 2), generator=generator)
        return torch.stack(
            [
                padded[i, :, top : top + height, left : left + width]
                for i, (top, left) in enumerate(offsets.tolist())
            ]
        )


@dataclass(frozen=True)
class RandomRotation:
    """Rotates each image by a uniform random angle in ±``degrees`` (bilinear, border fill)."""

    degrees: float

    def __call__(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One random view of ``(n, C, H, W)``."""
        angles = (torch.rand(len(batch), generator=generator) * 2 - 1) * math.radians(self.degrees)
        cos, sin = torch.cos(angles), torch.sin(angles)
        zeros = torch.zeros_like(cos)
        theta = torch.stack(
            [torch.stack([cos, -sin, zeros], 1), torch.stack([sin, cos, zeros], 1)], 1
        )
        grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
        return F.grid_sample(batch, grid, padding_mode="border", align_corners=False)


Augmentation = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
AUGMENTATIONS: dict[str, Callable[..., Augmentation]] = {
    "hflip": HorizontalFlip,
    "vflip": VerticalFlip,
    "crop": lambda padding="2": RandomCrop(int(padding)),
    "rotate": lambda degrees="10": RandomRotation(float(degrees)),
}


def parse_augmentations(names: tuple[str, ...] | list[str]) -> tuple[Augmentation, ...]:
    """Builds the augmentations named in config (``name`` or ``name:argument``).

    Example:
        >>> parse_augmentations(["hflip", "crop:3"])
        (HorizontalFlip(), RandomCrop(padding=3))

    Raises:
        ConfigError: For an unknown name or a bad argument, naming the valid choices.
    """
    built = []
    for entry in names:
        name, _, argument = str(entry).partition(":")
        if name not in AUGMENTATIONS:
            raise ConfigError(
                f"data.augment: unknown augmentation {entry!r}; choose from "
                f"{sorted(AUGMENTATIONS)} (e.g. hflip, crop:2, rotate:10)"
            )
        try:
            augmentation = AUGMENTATIONS[name](argument) if argument else AUGMENTATIONS[name]()
        except (TypeError, ValueError) as error:
            raise ConfigError(
                f"data.augment: bad argument in {entry!r} ({error}); e.g. crop:2 or rotate:10"
            ) from error
        if isinstance(augmentation, RandomCrop) and augmentation.padding < 1:
            raise ConfigError(f"data.augment: crop padding must be >= 1, got {entry!r}")
        if isinstance(augmentation, RandomRotation) and not 0 < augmentation.degrees <= 180:
            raise ConfigError(f"data.augment: rotate degrees must be in (0, 180], got {entry!r}")
        built.append(augmentation)
    return tuple(built)
