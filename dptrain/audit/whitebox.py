"""White-box audit of DP-SGD with Dirac gradient canaries (Nasr et al. 2023, "Tight Auditing").

m gradient canaries, each a per-sample gradient that is zero except for ``gradient_norm`` · C on
one parameter coordinate of its own, are included in the training set independently with
probability ½. On every step each included canary is Poisson-sampled at the data loader's rate and
its gradient row is handed to the real Opacus optimiser beside the batch's rows, so Opacus clips it
and noises the sum exactly as it does for records: nothing of DP-SGD is re-implemented here. The
auditor sees every step's noisy gradient sum (all intermediate updates are released by DP-SGD) and
knows the batch's own clipped sum, so each step leaves y = (noisy sum − batch sum) / C on a
canary's coordinate: N(1, σ²) on the steps where the canary was sampled, N(0, σ²) otherwise, if the
implementation is correct.

Because each canary has its own coordinate, the canaries' noise is independent and their scores
are m independent trials of the full T-step mechanism: the Clopper–Pearson bound applies, and is
the headline (`WhiteboxAuditResult.epsilon_lower_bound`). Two scores are audited, with the
significance split between them: the likelihood ratio of the T steps under the planned (σ, q)
(Neyman–Pearson optimal for a correct implementation) and the sum of squared step-to-step changes,
which exposes noise that repeats across steps.

The canaries enter `dptrain.training.fit.fit` itself, through its ``private_parts_hook``, so the
audited model trains on the one training path. Ghost clipping never
materialises per-sample gradients, so a ghost recipe is audited in the model's first verified
per-sample mode (hooks for the MLP): the same clipping and noise arithmetic in Opacus' optimiser.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from dptrain.audit.auditor import AuditSummary, ScoreAuditor
from dptrain.data.cohort import Cohort
from dptrain.errors import ConfigError
from dptrain.models import ModelFactory
from dptrain.privacy.accounting import PrivacyConfig
from dptrain.privacy.engine import TrainingParts
from dptrain.training.config import TrainConfig
from dptrain.training.fit import fit

PER_SAMPLE_MODES = ("hooks", "functorch", "ew")
DEFAULT_NUM_CANARIES = 4000


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
    """

    projections: np.ndarray = field(repr=False)
    sampled: np.ndarray = field(repr=False)
    included: np.ndarray = field(repr=False)
    coordinates: np.ndarray = field(repr=False)
    sample_rate: float


@dataclass(frozen=True)
class WhiteboxAuditResult:
    """The white-box audit of one training run, against the accountant's ε.

    Attributes:
        epsilon_lower_bound: The headline: the larger Clopper–Pearson bound of the two scores,
            each at confidence 1 − (1 − confidence)/2, so it holds with ``confidence``.
        epsilon_gaussian_dp: The larger Gaussian-DP bound of the two scores (assumes a Gaussian
            trade-off curve; Nasr et al. 2023's estimate).
        epsilon_one_run: The larger Steinke et al. one-run bound of the two scores.
        epsilon_accountant: The ε the accountant claims for the run.
        delta: δ of every bound and of the claim.
        confidence: Confidence level of the bounds together.
        likelihood_ratio: Metrics and bounds of the likelihood-ratio score.
        step_difference: Metrics and bounds of the step-difference score.
        num_canaries: m.
        num_steps: T, noisy steps.
        noise_multiplier: σ the plan calibrated.
        sample_rate: q the plan (and the accountant) assume.
        gradient_norm: Each canary's gradient norm before clipping, in units of C.
        in_step_mean: Mean projection on steps where a canary was sampled (1 if correct).
        in_step_std: Its standard deviation (σ if correct).
        out_step_mean: Mean projection on the other steps (0 if correct).
        out_step_std: Its standard deviation (σ if correct).
        grad_sample_mode: The Opacus mode the audited run used.
        trace: The per-step projections behind the scores.
    """

    epsilon_lower_bound: float
    epsilon_gaussian_dp: float
    epsilon_one_run: float
    epsilon_accountant: float
    delta: float
    confidence: float
    likelihood_ratio: AuditSummary
    step_difference: AuditSummary
    num_canaries: int
    num_steps: int
    noise_multiplier: float
    sample_rate: float
    gradient_norm: float
    in_step_mean: float
    in_step_std: float
    out_step_mean: float
    out_step_std: float
    grad_sample_mode: str
    trace: CanaryTrace = field(repr=False)

    @property
    def violates_claim(self) -> bool:
        """Whether the audit refutes the accountant's ε (at the confidence)."""
        return self.epsilon_lower_bound > self.epsilon_accountant


