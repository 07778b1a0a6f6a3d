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


@pytest.mark.slow
def test_default_actg175_figures_are_unchanged(tmp_path):
    config = compose_run_config(["audit.num_models=4", "audit.workers=1", "tracker=none"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        report = run(config, output_dir=tmp_path, progress=False)
    finally:
        torch.set_num_threads(threads)
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
