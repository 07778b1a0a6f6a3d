"""Dirac gradient canaries inside Opacus' own optimiser: what the white-box audit observes.

`attach_dirac_canaries` makes the private optimiser of a run hand m gradient canaries, each
``gradient_norm`` · C on one parameter coordinate of its own and included with probability ½, to
its own clipping whenever the loader's Poisson rate samples them, and records every step's noisy
sum on the canaries' coordinates (`CanaryState.trace`). Nothing of DP-SGD is re-implemented:
Opacus clips the canary rows and noises the sum as it does for records.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from dptrain.errors import ConfigError
from dptrain.privacy.engine import TrainingParts

PER_SAMPLE_MODES = ("hooks", "functorch", "ew")


@dataclass(frozen=True)
class CanaryTrace:
    """What the auditor saw on the canaries' coordinates, step by step.

    Attributes:
        projections: ``(n_canaries, n_steps)`` float64, (noisy gradient sum − the batch's clipped
            sum) / C on each canary's coordinate.
        sampled: ``(n_canaries, n_steps)`` bool, whether the canary's row entered that step.
        included: ``(n_canaries,)`` bool, whether the canary is in the training set.
        coordinates: ``(n_canaries,)`` int64, the canary's index into the flattened parameters.
        sample_rate: The rate the canaries were sampled at (the data loader's).
        run: ``(n_canaries,)`` int64, the training run (model) that held the canary; None for
            one run.
    """

    projections: np.ndarray = field(repr=False)
    sampled: np.ndarray = field(repr=False)
    included: np.ndarray = field(repr=False)
    coordinates: np.ndarray = field(repr=False)
    sample_rate: float
    run: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def pooled(cls, traces: list[CanaryTrace]) -> CanaryTrace:
        """The canaries of several runs (same recipe, hence same steps and rate) as one trace."""
        return cls(
            projections=np.concatenate([t.projections for t in traces]),
            sampled=np.concatenate([t.sampled for t in traces]),
            included=np.concatenate([t.included for t in traces]),
            coordinates=np.concatenate([t.coordinates for t in traces]),
            sample_rate=traces[0].sample_rate,
            run=np.repeat(np.arange(len(traces)), [t.included.size for t in traces]),
        )


class DiracCanaryMixin:
    """Mixed into an Opacus ``DPOptimizer`` class: hands sampled canary rows to its clipping.

    Set up by `attach_dirac_canaries`. ``add_noise`` runs once per logical step, after the
    batch's rows are clipped and summed: it notes the batch's sum on the canary coordinates,
    gives the sampled canaries' rows to the optimiser's own ``clip_and_accumulate`` (so they
    are clipped and summed like any record), lets the optimiser add its noise and notes the noisy
    sum.
    """

    _canaries: CanaryState

    def add_noise(self) -> None:
        """Adds the sampled canaries' clipped rows, then the optimiser's noise; records both."""
        state = self._canaries
        params = self.params  # type: ignore[attr-defined]
        batch_sum = _gather([p.summed_grad for p in params], state.coordinates)
        sampled = state.included & (state.rng.random(state.included.size) < state.sample_rate)
        if sampled.any():
            originals = [p.grad_sample for p in params]
            rows = _canary_rows(
                params, state.coordinates[sampled], state.gradient_norm * self.max_grad_norm
            )
            for p, row in zip(params, rows):
                p.grad_sample = row
            with _own_patients(self, int(sampled.sum())):
                self.clip_and_accumulate()  # type: ignore[attr-defined]
            for p, original in zip(params, originals):
                p.grad_sample = original  # keeps accumulated_iterations for scaling/accounting
        super().add_noise()  # type: ignore[misc]
        noisy_sum = _gather([p.grad for p in params], state.coordinates)
        state.projections.append((noisy_sum - batch_sum) / state.clip_norm)
        state.sampled.append(sampled)


@dataclass
class CanaryState:
    """The canaries of one run and what the optimiser recorded of them, step by step."""

    coordinates: np.ndarray
    included: np.ndarray
    gradient_norm: float
    clip_norm: float
    sample_rate: float
    rng: np.random.Generator
    projections: list[np.ndarray] = field(default_factory=list)
    sampled: list[np.ndarray] = field(default_factory=list)

    def trace(self) -> CanaryTrace:
        """The recorded steps as a trace: ``(m, T)`` projections and sampling."""
        return CanaryTrace(
            projections=np.stack(self.projections, axis=1).astype(np.float64),
            sampled=np.stack(self.sampled, axis=1),
            included=self.included,
            coordinates=self.coordinates,
            sample_rate=self.sample_rate,
        )


def attach_dirac_canaries(
    parts: TrainingParts,
    *,
    num_canaries: int,
    gradient_norm: float,
    rng: np.random.Generator,
) -> None:
    """Turns the private optimiser of ``parts`` into one that also trains on Dirac canaries.

    The optimiser keeps its class's behaviour (it becomes a subclass of its own class with
    `DiracCanaryMixin` first); the canaries are sampled at the rate of the loader's Poisson
    sampler, as a record would be.

    Args:
        parts: Private training parts from `dptrain.privacy.engine.make_private` with per-sample
            gradients (not ghost clipping).
        num_canaries: m, at most the number of trainable parameter coordinates.
        gradient_norm: Each canary's gradient norm before clipping, in units of C (≥ 1: clipped
            to exactly C by a correct implementation).
        rng: Draws the coordinates, the inclusions and each step's sampling.

    Raises:
        ConfigError: If the optimiser has no per-sample gradients or m is out of range.
    """
    optimizer = parts.optimizer
    if not hasattr(optimizer, "clip_and_accumulate") or not hasattr(optimizer, "max_grad_norm"):
        raise ConfigError("white-box canaries need the private optimiser of make_private")
    if "FastGradientClipping" in type(optimizer).__name__:
        raise ConfigError(
            f"white-box canaries need per-sample gradients, got {type(optimizer).__name__}: "
            f"use privacy.grad_sample_mode in {list(PER_SAMPLE_MODES)}"
        )
    n_coordinates = sum(p.numel() for p in optimizer.params)
    if not 1 <= num_canaries <= n_coordinates:
        raise ConfigError(
            f"audit.num_canaries must be in [1, {n_coordinates}] for this model (one parameter "
            f"coordinate per white-box canary), got {num_canaries}"
        )
    if not gradient_norm >= 1:
        raise ConfigError(f"canary gradient_norm must be >= 1 (units of C), got {gradient_norm}")
    state = CanaryState(
        coordinates=np.sort(rng.choice(n_coordinates, size=num_canaries, replace=False)),
        included=rng.random(num_canaries) < 0.5,
        gradient_norm=float(gradient_norm),
        clip_norm=float(optimizer.max_grad_norm),
        sample_rate=float(parts.data_loader.batch_sampler.sample_rate),
        rng=rng,
    )
    base = type(optimizer)
    optimizer.__class__ = type(f"DiracCanary{base.__name__}", (DiracCanaryMixin, base), {})
    optimizer._canaries = state


def _gather(tensors: list[torch.Tensor], coordinates: np.ndarray) -> np.ndarray:
    """``(m,)`` float64 values of the flattened, concatenated tensors at ``coordinates``."""
    flat = torch.cat([t.detach().reshape(-1) for t in tensors])
    return flat[torch.from_numpy(coordinates)].double().cpu().numpy()


def _canary_rows(
    params: list[torch.Tensor], coordinates: np.ndarray, value: float
) -> list[torch.Tensor]:
    """Per-parameter ``(k, *shape)`` per-sample gradients: row i is ``value`` at coordinate i."""
    rows = []
    offset = 0
    k = coordinates.size
    for p in params:
        size = p.numel()
        block = torch.zeros(k, size, dtype=p.dtype, device=p.device)
        local = (coordinates >= offset) & (coordinates < offset + size)
        which = np.flatnonzero(local)
        block[torch.from_numpy(which), torch.from_numpy(coordinates[local] - offset)] = value
        rows.append(block.reshape(k, *p.shape))
        offset += size
    return rows


@contextmanager
def _own_patients(optimizer: object, n_rows: int) -> Iterator[None]:
    """A patient-level optimiser sees each canary row as a patient of its own (one record)."""
    if getattr(optimizer, "record_patient", None) is None:
        yield
        return
    saved = optimizer.record_patient, optimizer.n_patients  # type: ignore[attr-defined]
    optimizer.set_batch_patients(torch.arange(n_rows), n_rows)  # type: ignore[attr-defined]
    try:
        yield
    finally:
        optimizer.record_patient, optimizer.n_patients = saved  # type: ignore[attr-defined]
