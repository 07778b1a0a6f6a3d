"""Is the per-patient answer stable across K? Sub-audits of one set of trained audit models.

On the default run's data and recipe (`conf/`: ACTG 175, the MLP; `--experiment` for another
experiment's, below), the audit models are trained once at the largest K; sub-audits of each
smaller K are then taken from disjoint blocks of model pairs (while the blocks fit; a size that no
longer fits reuses the first pairs and is marked), and each is analysed exactly as a run's audit
is (`analyse_signals`). Printed per privacy setting:

    K, raw share of patients with AUC > 0.8, share whose lower bound is > 0.8, the empirical-Bayes
    share with true AUC > 0.8 and its interval, the FDR list size (and how much of it the largest
    disjoint sub-audit's list confirms), split-half ρ and its Spearman–Brown value, the null floor
    of the largest patient AUC, online LiRA's AUC with a fixed vs a per-record variance, and the
    share of fake-mask seeds whose FDR list is empty.

Below each table, the FDR list of each disjoint sub-audit checked against the largest disjoint
one (K = 128 when the sizes are 16 … 256): precision (share of the list also on the reference
list) and recall (share of the reference list found). The reference list is itself an FDR list
with limited power, so a true exposure it misses counts against precision: the precision printed
is a lower estimate of the list's true precision. Beside it, a second check of the same list:
the share of its patients that show the effect in the independent audit at a nominal level
(one-sided per-patient p < 0.05 there, no multiplicity correction, since the question is whether
already-selected patients are confirmed, not which patients to select).

A third check of the same list needs no assumption about the reference audit's power: a listed
patient who does not leak has a uniform p-value in the independent audit, so twice the share of
the list with p > ½ there bounds the share of such patients from above (Storey's π₀ at λ = ½);
printed as the precision it implies and its one-sided 95 % lower bound.

Below that, the empirical-Bayes share of every disjoint block of each K among the largest K's
models (16 blocks of K = 16 in 256 models), against the estimate from all of them: how far one
audit of that size strays, and how often it is within ±1 point; and how often each block's 95 %
interval covers the estimate from all models: the percentile bootstrap over patients alone (which
misses the models' shared variation) and the audit's interval (that bootstrap with the jackknife
over model pairs added, `dptrain.audit.shrinkage`), with the mean jackknife standard error. Twice:
with each record's own variance (the audit's t statistics) and with Smyth's moderated t
(`moderated_t`, variances pooled across records), which the audit tried and does not use.

Fake masks (`--fake-seeds` draws per K), two nulls: "null empty" analyses the sub-audit's signals
made membership-free as the audit's null floor makes them (each record's IN and OUT sides moved
to its midpoint, up to a chance difference) under random complementary masks drawn independently
of training; the FDR list should be empty in at least 1 − FDR of them. "raw" re-labels the raw
signals instead: a strongly leaky record's differences then become bimodal (± its effect, symmetric
but far from Gaussian), where the t-test's tail is not exact at K/2 = 8 pairs (all 8 signs agree
with probability 1/256), so on strongly leaky models (BreastMNIST non-private) this column falls
below 95 % without any patient being falsely listed in a real audit.

Other experiments (`--experiment NAME`, a `conf/experiment` name): the run config is composed as
`dptrain experiment=NAME` plus the privacy setting would compose it, and the audit models are
those of a real run of that experiment: the pool is the whole cohort (not the target's training
split; the official or patient split only decides the target's data), a fixed front end
(ScatterNet for `experiment=breastmnist`, `scatter1d` for `ptbxl_scatter1d`) is applied to the
pool once before any model trains (`dptrain.training.frontend.apply_frontend`), `privacy.unit=auto`
is resolved on the pool (PTB-XL: ε per patient), and the models train with the experiment's
recipe through `train_reference_models`, model k with seed `seed + 1 + k` and the K-independent
first rows of the membership masks. A model's signals are therefore bit for bit those of model k
in `dptrain experiment=NAME audit.num_models=K` (checked on breastmnist and ptbxl, 1 epoch, K = 4).
What differs from a run: no target model is trained (the audit does not use it, so an
early-stopped recipe, whose audit models need the target's kept epoch, is refused); the run's
partial-knowledge levels and attribute probes are not scored (extra forward passes after the
signals, which they do not change); the attacks are loss, online LiRA (both variances) and RMIA,
without offline LiRA, so the null floor is that of the best of these; `--workers` local processes
stand in for `audit.executor` (the signals are the same on every executor).

Issue 7's table (about 10 minutes on 2 cores):

    python experiments/bench_patient_risk_stability.py --sizes 16 32 64 128 256

The image and ECG tables at the same sizes (about 8 and 12 minutes on 2 cores;
experiments/README.md):

    python experiments/bench_patient_risk_stability.py --experiment breastmnist \\
        --sizes 16 32 64 128 256
    python experiments/bench_patient_risk_stability.py --experiment ptbxl \\
        --sizes 16 32 64 128 256

A smoke run in about a minute:

    python experiments/bench_patient_risk_stability.py --sizes 4 8 16 --epochs 2 \\
        --privacy none --null-repeats 3
"""

