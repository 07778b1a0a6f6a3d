"""Utility and measured leakage of the image experiments across ε and model families.

For each data set, model family and ε, one full `dptrain` run (the experiment's recipe, the model
family swapped in) on the real MedMNIST files; prints one table row per run with test AUROC, the
audit's aggregate attack AUC, the largest patient AUC, the DP-implied maximum AUC and wall times.

    python experiments/image_study.py                                  # default: both sets
    python experiments/image_study.py --datasets breastmnist --models scatternet cnn \
        --epsilons 1 3 8 inf --audit-models 0                          # utility only

``--audit-models 0`` skips the audit; end-to-end experiment timing is
``experiments/bench_image_experiments.py``.
"""

from __future__ import annotations

import argparse
import math
import tempfile

import torch

from dptrain.cli.config import compose_run_config
from dptrain.pipeline import run

# Per family: overrides that keep a CPU run in minutes (the end-to-end CNNs train for fewer epochs).
FAMILY_OVERRIDES = {
    "scatternet": ["model=scatternet"],
    "scatternet_cnn": ["model=scatternet", "model.head=cnn"],
    "cnn": ["model=cnn", "train.epochs=15", "train.lr=0.003"],
    "resnet": [
        "model=resnet",
        "model.depth=9",
        "model.width=16",
        "train.epochs=8",
        "train.lr=0.003",
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", nargs="+", default=["breastmnist", "pneumoniamnist"])
    parser.add_argument("--models", nargs="+", default=["scatternet"], choices=FAMILY_OVERRIDES)
    parser.add_argument("--epsilons", nargs="+", default=["1", "3", "8", "inf"])
    parser.add_argument("--audit-models", type=int, default=-1, help="K; -1 experiment's, 0 none")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    header = (
        "| data | model | ε | test AUROC | K | attack AUC | max patient AUC | DP max AUC | "
        "train s | audit s |"
    )
    print(header)
    print("|---" * 10 + "|")
    for dataset in args.datasets:
        for family in args.models:
            for epsilon in args.epsilons:
                overrides = [f"experiment={dataset}", "tracker=none", f"seed={args.seed}"]
                overrides += FAMILY_OVERRIDES[family]
                overrides += (
                    ["privacy=none"] if epsilon == "inf" else [f"privacy.epsilon={epsilon}"]
                )
                if args.audit_models == 0:
                    overrides.append("audit=none")
                elif args.audit_models > 0:
                    overrides.append(f"audit.num_models={args.audit_models}")
                config = compose_run_config(overrides)
                with tempfile.TemporaryDirectory() as output_dir:
                    report = run(config, output_dir=output_dir, progress=False)
                audit = report.audit
                cells = [
                    dataset,
                    family,
                    "∞" if math.isinf(report.privacy.epsilon) else f"{report.privacy.epsilon:.2f}",
                    f"{report.utility.overall.auroc:.3f}",
                ]
                if audit is None:
                    cells += ["–", "–", "–", "–"]
                else:
                    best = max(a.metrics.auc for a in audit.attacks)
                    cells += [
                        str(audit.num_models),
                        f"{best:.3f}",
                        f"{audit.patients.max_auc:.3f}",
                        f"{audit.bounds.patient.max_auc:.3f}",
                    ]
                cells += [
                    f"{report.timings['train_seconds']:.1f}",
                    f"{report.timings.get('audit_seconds', 0.0):.1f}",
                ]
                print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
