"""Does the DP-SGD implementation keep its ε? Black-box and white-box lower bounds vs the claim.

Table 1, on the default run (`conf/`: the ACTG 175 training split, the default MLP and recipe):
for each claimed ε, the accountant's ε, the one-run canary audit's bounds (black-box: m mislabelled
canaries, one model, `dptrain.audit.canary`) and the white-box audit's bounds (4000 Dirac gradient
canaries through the real Opacus optimiser, `dptrain.audit.whitebox`). At ε = ∞ the run has no DP
optimiser, so only the black-box audit applies.

Table 2: the broken implementations of the DP-correctness suite (`tests/privacy/
test_dp_correctness.py`, whose test-only optimiser subclasses this script reuses), each claiming
ε = 1 on the suite's small setup, over several seeds: the audit's bound and how often it flags
the claim (bound > claimed ε).

    python experiments/dp_audit.py                 # ~2 min on 2 cores
    python experiments/dp_audit.py --seeds 20
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


def claimed_table(args: argparse.Namespace) -> None:
    config = compose_run_config()
    cohort = split_by_patient(
        config.data.load(), test_fraction=config.split.test_fraction, seed=config.seed
    ).train
    train = dataclasses.replace(config.train, device="cpu", threads=1)
    print(
        f"\n{cohort.name}: {cohort.n_records} training records, MLP {config.model.hidden}, "
        f"{train.epochs} epochs, batch {train.batch_size}, confidence 0.95, "
        f"{args.canaries} black-box canaries"
    )
    print(
        "| claimed ε | accountant ε | black-box one-run | black-box GDP | white-box CP (headline) "
        "| white-box GDP | white-box one-run | CP, GDP ≥ ε/2? | steps | seconds |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for epsilon in EPSILONS:
        started = time.perf_counter()
        private = math.isfinite(epsilon)
        privacy = dataclasses.replace(
            config.privacy,
            mode="dp" if private else "none",
            epsilon=epsilon if private else config.privacy.epsilon,
        )
        black = canary_audit(
            cohort=cohort,
            model_factory=config.model,
            privacy=privacy,
            train=train,
            seed=args.seed,
            num_canaries=args.canaries,
        )
        white = None
        if private:
            white = whitebox_audit(
                cohort=cohort,
                model_factory=config.model,
                privacy=privacy,
                train=train,
                seed=args.seed,
            )
        seconds = time.perf_counter() - started
        cells = ["n/a"] * 5
        if white is not None:
            cells = [
                f"{white.epsilon_lower_bound:.2f}",
                f"{white.epsilon_gaussian_dp:.2f}",
                f"{white.epsilon_one_run:.2f}",
                "/".join(
                    "yes" if bound >= epsilon / 2 else "no"
                    for bound in (white.epsilon_lower_bound, white.epsilon_gaussian_dp)
                ),
                str(white.num_steps),
            ]
        print(
            f"| {epsilon:g} | {black.epsilon_accountant:.2f} | {black.epsilon_lower_bound:.2f} | "
            f"{black.epsilon_gaussian_dp:.2f} | " + " | ".join(cells) + f" | {seconds:.0f} |"
        )


def broken_table(args: argparse.Namespace) -> None:
    cohort = suite.small_cohort()
    print(
        f"\nBroken variants claiming ε = 1 (suite setup: 1000 records, q = 0.1, 50 steps, "
        f"{suite.NUM_CANARIES} canaries, confidence {suite.CONFIDENCE}), {args.seeds} seeds"
    )
    print("| variant | median lower bound | min lower bound | flagged |")
    print("|---|---|---|---|")
    for tamper in (None, *suite.BROKEN):
        bounds = np.array(
            [
                suite.audit(cohort, epsilon=1.0, tamper=tamper, seed=seed).epsilon_lower_bound
                for seed in range(args.seeds)
            ]
        )
        name = "none (correct)" if tamper is None else tamper.__name__
        flagged = int((bounds > 1.0).sum())
        print(f"| {name} | {np.median(bounds):.2f} | {bounds.min():.2f} | {flagged}/{args.seeds} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=10, help="seeds per broken variant")
    parser.add_argument("--canaries", type=int, default=400, help="black-box canaries")
    parser.add_argument("--skip-claimed", action="store_true")
    parser.add_argument("--skip-broken", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not args.skip_claimed:
        claimed_table(args)
    if not args.skip_broken:
        broken_table(args)


if __name__ == "__main__":
    main()
