"""The core generalisation must not move the default ACTG 175 figures: pinned at a small K.

Values measured with the code before records of any shape, data-owned preprocessing and the
privacy plan existed (commit c64cb12); the default recipe, seed 0, K = 4, one worker.
"""

from __future__ import annotations

import pytest
import torch

from dptrain.cli.config import compose_run_config
from dptrain.pipeline import run

PINNED = {
    "epsilon": 7.994326608270794,
    "noise_multiplier": 1.47216796875,
    "auroc": 0.7811312915479582,
    "auprc": 0.5401622150096478,
    "accuracy": 0.7827102803738317,
    "last_loss": 1.2274833577019828,
    "loss_attack_auc": 0.5105739848635757,
    "signal_sum": 22545.341028489172,
    "first_signal": 6.497766733169556,
}


def run_default(output_dir, *overrides: str):
    """The default ACTG 175 run at K = 4, one worker, one intra-op thread."""
    config = compose_run_config(
        ["audit.num_models=4", "audit.workers=1", "tracker=none", *overrides]
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run(config, output_dir=output_dir, progress=False)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_default_actg175_figures_are_unchanged(tmp_path):
    report = run_default(tmp_path)
    audit = report.audit
    measured = {
        "epsilon": report.privacy.epsilon,
        "noise_multiplier": report.privacy.noise_multiplier,
        "auroc": report.utility.overall.auroc,
        "auprc": report.utility.overall.auprc,
        "accuracy": report.utility.overall.accuracy,
        "last_loss": report.history[-1].loss,
        "loss_attack_auc": next(a for a in audit.attacks if a.name == "loss").metrics.auc,
        "signal_sum": float(audit.signals.sum()),
        "first_signal": float(audit.signals[0, 0]),
    }
    assert measured == pytest.approx(PINNED, rel=1e-6, abs=1e-9)


# `train.early_stopping=true` (opt-in; on in experiment=epsilon_sweep): 171 of the 1711 training
# patients choose the epoch, the audit's models train the kept 16 epochs with the σ of 30.
PINNED_EARLY_STOPPING = {
    "epsilon": 7.994326608270794,
    "n_units": 1540,
    "auroc": 0.7758487654320988,
    "kept_epoch": 16,
    "validation_score": 0.8058324104835732,
    "model_epochs": 16,
    "model_epsilon": 5.682461962712532,
    "loss_attack_auc": 0.5085784144981303,
    "signal_sum": 20623.44311456289,
}


@pytest.mark.slow
def test_default_actg175_figures_with_early_stopping_are_unchanged(tmp_path):
    report = run_default(tmp_path, "train.early_stopping=true")
    audit = report.audit
    measured = {
        "epsilon": report.privacy.epsilon,
        "n_units": report.privacy.n_units,
        "auroc": report.utility.overall.auroc,
        "kept_epoch": report.training["kept_epoch"],
        "validation_score": report.training["validation_score"],
        "model_epochs": audit.model_privacy.epochs,
        "model_epsilon": audit.model_privacy.epsilon,
        "loss_attack_auc": next(a for a in audit.attacks if a.name == "loss").metrics.auc,
        "signal_sum": float(audit.signals.sum()),
    }
    assert measured == pytest.approx(PINNED_EARLY_STOPPING, rel=1e-6, abs=1e-9)
