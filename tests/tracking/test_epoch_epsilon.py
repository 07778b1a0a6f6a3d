"""The per-epoch ε a tracker plots is the configured accountant's and ends at the headline ε."""

import json

import pandas as pd
import pytest

from dptrain.audit.config import AuditConfig
from dptrain.models.mlp import MLPConfig
from dptrain.pipeline import RunConfig, run
from dptrain.privacy.accounting import PrivacyConfig
from dptrain.tracking.local import CsvTrackerConfig
from dptrain.training.config import TrainConfig


@pytest.mark.parametrize("accountant", ["prv", "rdp"])
def test_logged_epsilon_curve_ends_at_the_reported_epsilon(tmp_path, visits_config, accountant):
    config = RunConfig(
        data=visits_config,
        model=MLPConfig(hidden=[8]),
        privacy=PrivacyConfig(epsilon=3.0, unit="record", accountant=accountant),
        train=TrainConfig(epochs=3, batch_size=32),
        audit=AuditConfig(mode="none"),
    )
    tracker = CsvTrackerConfig().open(run_dir=tmp_path, run_name="r", config={})
    report = run(config, output_dir=tmp_path, tracker=tracker, progress=False)
    epochs = pd.read_csv(tmp_path / "tracker" / "epochs.csv")
    assert list(epochs.columns) == ["step", "loss", "epsilon", "epsilon_rdp"]
    spend = report.privacy
    assert epochs["epsilon"].iloc[-1] == pytest.approx(spend.epsilon, rel=1e-12)
    assert epochs["epsilon_rdp"].iloc[-1] == pytest.approx(spend.epsilon_rdp, rel=1e-12)
    assert epochs["epsilon"].is_monotonic_increasing and len(epochs) == 3
    if accountant == "prv":  # the RDP curve, plotted as ε before, ends above the target
        assert spend.epsilon <= 3.0 < epochs["epsilon_rdp"].iloc[-1]
    history = json.loads((tmp_path / "results.json").read_text())["history"]
    assert history[-1]["epsilon"] == pytest.approx(spend.epsilon, rel=1e-12)
