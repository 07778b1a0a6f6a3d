"""The library path without Hydra: `run` with a plain `RunConfig`."""

from dptrain.audit.config import AuditConfig
from dptrain.models import MLPConfig
from dptrain.pipeline import RunConfig, run
from dptrain.privacy.accounting import PrivacyConfig
from dptrain.privacy.bounds import dp_sgd_attack_bound
from dptrain.reporting.results import read_results
from dptrain.tracking.base import FailSoftTracker, NullTracker
from dptrain.training.config import TrainConfig


class BrokenTracker(NullTracker):
    """A tracker whose service is down: every call fails."""

    def __getattribute__(self, name):
        if name.startswith("log_") or name == "close":
            raise ConnectionError("tracker service unreachable")
        return super().__getattribute__(name)


def test_a_failing_tracker_never_stops_training_or_loses_results(tmp_path, visits_config):
    tracker = FailSoftTracker(BrokenTracker())
    report = run(
        RunConfig(
            data=visits_config,
            model=MLPConfig(hidden=[8]),
            train=TrainConfig(epochs=2, batch_size=32),
            audit=AuditConfig(mode="none"),
        ),
        output_dir=tmp_path,
        tracker=tracker,
        progress=False,
    )
    tracker.close(success=True)
    assert {"log_epoch", "log_summary", "log_artifact", "close"} <= set(tracker.failures)
    results = read_results(tmp_path / "results.json")
    assert results["privacy"]["epsilon"] == report.privacy.epsilon <= 8.0
    assert results["config"]["privacy"]["epsilon"] == 8.0  # derived from the RunConfig itself
    assert (tmp_path / "report.md").exists() and (tmp_path / "model.pt").exists()


def test_patient_level_run_audits_and_bounds_per_patient(tmp_path, visits_config):
    report = run(
        RunConfig(
            data=visits_config,
            model=MLPConfig(hidden=[8]),
            privacy=PrivacyConfig(epsilon=4.0, unit="patient", accountant="rdp"),
            train=TrainConfig(epochs=2, batch_size=16),
            audit=AuditConfig(
                num_models=4, workers=1, null_repeats=2, rmia_num_population=50, attacks=["loss"]
            ),
        ),
        output_dir=tmp_path,
        tracker=NullTracker(),
        progress=False,
    )
    audit = report.audit
    assert report.privacy.unit == "patient" and report.privacy.max_records_per_patient == 3
    models = audit.model_privacy
    assert models.unit == "patient" and models.n_units == audit.model_training_patients[0]
    assert 3.9 < models.epsilon <= 4.0
    # One patient is one unit: the plain bound of (σ, q, steps), no group privacy, no record bound.
    plain = dp_sgd_attack_bound(
        noise_multiplier=models.noise_multiplier,
        sample_rate=models.sample_rate,
        steps=models.steps,
    )
    assert audit.bounds.patient.max_auc == plain.max_auc < 1.0
    assert audit.bounds.patient.method == "pld" and audit.bounds.classic_group_privacy is None
    assert audit.bounds.patient_epsilon == models.epsilon
    assert audit.bounds.record.method == "not-applicable" and audit.bounds.record.max_auc == 1.0
    results = read_results(tmp_path / "results.json")
    assert results["privacy"]["unit"] == "patient"
    assert results["config"]["privacy"]["unit"] == "patient"
    text = (tmp_path / "report.md").read_text()
    assert "ε is per **patient**" in text and "ε is per **record**" not in text
    assert "training patients)" in text and "group privacy" not in text