class DiracCanaryMixin:
    """Mixed into an Opacus ``DPOptimizer`` class: hands sampled canary rows to its clipping.

    Set up by `attach_dirac_canaries`. ``add_noise`` runs once per logical step, after the
    batch's rows are clipped and summed: it notes the batch's sum on the canary coordinates,
    gives the sampled canaries' rows to the optimiser's own ``clip_and_accumulate`` (so they
    are clipped and summed like any record), lets the optimiser add its noise and notes the noisy
    sum.
    """

    _canaries: _CanaryState

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
class _CanaryState:
    coordinates: np.ndarray
    included: np.ndarray
    gradient_norm: float
    clip_norm: float
    sample_rate: float
    rng: np.random.Generator
    projections: list[np.ndarray] = field(default_factory=list)
    sampled: list[np.ndarray] = field(default_factory=list)


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
    state = _CanaryState(
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


def whitebox_audit(
    *,
    cohort: Cohort,
    model_factory: ModelFactory,
    privacy: PrivacyConfig,
    train: TrainConfig,
    seed: int,
    num_canaries: int | None = None,
    gradient_norm: float = 10.0,
    confidence: float = 0.95,
    tamper: Callable[[TrainingParts], None] | None = None,
) -> WhiteboxAuditResult:
    """Trains one model with `fit` and Dirac gradient canaries, and bounds ε from the updates.

    Args:
        cohort: The training cohort (the run's training split).
        model_factory: The model recipe.
        privacy: The privacy recipe (must be private); a ghost-clipping mode is audited in the
            model's first verified per-sample mode. Record- and patient-level runs both work: a
            canary is a one-record unit, sampled at the loader's rate.
        train: The training recipe.
        seed: Seed of the run and the canaries.
        num_canaries: m; None takes min(4000, the parameter coordinates).
        gradient_norm: Canary gradient norm before clipping, in units of C; above 1 so that a
            run that forgets to clip adds more than C.
        confidence: Confidence of the bounds.
        tamper: Test hook: called on the private training parts before the canaries are
            attached (e.g. to break the optimiser in a known way). Never used in real audits.

    Returns:
        The bounds against the accountant's ε, and the trace behind them.

    Raises:
        ConfigError: If ``privacy`` is not private or the model has no per-sample mode.
    """
    if not privacy.private:
        raise ConfigError("the white-box audit needs privacy.mode=dp (it audits the DP optimiser)")
    mode = _per_sample_mode(model_factory, privacy)
    audited = dataclasses.replace(privacy, grad_sample_mode=mode)
    rng = np.random.default_rng([seed, 0x57B0])
    attached: list[TrainingParts] = []

    def with_canaries(private: TrainingParts) -> None:
        if tamper is not None:
            tamper(private)
        n_coordinates = sum(p.numel() for p in private.optimizer.params)
        count = num_canaries or min(DEFAULT_NUM_CANARIES, n_coordinates)
        attach_dirac_canaries(private, num_canaries=count, gradient_norm=gradient_norm, rng=rng)
        attached.append(private)

    trained = fit(
        cohort=cohort,
        model_factory=model_factory,
        privacy=audited,
        train=train,
        seed=seed,
        private_parts_hook=with_canaries,
    )
    state: _CanaryState = attached[0].optimizer._canaries
    trace = CanaryTrace(
        projections=np.stack(state.projections, axis=1).astype(np.float64),
        sampled=np.stack(state.sampled, axis=1),
        included=state.included,
        coordinates=state.coordinates,
        sample_rate=state.sample_rate,
    )
    return audit_trace(
        trace,
        noise_multiplier=trained.privacy.noise_multiplier,
        sample_rate=trained.privacy.sample_rate,
        epsilon_accountant=trained.privacy.epsilon,
        delta=trained.privacy.delta,
        confidence=confidence,
        gradient_norm=gradient_norm,
        grad_sample_mode=mode,
    )


def audit_trace(
    trace: CanaryTrace,
    *,
    noise_multiplier: float,
    sample_rate: float,
    epsilon_accountant: float,
    delta: float,
    confidence: float = 0.95,
    gradient_norm: float = 10.0,
    grad_sample_mode: str = "hooks",
) -> WhiteboxAuditResult:
    """The bounds of a canary trace, scored under the planned σ and q.

    Args:
        trace: Per-step projections of the canaries.
        noise_multiplier: The planned σ (the likelihood ratio assumes it).
        sample_rate: The planned q (likewise).
        epsilon_accountant: The claim audited.
        delta: δ of the claim.
        confidence: Confidence of the bounds together (split over the two scores).
        gradient_norm: Recorded in the result.
        grad_sample_mode: Recorded in the result.

    Returns:
        The audit result.
    """
    split_confidence = 1 - (1 - confidence) / 2
    summaries = []
    for scores in (
        likelihood_ratio_scores(
            trace.projections, noise_multiplier=noise_multiplier, sample_rate=sample_rate
        ),
        step_difference_scores(trace.projections),
    ):
        auditor = ScoreAuditor.from_membership(scores, trace.included)
        summaries.append(auditor.summary(delta=delta, confidence=split_confidence))
    inside = trace.projections[trace.sampled]
    outside = trace.projections[~trace.sampled]
    return WhiteboxAuditResult(
        epsilon_lower_bound=max(s.clopper_pearson.epsilon for s in summaries),
        epsilon_gaussian_dp=max(s.gaussian_dp.epsilon for s in summaries),
        epsilon_one_run=max(s.one_run.epsilon for s in summaries),
        epsilon_accountant=epsilon_accountant,
        delta=delta,
        confidence=confidence,
        likelihood_ratio=summaries[0],
        step_difference=summaries[1],
        num_canaries=int(trace.included.size),
        num_steps=int(trace.projections.shape[1]),
        noise_multiplier=noise_multiplier,
        sample_rate=sample_rate,
        gradient_norm=gradient_norm,
        in_step_mean=float(inside.mean()) if inside.size else float("nan"),
        in_step_std=float(inside.std()) if inside.size > 1 else float("nan"),
        out_step_mean=float(outside.mean()),
        out_step_std=float(outside.std()),
        grad_sample_mode=grad_sample_mode,
        trace=trace,
    )


def likelihood_ratio_scores(
    projections: np.ndarray, *, noise_multiplier: float, sample_rate: float
) -> np.ndarray:
    """Log-likelihood ratio of each canary's T steps: sampled at rate q (shift 1) vs absent.

    Each step is N(1, σ²) with probability q and N(0, σ²) otherwise when the canary is in, and
    N(0, σ²) when it is out; log φ_σ(y − 1)/φ_σ(y) = (y − ½)/σ².

    Args:
        projections: ``(n_canaries, n_steps)`` projections in units of C.
        noise_multiplier: σ > 0.
        sample_rate: q in (0, 1].

    Returns:
        ``(n_canaries,)`` scores, higher = more likely in.

    Example:
        >>> scores = likelihood_ratio_scores(np.array([[1.0, 1.0], [0.0, 0.0]]),
        ...     noise_multiplier=1.0, sample_rate=1.0)
        >>> scores.tolist()  # (1 − ½) · 2 and (0 − ½) · 2
        [1.0, -1.0]
    """
    if not noise_multiplier > 0:
        raise ConfigError(f"noise_multiplier must be > 0, got {noise_multiplier}")
    if not 0 < sample_rate <= 1:
        raise ConfigError(f"sample_rate must be in (0, 1], got {sample_rate}")
    log_ratio = (projections - 0.5) / noise_multiplier**2
    with np.errstate(divide="ignore"):
        per_step = np.logaddexp(np.log1p(-sample_rate), np.log(sample_rate) + log_ratio)
    return per_step.sum(axis=1)


def step_difference_scores(projections: np.ndarray) -> np.ndarray:
    """Sum of squared changes between consecutive steps: exposes noise that repeats across steps.

    With fresh noise every step the changes are N(·, 2σ²) in and out and this score barely
    separates them. Noise that repeats cancels in the differences, leaving exactly 0 for an absent
    canary and 1 each time a present canary enters or leaves the batch, so in-canaries score
    higher.

    Args:
        projections: ``(n_canaries, n_steps)`` projections in units of C.

    Returns:
        ``(n_canaries,)`` scores, higher = more likely in.

    Example:
        >>> step_difference_scores(np.array([[0.5, 1.5, 0.5], [0.5, 0.5, 0.5]])).tolist()
        [2.0, 0.0]
    """
    return (np.diff(projections, axis=1) ** 2).sum(axis=1)


def _per_sample_mode(model_factory: ModelFactory, privacy: PrivacyConfig) -> str:
    """The recipe's mode if it materialises per-sample gradients, else the model's first one."""
    from dptrain.models import resolve_grad_sample_mode

    mode = resolve_grad_sample_mode(model_factory, privacy.grad_sample_mode)
    if mode in PER_SAMPLE_MODES:
        return mode
    verified = getattr(model_factory, "grad_sample_modes", PER_SAMPLE_MODES)
    for candidate in verified:
        if candidate in PER_SAMPLE_MODES:
            return candidate
    raise ConfigError(
        f"the white-box audit needs a per-sample gradient mode {list(PER_SAMPLE_MODES)}; the "
        f"model is verified for {list(verified)}"
    )


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
