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

Fake masks: the real signals of a sub-audit's models analysed under random complementary masks
drawn independently of training (`--fake-seeds` draws per K), so there is no membership effect;
the FDR list should be empty in at least 1 − FDR of them.

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

Full size (issue 7's table; hours on 2 cores, minutes on 16):

    python experiments/bench_patient_risk_stability.py --sizes 16 32 64 128 256

The image and ECG tables (about 1 and 3 minutes on 2 cores; experiments/README.md):

    python experiments/bench_patient_risk_stability.py --experiment breastmnist \\
        --sizes 8 16 32 64 --privacy none 8
    python experiments/bench_patient_risk_stability.py --experiment ptbxl \\
        --sizes 8 16 32 --privacy none 8

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

from dptrain.audit.fdr import patient_exposure
from dptrain.audit.reference import Recipe, train_reference_models
from dptrain.audit.run import AuditResult, analyse_signals
from dptrain.cli.config import CONFIG_DIR, compose_run_config
from dptrain.data.splits import balanced_membership_masks
from dptrain.training.frontend import apply_frontend

THRESHOLD = 0.8
# Nominal level at which the independent audit confirms an already-listed patient.
CONFIRM_LEVEL = 0.05


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


def fake_mask_empty_share(signals, cohort, *, rate: float, seeds: range) -> float:
    """Share of independent random complementary masks under which the FDR list is empty."""
    empty = 0
    for fake_seed in seeds:
        fake = balanced_membership_masks(
            patient_labels=cohort.patient_labels, num_models=len(signals), seed=fake_seed
        )
        exposure = patient_exposure(
            signals,
            cohort.record_mask(fake),
            cohort.record_patient,
            n_patients=cohort.n_patients,
            rate=rate,
        )
        empty += exposure.n_exposed == 0
    return empty / len(seeds)


def percent(share: float) -> str:
    return "—" if np.isnan(share) else f"{share:.1%}"


def row(size: int, audit: AuditResult, disjoint: bool, confirmed: str, fake_empty: float) -> str:
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
        f"{fake_empty:>11.0%}"
    )


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
        "--fake-seeds", type=int, default=100, help="fake-mask draws per K (0 skips them)"
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
            fake_empty[size] = (
                fake_mask_empty_share(
                    signals[models], cohort, rate=config.audit.fdr, seeds=fake_seeds
                )
                if args.fake_seeds
                else float("nan")
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
            f"{'LiRA rec':>9}{'fake empty':>11}"
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
                f"{'K':>6}{'listed':>8}{'on both':>9}{'precision':>11}{'recall':>9}"
                f"{f'p < {CONFIRM_LEVEL} there':>18}"
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
                print(
                    f"{size:>6}{int(listed.sum()):>8}{both:>9}{percent(precision):>11}"
                    f"{percent(recall):>9}{percent(confirmed_nominal):>18}"
                    f"   (K = {reference} list: {int(truth.sum())})"
                )


if __name__ == "__main__":
    main()
