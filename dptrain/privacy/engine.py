"""Opacus wiring: the one place that turns a model, optimiser, loss and loader into DP-SGD.

Opacus replaces the loader with Poisson sampling at rate q = 1 / len(loader) (the rate the
accountant assumes), wraps the model to compute per-sample gradient norms, and the optimiser to
clip them and add Gaussian noise. The noise multiplier comes in already calibrated (see
`dptrain.privacy.accounting.calibrate_noise`, the calibration `make_private_with_epsilon` runs).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from opacus import PrivacyEngine
from opacus.validators import ModuleValidator
from torch import nn
from torch.utils.data import DataLoader

from dptrain.errors import ConfigError
from dptrain.privacy.patient import PatientPrivacyEngine


@dataclass
class TrainingParts:
    """The objects a training loop runs on: plain, or made private by Opacus.

    Attributes:
        module: The model (private: wrapped to compute per-sample gradient norms).
        optimizer: The optimiser (private: clips per-sample gradients and adds noise).
        criterion: The loss (ghost clipping: a wrapper that runs the two backward passes).
        data_loader: The loader (private: Poisson sampling).
        engine: The privacy engine whose accountant recorded every step; None when not private.
    """

    module: nn.Module
    optimizer: torch.optim.Optimizer
    criterion: nn.Module
    data_loader: DataLoader
    engine: PrivacyEngine | None = None


def make_private(
    parts: TrainingParts,
    *,
    noise_multiplier: float,
    max_grad_norm: float,
    grad_sample_mode: str,
    accountant: str,
    noise_seed: int,
    device: torch.device | None = None,
    unit: str = "record",
) -> TrainingParts:
    """Makes the training objects private with Opacus' `PrivacyEngine.make_private`.

    Args:
        parts: The plain model (must pass Opacus' validator: no BatchNorm), its optimiser, a loss
            with a ``reduction`` attribute (``mean``) and a loader with the logical batch size.
        noise_multiplier: σ.
        max_grad_norm: Clipping norm C.
        grad_sample_mode: ``ghost``, ``hooks``, ``functorch`` or ``ew``.
        accountant: ``prv`` or ``rdp``; records each step.
        noise_seed: Seed of the noise generator (reproducible runs; not secure mode).
        device: The model's device; the noise generator must live there.
        unit: ``record``, or ``patient``: the loader's items are patients and the optimiser
            clips each patient's summed gradient (`PatientPrivacyEngine`).

    Returns:
        The private parts, with the engine.

    Raises:
        ConfigError: If the model has layers Opacus cannot make private (e.g. BatchNorm).
    """
    errors = ModuleValidator.validate(parts.module, strict=False)
    if errors:
        raise ConfigError(
            f"model is not DP-compatible: {errors[0]} (use GroupNorm or LayerNorm, not BatchNorm)"
        )
    noise_generator = torch.Generator(device=device or "cpu").manual_seed(noise_seed)
    with warnings.catch_warnings():
        # Opacus warns that a seeded generator is not secure randomness; reproducibility is the
        # point here, and the warning would repeat for every audit model.
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        engine_class = PatientPrivacyEngine if unit == "patient" else PrivacyEngine
        engine = engine_class(accountant=accountant)
        private = engine.make_private(
            module=parts.module,
            optimizer=parts.optimizer,
            criterion=parts.criterion,
            data_loader=parts.data_loader,
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            grad_sample_mode=grad_sample_mode,
            poisson_sampling=True,
            noise_generator=noise_generator,
        )
    if grad_sample_mode == "ghost":
        module, optimizer, criterion, data_loader = private
    else:
        (module, optimizer, data_loader), criterion = private, parts.criterion
    return TrainingParts(
        module=module,
        optimizer=optimizer,
        criterion=criterion,
        data_loader=data_loader,
        engine=engine,
    )
