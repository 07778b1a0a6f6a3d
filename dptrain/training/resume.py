"""Resumable training: the deployed model's state every N epochs, so a killed run continues.

``training_state.pt`` in the run directory holds everything the rest of the run depends on: the
module's and the (original, non-DP) optimiser's state, the epochs done and their log, the Opacus
accountant's history of (σ, q, steps), the states of every random generator that decides what
comes next (Poisson sampler / loader, DP noise, augmentation, patient record subsampling, torch's
forked global RNG), the parameters' moving average and, with early stopping, the best epoch so far
with its validation score and weights. Restoring all of them makes a resumed run take exactly the
steps an uninterrupted one takes, so its weights and ε are the same, and the accountant is neither
charged twice for the epochs before the kill nor missing them.

The file is keyed by a fingerprint of the recipe, the seed, the privacy plan and the training
(and validation) data's content: a state from another run (or a corrupt file) is ignored with a
warning and the run trains from scratch. Reading the live state (``get_state``, ``state_dict``)
draws no random numbers, so writing checkpoints does not change a run's numbers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import opacus
import torch
from torch import nn

from dptrain.atomic import atomic_write
from dptrain.data.cohort import Cohort
from dptrain.privacy.engine import TrainingParts
from dptrain.privacy.plan import PrivacyPlan
from dptrain.training.config import TrainConfig

log = logging.getLogger(__name__)
TRAINING_STATE_FILE = "training_state.pt"
STATE_FORMAT = 2  # 2: epoch rows carry the validation score; early stopping's best epoch
# Settings that change neither the steps nor their numbers: a run may resume with other values.
UNFINGERPRINTED_TRAIN_FIELDS = ("threads", "checkpoint_every")


def training_fingerprint(
    *,
    cohort: Cohort,
    model_factory: object,
    train: TrainConfig,
    plan: PrivacyPlan,
    seed: int,
    device: torch.device,
    validation: Cohort | None = None,
) -> str:
    """Hash of what decides a training run's numbers: recipe, seed, plan, data content, versions.

    The data enter by content (records, labels, patients, preprocessing), as in the audit's
    `recipe_fingerprint`: a config names files whose contents may change. The validation
    patients of early stopping enter too: they decide the weights kept.
    """
    train_fields = dataclasses.asdict(train)
    for name in UNFINGERPRINTED_TRAIN_FIELDS:
        train_fields.pop(name, None)
    described = {
        "format": STATE_FORMAT,
        "model": [type(model_factory).__qualname__, _plain(model_factory)],
        "privacy": _plain(plan.privacy),
        "plan": [plan.unit, plan.n_units, plan.noise_multiplier, plan.sample_rate, plan.steps],
        "train": train_fields,
        "seed": seed,
        "device": str(device),
        "versions": [torch.__version__, opacus.__version__],
        "data": cohort.content_digest(),
        "validation": validation.content_digest() if validation is not None else None,
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=repr).encode()).hexdigest()


@dataclass
class TrainingState:
    """What a run had done after ``epoch`` epochs, as read back from ``training_state.pt``.

    Attributes:
        epoch: Epochs completed (1 ≤ epoch ≤ the run's epochs).
        history: One ``(epoch, loss, epsilon_rdp, epsilon, validation)`` row per completed epoch
            (validation: the early-stopping score, None without it).
        payload: The saved states (module, optimizer, accountant, generators, RNG, average,
            early stopping's best epoch).
    """

    epoch: int
    history: list[tuple[int, float, float, float, float | None]]
    payload: dict[str, Any]


class TrainingCheckpoints:
    """Writes and restores one run's training state; the live objects are given once.

    Args:
        path: The state file (``<run dir>/training_state.pt``).
        every: Write after every ``every`` epochs and after the last one.
        epochs: The run's epochs.
        fingerprint: `training_fingerprint` of the run.
        module: The plain module (its parameters are those Opacus' wrapper trains).
        parts: The training parts (the optimiser, the loader, the engine's accountant).
        generators: The run's other generators (augmentation, patient record subsampling; None
            for one it lacks), in a fixed order; the loader's and the noise generator are found
            on ``parts``.
        average: The parameters' moving average, if the run keeps one (``ParameterAverage``).
        selection: Early stopping's `EpochSelection` (best epoch, score and weights so far), if
            the run has one.
    """

    def __init__(
        self,
        *,
        path: Path,
        every: int,
        epochs: int,
        fingerprint: str,
        module: nn.Module,
        parts: TrainingParts,
        generators: Sequence[torch.Generator | None],
        average: Any | None = None,
        selection: Any | None = None,
    ) -> None:
        self.path = Path(path)
        self.every = every
        self.epochs = epochs
        self.fingerprint = fingerprint
        self.module = module
        self.parts = parts
        self.generators = _distinct([*_loader_generators(parts), *generators, _noise(parts)])
        self.average = average
        self.selection = selection

    def due(self, epoch: int) -> bool:
        """Whether to write after ``epoch`` (1-based) epochs."""
        return epoch % self.every == 0 or epoch == self.epochs

    def save(
        self, epoch: int, history: Sequence[tuple[int, float, float, float, float | None]]
    ) -> Path:
        """Writes the state after ``epoch`` epochs atomically (a kill leaves the previous one)."""
        engine = self.parts.engine
        payload = {
            "module": self.module.state_dict(),
            "optimizer": _original_optimizer(self.parts).state_dict(),
            "accountant": engine.accountant.state_dict() if engine is not None else {},
            "generators": [generator.get_state() for generator in self.generators],
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": _cuda_rng_state(self.module),
            "average": list(self.average.average) if self.average is not None else None,
            "selection": self.selection.state() if self.selection is not None else None,
        }
        state = {
            "format": STATE_FORMAT,
            "fingerprint": self.fingerprint,
            "epoch": epoch,
            "history": [list(row) for row in history],
            "payload": payload,
        }
        return atomic_write(self.path, lambda file: torch.save(state, file))

    def restore(self) -> TrainingState | None:
        """Puts the saved state into the live objects; None (nothing changed) without a usable one.

        A missing file returns None quietly; a corrupt file, one of another run, or one that does
        not fit the live objects is logged as a warning and left unused (the run starts over).
        """
        if not self.path.is_file():
            return None
        try:
            state = self._read()
            self._check(state)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError, EOFError) as error:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
            log.warning(
                "ignoring %s (%s): training from scratch; it is replaced at the next checkpoint",
                self.path,
                reason,
            )
            return None
        self._apply(state.payload)
        log.info("resuming training from %s after epoch %d", self.path, state.epoch)
        return state

    def remove(self) -> None:
        """Deletes the state file (the run it belongs to has finished)."""
        self.path.unlink(missing_ok=True)

    def _read(self) -> TrainingState:
        try:
            saved = torch.load(self.path, weights_only=True, map_location="cpu")
        except Exception as error:  # torch raises many types for a file that is not a state
            raise ValueError(f"unreadable: {error}") from error
        if not isinstance(saved, dict) or saved.get("format") != STATE_FORMAT:
            raise ValueError(f"not a format-{STATE_FORMAT} training state")
        if saved.get("fingerprint") != self.fingerprint:
            raise ValueError("saved by a run with another config, seed or data")
        epoch = saved["epoch"]
        if not isinstance(epoch, int) or not 1 <= epoch <= self.epochs:
            raise ValueError(f"epoch {epoch!r} is outside 1..{self.epochs}")
        history = [
            (int(e), float(loss), float(r), float(p), None if v is None else float(v))
            for e, loss, r, p, v in saved["history"]
        ]
        if [row[0] for row in history] != list(range(1, epoch + 1)):
            raise ValueError(f"epoch log does not cover epochs 1..{epoch}")
        return TrainingState(epoch=epoch, history=history, payload=saved["payload"])

    def _check(self, state: TrainingState) -> None:
        """Raises if the saved state does not fit the live objects (before anything changes)."""
        payload = state.payload
        live = self.module.state_dict()
        saved = payload["module"]
        if list(saved) != list(live) or any(
            saved[name].shape != live[name].shape or saved[name].dtype != live[name].dtype
            for name in live
        ):
            raise ValueError("module parameters differ from the model's")
        optimizer = _original_optimizer(self.parts)
        if len(payload["optimizer"]["param_groups"]) != len(optimizer.param_groups):
            raise ValueError("optimizer parameter groups differ")
        generator_states = payload["generators"]
        if len(generator_states) != len(self.generators) or any(
            saved_state.shape != generator.get_state().shape
            for saved_state, generator in zip(generator_states, self.generators)
        ):
            raise ValueError("random generators differ from the run's")
        if (self.parts.engine is not None) != bool(payload["accountant"]):
            raise ValueError("privacy accountant state does not match the run's privacy mode")
        if (self.average is not None) != (payload["average"] is not None):
            raise ValueError("moving average does not match train.ema_decay")
        if (self.selection is not None) != (payload["selection"] is not None):
            raise ValueError("early stopping state does not match train.early_stopping")

    def _apply(self, payload: dict[str, Any]) -> None:
        self.module.load_state_dict(payload["module"])
        _original_optimizer(self.parts).load_state_dict(payload["optimizer"])
        if self.parts.engine is not None:
            self.parts.engine.accountant.load_state_dict(payload["accountant"])
        for generator, generator_state in zip(self.generators, payload["generators"]):
            generator.set_state(generator_state)
        torch.set_rng_state(payload["torch_rng"])
        if payload.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state(payload["cuda_rng"], _device(self.module))
        if self.average is not None:
            with torch.no_grad():
                for average, saved in zip(self.average.average, payload["average"]):
                    average.copy_(saved)
        if self.selection is not None:
            self.selection.load_state(payload["selection"])


def _original_optimizer(parts: TrainingParts) -> torch.optim.Optimizer:
    """The optimiser the config built (Opacus' DPOptimizer wraps it and shares its state)."""
    return getattr(parts.optimizer, "original_optimizer", parts.optimizer)


def _noise(parts: TrainingParts) -> torch.Generator | None:
    return getattr(parts.optimizer, "generator", None)


def _loader_generators(parts: TrainingParts) -> list[torch.Generator | None]:
    """The loader's generators: its own (worker seeds) and its samplers' (shuffle, Poisson)."""
    loader = parts.data_loader
    batch_sampler = getattr(loader, "batch_sampler", None)
    samplers = (loader, batch_sampler, getattr(batch_sampler, "sampler", None), loader.sampler)
    return [getattr(sampler, "generator", None) for sampler in samplers]


def _distinct(generators: Sequence[torch.Generator | None]) -> list[torch.Generator]:
    """The generators without None and repeats (Opacus shares one between loader and sampler)."""
    distinct: list[torch.Generator] = []
    for generator in generators:
        if generator is not None and all(generator is not seen for seen in distinct):
            distinct.append(generator)
    return distinct


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def _cuda_rng_state(module: nn.Module) -> torch.Tensor | None:
    """The CUDA RNG of the module's device (dropout there draws from it), None on the CPU."""
    device = _device(module)
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def _plain(config: object) -> object:
    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else repr(config)
