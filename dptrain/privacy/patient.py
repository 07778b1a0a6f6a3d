"""Patient-level DP-SGD on Opacus: one clipped gradient per sampled patient.

Opacus samples, clips and noises per *sample*. Patient-level DP needs a sample to be a patient
with all of its records, and Opacus cannot express that (its user-level request #366 is open).
The smallest extension is here, everything else is Opacus':

- the loader's Poisson sampler draws patients (the dataset's items are patients, see
  `dptrain.training.patients.PatientRecords`), so its rate q and the accountant's are over patients;
- Opacus' hooks (or functorch) still compute one gradient per *record*, and
  `PatientDPOptimizer.clip_and_accumulate` sums them per patient before Opacus clips, so the
  clipped sum — and with it the sensitivity to adding or removing one patient — is bounded by C
  whatever the patient's number of records;
- noise σC and the division by the expected batch size (expected patients per batch) are Opacus'.
"""

from __future__ import annotations

import torch
from opacus import PrivacyEngine
from opacus.optimizers import DPOptimizer
from torch import optim


class PatientDPOptimizer(DPOptimizer):
    """A `DPOptimizer` that clips the sum of each patient's per-record gradients as one sample.

    Before every ``step`` the training loop sets ``record_patient``, the batch's
    ``(n_records,)`` int64 index of each record's patient (0 .. n_patients - 1 in the batch).

    Attributes:
        record_patient: ``(n_records,)`` patient of each record of the current (physical) batch;
            None makes the optimiser an ordinary record-level `DPOptimizer`.
        n_patients: Patients in the current (physical) batch.
    """

    record_patient: torch.Tensor | None = None
    n_patients: int = 0

    def set_batch_patients(self, record_patient: torch.Tensor, n_patients: int) -> None:
        """Tells the optimiser which patient each record of the coming backward pass belongs to."""
        self.record_patient, self.n_patients = record_patient, n_patients

    def clip_and_accumulate(self) -> None:
        """Sums each patient's per-record gradients, then lets Opacus clip and accumulate them.

        Opacus clips every row of ``p.grad_sample`` to C. Replacing the ``(n_records, ...)`` rows
        by their ``(n_patients, ...)`` per-patient sums (index_add, the same linear map for every
        parameter) makes a row a patient, so the flat clipping norm is taken over a patient's
        whole gradient across all parameters — the patient-level sensitivity C.

        The loss is a mean over the batch's patients (`dptrain.training.patients.PatientLoss`),
        and Opacus' ``mean`` reduction multiplies per-sample gradients by the batch size it sees,
        the number of *records*; the factor n_patients / n_records turns that into the number of
        patients, so a row is exactly the gradient of the patient's mean loss.
        """
        if self.record_patient is not None:
            n_records = len(self.record_patient)
            rescale = self.n_patients / n_records if n_records else 1.0
            # Record i is patient i (every sampled patient has one record, in order): the rows
            # already are the patients' gradients and the rescale is 1, so the copy is skipped.
            patients = self.record_patient
            one_record_each = self.n_patients == n_records and torch.equal(
                patients, torch.arange(n_records, dtype=patients.dtype, device=patients.device)
            )
            for p in self.params:
                per_record = self._get_flat_grad_sample(p)
                index = self.record_patient.to(per_record.device)
                if len(index) != len(per_record):
                    raise RuntimeError(
                        f"{len(per_record)} per-sample gradients for {len(index)} records: the "
                        "batch's patient index does not match the backward pass"
                    )
                if one_record_each:
                    continue
                per_patient = per_record.new_zeros((self.n_patients, *per_record.shape[1:]))
                p.grad_sample = per_patient.index_add_(0, index, per_record, alpha=rescale)
        super().clip_and_accumulate()


class PatientPrivacyEngine(PrivacyEngine):
    """Opacus' `PrivacyEngine` whose optimiser is a `PatientDPOptimizer`.

    Only the optimiser class changes (Opacus picks it from a fixed table in
    ``_prepare_optimizer``); the accountant, noise generator, Poisson loader and grad sample module
    are Opacus' own. Flat clipping on one process only.
    """

    def _prepare_optimizer(
        self,
        *,
        optimizer: optim.Optimizer,
        noise_multiplier: float,
        max_grad_norm: float,
        expected_batch_size: int,
        loss_reduction: str = "mean",
        distributed: bool = False,
        clipping: str = "flat",
        noise_generator: torch.Generator | None = None,
        grad_sample_mode: str = "hooks",
        **kwargs,
    ) -> DPOptimizer:
        if distributed or clipping != "flat" or grad_sample_mode not in ("hooks", "functorch"):
            raise ValueError(
                "patient-level DP-SGD supports flat clipping on one process with hooks or "
                f"functorch, got clipping={clipping}, distributed={distributed}, "
                f"grad_sample_mode={grad_sample_mode}"
            )
        if isinstance(optimizer, DPOptimizer):
            optimizer = optimizer.original_optimizer
        return PatientDPOptimizer(
            optimizer=optimizer,
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            expected_batch_size=expected_batch_size,
            loss_reduction=loss_reduction,
            generator=self.secure_rng if self.secure_mode else noise_generator,
            secure_mode=self.secure_mode,
            **kwargs,
        )
