"""The library path without Hydra: `run` with a plain `RunConfig`."""

import math

from dptrain import pipeline
from dptrain.audit.config import AuditConfig
from dptrain.models import MLPConfig
from dptrain.pipeline import RunConfig, run
from dptrain.privacy.accounting import PrivacyConfig
from dptrain.privacy.bounds import dp_sgd_attack_bound
from dptrain.reporting.results import read_results
from dptrain.tracking.base import FailSoftTracker, NullTracker
from dptrain.training.config import TrainConfig
from dptrain.training.fit import fit


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


def test_early_stopping_keeps_validation_patients_out_of_the_dp_data(
    tmp_path, visits_config, monkeypatch
):
    seen = {}

    def recording_fit(**kwargs):
        model = fit(**kwargs)
        seen.setdefault("target", kwargs)  # the deployed model's call (the audit's come later)
        return model

    monkeypatch.setattr(pipeline, "fit", recording_fit)
    report = run(
        RunConfig(
            data=visits_config,
            model=MLPConfig(hidden=[8]),
            privacy=PrivacyConfig(epsilon=4.0, unit="record", accountant="rdp"),
            train=TrainConfig(
                epochs=3, batch_size=16, early_stopping=True, validation_fraction=0.2
            ),
            audit=AuditConfig(
                num_models=4, workers=1, null_repeats=2, rmia_num_population=50, attacks=["loss"]
            ),
        ),
        output_dir=tmp_path,
        tracker=NullTracker(),
        progress=False,
    )
    trained, validation = seen["target"]["cohort"], seen["target"]["validation"]
    assert not set(validation.patients) & set(trained.patients)
    data = report.data
    assert data["train"]["n_patients"] == trained.n_patients
    assert data["validation"]["n_patients"] == validation.n_patients == 19  # 0.2 of 96
    assert trained.n_patients + validation.n_patients + data["test"]["n_patients"] == 120
    # The privacy plan is for the data trained on: N, q and δ < 1/N without the validation.
    spend = report.privacy
    assert spend.n_units == trained.n_records and spend.delta < 1 / trained.n_records
    assert spend.sample_rate == 1 / math.ceil(trained.n_records / 16)
    assert spend.epochs == 3 and spend.steps == 3 * math.ceil(trained.n_records / 16)
    # The audit's models train the kept epochs, with the σ planned for all epochs.
    kept = report.training["kept_epoch"]
    models = report.audit.model_privacy
    assert models.epochs == kept and models.steps == kept * math.ceil(models.n_units / 16)
    results = read_results(tmp_path / "results.json")
    summary = results["summary"]
    assert summary["train/early_stopping"] is True and summary["train/kept_epoch"] == kept
    assert summary["train/epochs_run"] == 3 and summary["train/validation_patients"] == 19
    assert summary["train/validation_metric"] == "auroc"
    note = "validation patients: 19 patients kept out of the DP data; they choose only the "
    assert results["training"]["validation_note"].startswith(note)
    assert "not covered by ε" in results["training"]["validation_note"]
    assert [row["validation"] is not None for row in results["history"]] == [True] * 3
    text = (tmp_path / "report.md").read_text()
    assert f"epoch **{kept} of 3**" in text and "Validation patients: 19 patients kept" in text
    assert "covers all 3 epochs run" in text
    assert f"The audit's models train for exactly {kept} epochs" in text