from __future__ import annotations

import argparse
import dataclasses
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.optimize import brentq
from scipy.special import digamma, polygamma
from scipy.stats import beta

from dptrain.audit.fdr import patient_exposure
from dptrain.audit.paired import (
    pair_sides,
    paired_t,
    remove_membership_effect,
    unpaired_scale,
)
from dptrain.audit.reference import Recipe, train_reference_models
from dptrain.audit.run import AuditResult, analyse_signals
from dptrain.audit.shrinkage import (
    RiskDeconvolution,
    deconvolve_patient_auc,
    deconvolve_t_statistics,
)
from dptrain.cli.config import CONFIG_DIR, compose_run_config
from dptrain.data.splits import balanced_membership_masks
from dptrain.training.frontend import apply_frontend

THRESHOLD = 0.8
# Nominal level at which the independent audit confirms an already-listed patient.
CONFIRM_LEVEL = 0.05
# Storey's λ: p-values above it in the independent audit count toward the list's true nulls.
STOREY_LAMBDA = 0.5
# Bootstrap resamples of patients behind each block's interval (the audit's default).
BLOCK_BOOTSTRAP = 100
# d₀ at which the moderated t treats all records' variances as one.
MAX_PRIOR_DOF = 1000.0


def sub_audit_pairs(sizes: list[int]) -> dict[int, tuple[np.ndarray, bool]]:
    """Per K, the model pairs it uses and whether they are disjoint from the other sizes'."""
    largest = max(sizes)
    plans, start = {}, 0
    for size in sorted(sizes):
        if start + size // 2 <= largest // 2 and size != largest:
            plans[size] = (np.arange(start, start + size // 2), True)
            start += size // 2
        else:
            plans[size] = (np.arange(size // 2), False)
    return plans


def models_of(pairs: np.ndarray) -> np.ndarray:
    return np.sort(np.concatenate((2 * pairs, 2 * pairs + 1)))


def fake_mask_empty_share(
    signals, membership, cohort, *, rate: float, seeds: range, remove_effect: bool
) -> float:
    """Share of independent random complementary masks under which the FDR list is empty.

    With ``remove_effect`` the signals are first made membership-free as the audit's null floor
    makes them (each record's IN and OUT sides moved to its midpoint, up to a chance difference);
    without it the raw signals are re-labelled, which leaves a strongly leaky record's differences
    bimodal (±its effect).
    """
    empty = 0
    for fake_seed in seeds:
        null = (
            remove_membership_effect(
                signals, cohort.record_mask(membership), rng=np.random.default_rng(fake_seed)
            )
            if remove_effect
            else signals
        )
        fake = balanced_membership_masks(
            patient_labels=cohort.patient_labels, num_models=len(signals), seed=fake_seed
        )
        exposure = patient_exposure(
            null,
            cohort.record_mask(fake),
            cohort.record_patient,
            n_patients=cohort.n_patients,
            rate=rate,
        )
        empty += exposure.n_exposed == 0
    return empty / len(seeds)


def moderated_t(differences: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Smyth (2004)'s moderated paired t: (t̃, its degrees of freedom d + d₀, d₀), for comparison.

    Each record's variance s² (d = K/2 − 1 degrees of freedom) is shrunk toward a scaled
    inverse-χ² prior (d₀, s₀²) fitted by moments of log s²: s̃² = (d₀ s₀² + d s²) / (d₀ + d).
    Under that prior, Gaussian differences and z = μ/σ independent of σ, t̃ = d̄ / (s̃ / √n) is
    noncentral t with d + d₀ degrees of freedom and noncentrality √n · z, so the audit's
    deconvolution can read it with ``n_pairs`` = K/2. The audit does not use it (see the module
    docstring of `dptrain.audit.shrinkage`).
    """
    n_pairs = differences.shape[0]
    dof = n_pairs - 1
    variance = differences.var(axis=0, ddof=1) + 1e-12
    centred = np.log(variance) - digamma(dof / 2) + np.log(dof / 2)
    excess = centred.var(ddof=1) - polygamma(1, dof / 2)
    if excess <= polygamma(1, MAX_PRIOR_DOF / 2):
        prior_dof = MAX_PRIOR_DOF
    else:  # trigamma(d₀ / 2) = excess
        prior_dof = 2 * brentq(lambda half: polygamma(1, half) - excess, 1e-8, MAX_PRIOR_DOF / 2)
    prior_variance = np.exp(centred.mean() + digamma(prior_dof / 2) - np.log(prior_dof / 2))
    pooled = (prior_dof * prior_variance + dof * variance) / (prior_dof + dof)
    return differences.mean(axis=0) / np.sqrt(pooled / n_pairs), dof + prior_dof, prior_dof


def share_at_risk(
    signals, membership, cohort, seed: int, *, moderated: bool = False, interval: str = "none"
) -> RiskDeconvolution:
    """The empirical-Bayes share with true AUC > 0.8, as the audit fits it.

    ``interval``: ``none`` (no bootstrap), ``patients`` (the percentile bootstrap over patients
    alone) or ``audit`` (the audit's: patients and the jackknife over model pairs).
    ``moderated=True`` fits it to moderated t statistics instead (`moderated_t`; no interval).
    """
    record_membership = cohort.record_mask(membership)
    common = {
        "record_patient": cohort.record_patient,
        "n_patients": cohort.n_patients,
        "thresholds": (THRESHOLD,),
        "num_bootstrap": 0 if interval == "none" else BLOCK_BOOTSTRAP,
        "rng": np.random.default_rng(seed),
    }
    if interval == "audit":
        return deconvolve_patient_auc(
            signals=signals, record_membership=record_membership, **common
        )
    inside, outside = pair_sides(signals, record_membership)
    differences = inside - outside
    t, dof = moderated_t(differences)[:2] if moderated else paired_t(differences)
    return deconvolve_t_statistics(
        t_statistics=t,
        dof=dof,
        n_pairs=len(differences),
        scale=unpaired_scale(inside, outside),
        **common,
    )


def storey_precision(p_values: np.ndarray, *, level: float = 0.95) -> tuple[float, float]:
    """Precision of a list from independent p-values of its members: estimate and lower bound.

    A listed patient who does not leak has a uniform p-value in an independent audit, so at most
    2 × (share of the list with p > ½) of the list are such patients (Storey 2002's π₀ at
    λ = ½; patients who leak add to that share, so it overstates π₀). The lower bound uses the
    one-sided Clopper–Pearson upper limit of that share at ``level``.
    """
    above = int(np.sum(np.nan_to_num(p_values, nan=1.0) > STOREY_LAMBDA))
    n = p_values.size
    null_share = min(1.0, above / n / (1 - STOREY_LAMBDA))
    upper = beta.ppf(level, above + 1, n - above) if above < n else 1.0
    return 1 - null_share, 1 - min(1.0, upper / (1 - STOREY_LAMBDA))


def percent(share: float) -> str:
    return "—" if np.isnan(share) else f"{share:.1%}"


def row(
    size: int, audit: AuditResult, disjoint: bool, confirmed: str, fake_empty: tuple[float, float]
) -> str:
    patients, shares = audit.patients, audit.deconvolution
    index = int(np.flatnonzero(np.isclose(patients.thresholds, THRESHOLD))[0])
    n = patients.n_patients
    lira = {a.variant: a.metrics.auc for a in audit.attacks if a.name == "lira"}
    floor = audit.null_floor
    return (
        f"{size:>5}{'' if disjoint else '*':1}"
        f"{patients.exposed[index] / n:>9.1%}{patients.exposed_lower_bound[index] / n:>9.1%}"
        f"{shares.share_above[index]:>9.1%} [{shares.share_lower[index]:.1%}, "
        f"{shares.share_upper[index]:.1%}]"
        f"{audit.exposure.n_exposed:>7}{confirmed:>11}"
        f"{audit.reliability.half_rho:>8.2f}{audit.reliability.full_rho:>8.2f}"
        f"{floor.band(floor.max_auc)[0]:>9.3f}"
        f"{lira.get('fixed variance', float('nan')):>9.3f}"
        f"{lira.get('per-record variance', float('nan')):>9.3f}"
        f"{fake_empty[0]:>11.1%}{fake_empty[1]:>7.1%}"
    )


def print_block_scatter(signals, membership, cohort, sizes: list[int], seed: int) -> None:
    """The share at risk of every disjoint block of K models, against all the models' estimate.

    One sub-audit per K (the table above) is one draw; every disjoint block of the largest K's
    pairs shows how far a single audit of that size strays, how often it lands within ±1 point
    of the estimate from all models, and (own variances) how often its 95 % interval covers that
    estimate: the patient bootstrap alone, and the audit's interval (patients and model pairs).
    """
    largest = max(sizes)
    for moderated in (False, True):
        reference = share_at_risk(signals, membership, cohort, seed, moderated=moderated)
        reference = reference.share_above[0]
        print(
            f"\nEB share > {THRESHOLD} of every disjoint block of the {largest} models, vs "
            f"{reference:.2%} from all of them; t statistics with "
            + ("moderated variances (Smyth 2004)" if moderated else "own variances (the audit's)")
        )
        print(
            f"{'K':>6}{'blocks':>8}{'mean':>8}{'sd':>8}{'min':>8}{'max':>8}{'RMS gap':>9}"
            f"{'within ±1 pt':>14}"
            + ("" if moderated else f"{'covers: patients':>18}{'audit':>8}{'model sd':>10}")
        )
        for size in sorted(size for size in sizes if size < largest):
            n_blocks = largest // size
            blocks = [models_of(pairs) for pairs in np.split(np.arange(largest // 2), n_blocks)]
            fits = {
                interval: [
                    share_at_risk(
                        signals[models],
                        membership[models],
                        cohort,
                        seed,
                        moderated=moderated,
                        interval=interval,
                    )
                    for models in blocks
                ]
                for interval in (("none",) if moderated else ("patients", "audit"))
            }
            first = next(iter(fits.values()))
            shares = np.array([fit.share_above[0] for fit in first])
            gaps = shares - reference
            line = (
                f"{size:>6}{n_blocks:>8}{shares.mean():>8.2%}"
                f"{shares.std(ddof=1) if n_blocks > 1 else float('nan'):>8.2%}"
                f"{shares.min():>8.2%}{shares.max():>8.2%}{np.sqrt(np.mean(gaps**2)):>9.2%}"
                f"{int(np.sum(np.abs(gaps) <= 0.01)):>9} of {n_blocks}"
            )
            if not moderated:
                covers = {
                    interval: sum(
                        fit.share_lower[0] <= reference <= fit.share_upper[0] for fit in results
                    )
                    for interval, results in fits.items()
                }
                model_sd = np.mean([fit.model_sd[0] for fit in fits["audit"]])
                line += (
                    f"{covers['patients']:>11} of {n_blocks}{covers['audit']:>4} of {n_blocks}"
                    f"{model_sd:>10.2%}"
                )
            print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--experiment",
        default=None,
        choices=sorted(path.stem for path in (Path(CONFIG_DIR) / "experiment").glob("*.yaml")),
        help="a conf/experiment recipe (e.g. breastmnist, ptbxl); default: the default run",
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    parser.add_argument(
        "--privacy", nargs="+", default=["none", "8"], help="'none' or an ε, one table each"
    )
    parser.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--null-repeats", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--fake-seeds", type=int, default=1000, help="fake-mask draws per K (0 skips them)"
    )
    args = parser.parse_args()
    if any(size < 4 or size % 2 for size in args.sizes):
        parser.error(f"sizes must be even numbers >= 4, got {args.sizes}")
    warnings.filterwarnings("ignore")
    plans = sub_audit_pairs(args.sizes)
    largest = max(args.sizes)
    for setting in args.privacy:
        overrides = [f"experiment={args.experiment}"] if args.experiment else []
        overrides.append("privacy=none" if setting == "none" else f"privacy.epsilon={setting}")
        if args.epochs is not None:
            overrides.append(f"train.epochs={args.epochs}")
        config = compose_run_config(overrides)
        if config.train.early_stopping:
            # The audit models' epochs would be the target's kept epoch, which needs the target.
            parser.error("train.early_stopping needs the target's kept epoch; not benchmarked here")
        started = time.perf_counter()
        # The audit pool of a run: the whole cohort, through the model's fixed front end (if it
        # has one) once, before any model trains (`dptrain.pipeline.run`).
        cohort, frontend = apply_frontend(config.data.load(), config.model)
        prepared = time.perf_counter() - started
        membership = balanced_membership_masks(
            patient_labels=cohort.patient_labels, num_models=largest, seed=args.seed
        )
        started = time.perf_counter()
        outputs = train_reference_models(
            pool=cohort,
            membership=membership,
            recipe=Recipe(model_factory=config.model, privacy=config.privacy, train=config.train),
            seed=args.seed,
            workers=args.workers,
        )
        trained = time.perf_counter() - started
        signals = np.stack([output.signals for output in outputs])
        audits, fake_empty = {}, {}
        for size in sorted(args.sizes):
            models = models_of(plans[size][0])
            for fixed in (True, False):  # LiRA's two variances side by side
                audit_config = dataclasses.replace(
                    config.audit,
                    num_models=size,
                    null_repeats=args.null_repeats,
                    lira_fixed_variance=fixed,
                    attacks=["loss", "lira", "rmia"] if fixed else ["lira"],
                )
                result = analyse_signals(
                    signals=signals[models],
                    membership=membership[models],
                    cohort=cohort,
                    model_privacy=outputs[0].privacy,
                    audit=audit_config,
                    seed=args.seed,
                )
                if fixed:
                    audits[size] = result
                else:
                    per_record = result.attacks[0]
                    audits[size] = dataclasses.replace(
                        audits[size], attacks=(*audits[size].attacks, per_record)
                    )
            fake_seeds = range(args.seed + 10_000, args.seed + 10_000 + args.fake_seeds)
            fake_empty[size] = tuple(
                fake_mask_empty_share(
                    signals[models],
                    membership[models],
                    cohort,
                    rate=config.audit.fdr,
                    seeds=fake_seeds,
                    remove_effect=remove_effect,
                )
                if args.fake_seeds
                else float("nan")
                for remove_effect in (True, False)
            )
        disjoint_sizes = [size for size in args.sizes if plans[size][1]]
        reference = max(disjoint_sizes) if disjoint_sizes else None
        label = "non-private" if setting == "none" else f"ε = {setting}"
        if args.experiment:
            print(
                f"\n{args.experiment}: {type(config.model).__name__}, {config.train.epochs} "
                f"epochs, ε per {outputs[0].privacy.unit}; pool = the whole cohort, "
                f"{cohort.n_records} records"
                + (f", through the {frontend} front end" if frontend else "")
                + f" (loaded{' and transformed' if frontend else ''} in {prepared:.0f} s)"
            )
        print(
            f"\n{label}: {cohort.n_patients} patients, {largest} models trained in "
            f"{trained:.0f} s; * = pairs shared with other sizes; 'confirmed' = share of the "
            f"list also on the K = {reference} disjoint audit's list"
        )
        print(
            f"{'K':>6}{'raw>0.8':>9}{'LB>0.8':>9}{'EB>0.8 [interval]':>24}{'FDR':>7}"
            f"{'confirmed':>11}{'ρ half':>8}{'ρ full':>8}{'null max':>9}{'LiRA fix':>9}"
            f"{'LiRA rec':>9}{'null empty':>11}{'raw':>7}"
        )
        for size in sorted(args.sizes):
            audit, disjoint = audits[size], plans[size][1]
            confirmed = "—"
            if reference is not None and disjoint and size != reference:
                listed = audit.exposure.exposed
                if listed.any():
                    agreed = np.mean(audits[reference].exposure.exposed[listed])
                    confirmed = f"{agreed:.0%}"
            print(row(size, audit, disjoint, confirmed, fake_empty[size]))
        if reference is not None:
            print(f"\nFDR-{config.audit.fdr:.0%} list vs the independent K = {reference} list")
            print(
                f"precision = share of the list also on the K = {reference} FDR list; "
                f"p < {CONFIRM_LEVEL} there = share of the list with one-sided p < "
                f"{CONFIRM_LEVEL} in the K = {reference} audit (no multiplicity correction)"
            )
            print(
                f"precision (Storey) = 1 − 2 × share of the list with p > {STOREY_LAMBDA} in the "
                f"K = {reference} audit, and its one-sided 95 % lower bound (Clopper–Pearson)"
            )
            print(
                f"{'K':>6}{'listed':>8}{'on both':>9}{'precision':>11}{'recall':>9}"
                f"{f'p < {CONFIRM_LEVEL} there':>18}{'precision (Storey)':>22}"
            )
            truth = audits[reference].exposure.exposed
            nominal = np.nan_to_num(audits[reference].exposure.p_value, nan=1.0) < CONFIRM_LEVEL
            for size in sorted(disjoint_sizes):
                if size == reference:
                    continue
                listed = audits[size].exposure.exposed
                both = int(np.sum(listed & truth))
                precision = both / listed.sum() if listed.any() else float("nan")
                recall = both / truth.sum() if truth.any() else float("nan")
                confirmed_nominal = np.mean(nominal[listed]) if listed.any() else float("nan")
                storey, storey_lower = (
                    storey_precision(audits[reference].exposure.p_value[listed])
                    if listed.any()
                    else (float("nan"), float("nan"))
                )
                print(
                    f"{size:>6}{int(listed.sum()):>8}{both:>9}{percent(precision):>11}"
                    f"{percent(recall):>9}{percent(confirmed_nominal):>18}"
                    f"{percent(storey):>11} (≥ {percent(storey_lower)})"
                    f"   (K = {reference} list: {int(truth.sum())})"
                )
        print_block_scatter(signals, membership, cohort, args.sizes, args.seed)


if __name__ == "__main__":
    main()
