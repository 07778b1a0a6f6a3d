"""Does the DP-SGD implementation keep its ε? Black-box and white-box lower bounds vs the claim.

Table 1, on the default run (`conf/`: the ACTG 175 training split, the default MLP and recipe):
for each claimed ε, the white-box audit (`dptrain.audit.whitebox`: 4000 Dirac gradient canaries
per model through the real Opacus optimiser, likelihood ratio at the threshold planned from σ, q
and T) with one model, and with as many models as its plan says reach ``--auto-target`` × the
accountant's ε (``runs="auto"``, i.e. ``audit.whitebox_runs=auto``; the default 0.55 leaves a
margin over ½ ε, since the plan's figure is only reached about half the time). "reachable" is
that plan's figure for the canaries used: what the optimal test reaches with them about half the
time under a correct implementation. Every bound holds with 95 % confidence.

Table 2: the black-box one-run canary audit (m mislabelled canaries, one model,
`dptrain.audit.canary`); at ε = ∞ the run has no DP optimiser, so only it applies.

Table 3: the broken implementations of the DP-correctness suite (`tests/privacy/
test_dp_correctness.py`, whose test-only optimiser subclasses this script reuses), each claiming
ε = 1 on the suite's small setup, over several seeds: the audit's bound and how often it flags
the claim (bound > claimed ε).

    python experiments/dp_audit.py                 # ~6 min on 2 busy cores
    python experiments/dp_audit.py --seeds 20 --auto-target 0.5
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from dptrain.audit.canary import canary_audit
from dptrain.audit.whitebox import whitebox_audit
from dptrain.cli.config import compose_run_config
from dptrain.data.splits import split_by_patient

# The broken variants live with the tests (they must never ship in the library).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.privacy import test_dp_correctness as suite

EPSILONS = (1.0, 2.0, 4.0, 8.0, math.inf)


def default_run():
    config = compose_run_config()
    cohort = split_by_patient(
        config.data.load(), test_fraction=config.split.test_fraction, seed=config.seed
    ).train
    train = dataclasses.replace(config.train, device="cpu", threads=1)
    return config, cohort, train


def private(config, epsilon: float):
    if math.isfinite(epsilon):
        return dataclasses.replace(config.privacy, mode="dp", epsilon=epsilon)
    return dataclasses.replace(config.privacy, mode="none")


def whitebox_table(args: argparse.Namespace) -> None:
    config, cohort, train = default_run()
    print(
        f"\nWhite box — {cohort.name}: {cohort.n_records} training records, MLP "
        f"{config.model.hidden}, {train.epochs} epochs, batch {train.batch_size}, confidence "
        f"0.95; auto runs plan for {args.auto_target:g} × the accountant's ε"
    )
    print(
        "| claimed ε | accountant ε | runs | canaries | CP bound (headline) | reachable "
        "| bound / accountant ε | ≥ ε/2? | runs for ½ ε (plan) | f-DP one-run μ (its ε) "
        "| Steinke one-run | seconds |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for epsilon in (e for e in EPSILONS if math.isfinite(e)):
        for runs in (1, "auto"):
            started = time.perf_counter()
            white = whitebox_audit(
                cohort=cohort,
                model_factory=config.model,
                privacy=private(config, epsilon),
                train=train,
                seed=args.seed,
                runs=runs,
                auto_target=args.auto_target,
            )
            seconds = time.perf_counter() - started
            ratio = white.epsilon_lower_bound / white.epsilon_accountant
            print(
                f"| {epsilon:g} | {white.epsilon_accountant:.2f} | {white.num_runs}"
                f"{' (auto)' if runs == 'auto' else ''} | {white.num_canaries} | "
                f"{white.epsilon_lower_bound:.2f} | {white.epsilon_reachable:.2f} | {ratio:.2f} | "
                f"{'yes' if white.epsilon_lower_bound >= epsilon / 2 else 'no'} | "
                f"{white.runs_for_half_epsilon} | {white.mu_fdp_one_run:.2f} "
                f"({white.epsilon_fdp_one_run:.2f}) | {white.epsilon_one_run:.2f} | "
                f"{seconds:.0f} |",
                flush=True,
            )


def blackbox_table(args: argparse.Namespace) -> None:
    config, cohort, train = default_run()
    print(f"\nBlack box — {args.canaries} mislabelled canaries, one model, confidence 0.95")
    print(
        "| claimed ε | accountant ε | one-run bound (Steinke) | f-DP one-run μ (its ε) "
        "| GDP estimate | seconds |"
    )
    print("|---|---|---|---|---|---|")
    for epsilon in EPSILONS:
        started = time.perf_counter()
        black = canary_audit(
            cohort=cohort,
            model_factory=config.model,
            privacy=private(config, epsilon),
            train=train,
            seed=args.seed,
            num_canaries=args.canaries,
        )
        print(
            f"| {epsilon:g} | {black.epsilon_accountant:.2f} | {black.epsilon_lower_bound:.2f} | "
            f"{black.mu_fdp_one_run:.2f} ({black.epsilon_fdp_one_run:.2f}) | "
            f"{black.epsilon_gaussian_dp:.2f} | {time.perf_counter() - started:.0f} |",
            flush=True,
        )


def broken_table(args: argparse.Namespace) -> None:
    cohort = suite.small_cohort()
    print(
        f"\nBroken variants claiming ε = 1 (suite setup: 1000 records, q = 0.1, 50 steps, "
        f"{suite.NUM_CANARIES} canaries, confidence {suite.CONFIDENCE}), {args.seeds} seeds"
    )
    print("| variant | median lower bound | min lower bound | max lower bound | flagged |")
    print("|---|---|---|---|---|")
    for tamper in (None, *suite.BROKEN):
        bounds = np.array(
            [
                suite.audit(cohort, epsilon=1.0, tamper=tamper, seed=seed).epsilon_lower_bound
                for seed in range(args.seeds)
            ]
        )
        name = "none (correct)" if tamper is None else tamper.__name__
        flagged = int((bounds > 1.0).sum())
        print(
            f"| {name} | {np.median(bounds):.2f} | {bounds.min():.2f} | {bounds.max():.2f} | "
            f"{flagged}/{args.seeds} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=10, help="seeds per broken variant")
    parser.add_argument("--canaries", type=int, default=400, help="black-box canaries")
    parser.add_argument(
        "--auto-target", type=float, default=0.55, help="fraction of ε auto runs plan to reach"
    )
    parser.add_argument("--skip-whitebox", action="store_true")
    parser.add_argument("--skip-blackbox", action="store_true")
    parser.add_argument("--skip-broken", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not args.skip_whitebox:
        whitebox_table(args)
    if not args.skip_blackbox:
        blackbox_table(args)
    if not args.skip_broken:
        broken_table(args)


if __name__ == "__main__":
    main()
