"""Signals of K audit models simulated with numpy: a known membership effect per record."""

import numpy as np

from dptrain.data.splits import balanced_membership_masks
from dptrain.privacy.accounting import PrivacySpend


def non_private_spend(
    *,
    n_units: int,
    delta: float = 1e-5,
    sample_rate: float = 0.05,
    steps: int = 100,
    epochs: int = 5,
) -> PrivacySpend:
    """The privacy spend of a non-private record-level run (ε = ∞), for analysing fake signals."""
    return PrivacySpend(
        private=False,
        unit="record",
        epsilon=float("inf"),
        epsilon_rdp=float("inf"),
        epsilon_target=float("inf"),
        delta=delta,
        noise_multiplier=0.0,
        sample_rate=sample_rate,
        steps=steps,
        epochs=epochs,
        max_grad_norm=1.0,
        accountant="prv",
        n_units=n_units,
        max_records_per_patient=1,
    )


def simulate_audit(
    *,
    num_models: int,
    true_z: np.ndarray,
    seed: int,
    record_patient: np.ndarray | None = None,
    pair_correlation: float = 0.0,
    model_leak_sd: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(signals, patient membership, record membership) with record r's true AUC Φ(true_z[r]).

    Each record's signal is N(level_r, 1) when OUT and N(level_r + √2·z_r, 1) when IN, so the
    binormal AUC of its IN-vs-OUT comparison is Φ(z_r); levels vary between records.

    ``pair_correlation``: the noise of a pair's two models on a record is correlated (real
    complementary pairs: −0.2 to −0.6), which leaves every record's AUC as it is.
    ``model_leak_sd``: model k leaks (1 + model_leak_sd · N(0, 1)) times the effect, on every
    record at once (models of one recipe differ in how much they overfit); a record's true AUC,
    over models, is then Φ(z_r / √(1 + z_r² · model_leak_sd²)).
    """
    rng = np.random.default_rng(seed)
    n_records = len(true_z)
    record_patient = np.arange(n_records) if record_patient is None else record_patient
    n_patients = int(record_patient.max()) + 1
    membership = balanced_membership_masks(
        patient_labels=np.zeros(n_patients, dtype=np.int64), num_models=num_models, seed=seed
    )
    record_membership = membership[:, record_patient]
    level = rng.normal(0.0, 2.0, n_records)
    noise = rng.normal(size=(num_models, n_records))
    if pair_correlation:
        c = pair_correlation
        noise[1::2] = c * noise[0::2] + np.sqrt(1 - c**2) * noise[1::2]
    leak = 1.0 + model_leak_sd * rng.normal(size=(num_models, 1)) if model_leak_sd else 1.0
    signals = level + np.sqrt(2.0) * np.asarray(true_z) * leak * record_membership + noise
    return signals, membership, record_membership


def memoriser_audit(cohort, levels, memoriser, *, audit, num_models: int, spend):
    """The audit of ``num_models`` simulated models, each ``memoriser(training_features)``,
    scoring the pool in full and at every knowledge level in ``levels``."""
    from dptrain.audit.knowledge import knowledge_signals
    from dptrain.audit.run import analyse_signals

    membership = balanced_membership_masks(
        patient_labels=cohort.patient_labels, num_models=num_models, seed=0
    )
    predictors = [memoriser(cohort.features[row]) for row in membership]
    signals = np.stack([predict(cohort.features) for predict in predictors]).astype(np.float64)
    imputed = np.stack([knowledge_signals(p, cohort.features, levels) for p in predictors])
    return analyse_signals(
        signals=signals,
        membership=membership,
        cohort=cohort,
        model_privacy=spend,
        audit=audit,
        seed=0,
        knowledge=levels,
        knowledge_signals=imputed,
    )
