"""Patient-level vs record-level DP-SGD step time at the same number of records per batch (#9).

For the MLP (20 tabular features), the GroupNorm image CNN (1×28×28) and the 1-D CNN of the ECG
experiments (PTB-XL: 12 leads × 500 samples, 50 Hz; MIT-BIH: 1 lead × 84-sample beats, 120 Hz,
both with the sizes of ``conf/experiment/{ptbxl,mitbih}.yaml``), and k = 1, 4 and 32 records
per patient: one DP-SGD step (forward, backward, per-sample gradients, clipping, noise, SGD with
momentum) with ``privacy.unit=record`` vs ``privacy.unit=patient`` at the same expected number of
records per batch (default 256 records: 256 / k patients per patient-level batch).

Both units run through `dptrain.privacy.engine.make_private` (`PrivacyEngine` or
`PatientPrivacyEngine`) on Opacus' Poisson-sampled batches. The record-level step is
`steptime.ms_per_step`, the helper of the other DP-overhead benchmarks; the patient-level step is
the same recipe on `PatientRecords` / `PatientLoss`, with the loop body of
`dptrain.training.loop.train_epochs` (``set_batch_patients``, ``batch_loss``, backward, step).
Patient-level DP needs materialised per-sample gradients (hooks or functorch; ``auto`` picks
hooks for all three models), so the ratio is taken against record-level ``hooks``; the record-level
default mode (ghost for the MLP, functorch for the 1-D CNN) is shown as well. Poisson sampling
over 256 / k patients makes the records of a patient-level batch vary a lot (±35 % at k = 32), so
its time is normalised to the expected records per batch (total time / records seen × expected
records); the mean records per step are printed. Everything runs in one process, interleaved over
repeats, so machine noise hits all variants alike.

Torch threads default to 1: on a 2-core machine shared with other jobs an intra-op parallel region
waits for its slowest thread, so at 2 threads single ops stall whenever a core is taken (the same
``index_add_`` measured 0.9 ms at best and 197 ms at worst) and step times scatter several-fold.

    python experiments/bench_patient_step.py [--steps 10] [--seconds 2] [--repeats 5] \
        [--batch-records 256] [--threads 1] [--only mlp cnn1d ...] [--profile K]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time
import warnings

import numpy as np
import torch
from steptime import ms_per_step
from torch.utils.data import DataLoader

from dptrain.models import CNNConfig, MLPConfig
from dptrain.models.ecg import CNN1DConfig
from dptrain.privacy.engine import TrainingParts, make_private
from dptrain.training.loop import RecordLoss, TensorRecords, already_batched, batch_loss
from dptrain.training.patients import PatientLoss, PatientRecords

N_OUTPUTS = 2
RECORDS_PER_PATIENT = (1, 4, 32)


def setups() -> dict[str, tuple[object, tuple[int, ...]]]:
    """The benchmarked (model config, record shape) pairs, by label."""
    return {
        "mlp 64-64, 20 features": (MLPConfig(), (20,)),
        "cnn 16-32-64, 1x28x28": (CNNConfig(), (1, 28, 28)),
        "cnn1d w16, PTB-XL 12x500": (CNN1DConfig(width=16, kernel_sizes=[7, 5, 5, 3]), (12, 500)),
        "cnn1d w16 d3, MIT-BIH 1x84": (
            CNN1DConfig(width=16, depth=3, kernel_sizes=[7, 5, 3], stem_stride=1),
            (1, 84),
        ),
    }


def training_records(shape: tuple[int, ...], n_records: int) -> TensorRecords:
    """Seeded Gaussian-noise records with balanced labels (step time ignores the values)."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(n_records, *shape)).astype(np.float32)
    labels = np.arange(n_records) % N_OUTPUTS
    return TensorRecords(torch.from_numpy(features), torch.from_numpy(labels))


def patient_ms_per_step(
    config: object,
    mode: str,
    records: TensorRecords,
    *,
    records_per_patient: int,
    batch_records: int,
    steps: int,
    seconds: float,
) -> tuple[float, float]:
    """ms per patient-level step of ``batch_records`` records, and the mean records per step.

    The recipe of `steptime.ms_per_step` (two warm-up steps, then ``steps`` steps or fewer, at
    least two, once ``seconds`` have passed), with patients of ``records_per_patient`` records
    (assigned to records by a seeded permutation) as the loader's items.
    """
    torch.manual_seed(0)
    n_patients = len(records) // records_per_patient
    order = np.random.default_rng(1).permutation(n_patients * records_per_patient)
    record_patient = np.empty(len(records), dtype=np.int64)
    record_patient[order] = np.arange(len(order)) // records_per_patient
    patients = PatientRecords(records, record_patient, n_patients=n_patients)
    module = config.build(tuple(records.features.shape[1:]), N_OUTPUTS)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.05, momentum=0.9)
    criterion = PatientLoss(RecordLoss(multilabel=False, class_weights=None))
    loader = DataLoader(
        patients,
        batch_size=batch_records // records_per_patient,
        shuffle=True,
        collate_fn=already_batched,
        generator=torch.Generator().manual_seed(0),
    )
    parts = make_private(
        TrainingParts(module, optimizer, criterion, loader),
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        grad_sample_mode=mode,
        accountant="prv",
        noise_seed=0,
        unit="patient",
    )
    module, optimizer = parts.module, parts.optimizer
    module.train()

    def run(limit: int, deadline: float) -> tuple[int, int]:
        done = seen = 0
        while done < limit:
            for features, labels, record_patient in parts.data_loader:
                optimizer.zero_grad(set_to_none=True)
                n_batch = int(record_patient.max()) + 1 if len(record_patient) else 0
                optimizer.set_batch_patients(record_patient, n_batch)
                batch_loss(module, criterion, features, labels, None, 1, record_patient).backward()
                optimizer.step()
                done, seen = done + 1, seen + len(labels)
                if done == limit or (done >= 2 and time.perf_counter() > deadline):
                    return done, seen
        return done, seen

    run(2, deadline=0.0)  # warm-up
    started = time.perf_counter()
    done, seen = run(steps, deadline=started + seconds)
    elapsed = 1000.0 * (time.perf_counter() - started)
    return elapsed / max(seen, 1) * batch_records, seen / done


def interleaved(
    chosen: dict[str, tuple[object, tuple[int, ...]]],
    *,
    repeats: int,
    n_records: int,
    batch_records: int,
    steps: int,
    seconds: float,
) -> tuple[dict[tuple[str, str], list[float]], dict[tuple[str, str], list[float]]]:
    """(label, variant) -> ms/step per repeat, and -> mean records per step (patient variants)."""
    times: dict[tuple[str, str], list[float]] = {}
    sizes: dict[tuple[str, str], list[float]] = {}
    data = {label: training_records(shape, n_records) for label, (_, shape) in chosen.items()}
    for _ in range(repeats):
        for label, (config, _) in chosen.items():
            default = type(config).default_grad_sample_mode
            for mode in dict.fromkeys(("hooks", default)):
                times.setdefault((label, f"record {mode}"), []).append(
                    ms_per_step(
                        config,
                        mode,
                        data[label],
                        n_outputs=N_OUTPUTS,
                        multilabel=False,
                        batch_size=batch_records,
                        steps=steps,
                        seconds=seconds,
                    )
                )
            for k in RECORDS_PER_PATIENT:
                ms, size = patient_ms_per_step(
                    config,
                    "hooks",
                    data[label],
                    records_per_patient=k,
                    batch_records=batch_records,
                    steps=steps,
                    seconds=seconds,
                )
                times.setdefault((label, f"patient k={k}"), []).append(ms)
                sizes.setdefault((label, f"patient k={k}"), []).append(size)
    return times, sizes


def profile_patient_steps(
    chosen: dict, *, k: int, n_records: int, batch_records: int, steps: int
) -> None:
    """cProfile of patient-level hooks steps at ``k`` records per patient, by own time."""
    for label, (config, shape) in chosen.items():
        profiler = cProfile.Profile()
        profiler.enable()
        patient_ms_per_step(
            config,
            "hooks",
            training_records(shape, n_records),
            records_per_patient=k,
            batch_records=batch_records,
            steps=steps,
            seconds=1e9,
        )
        profiler.disable()
        print(f"\n### profile: {label}, patient-level hooks, k = {k}")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=2.0, help="time cap per measurement")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-records", type=int, default=256, help="expected records/batch")
    parser.add_argument("--records", type=int, default=1024, help="training records")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (see docstring)")
    parser.add_argument("--only", nargs="*", default=None, help="labels to run (default all)")
    parser.add_argument(
        "--profile", type=int, default=0, metavar="K", help="cProfile patient steps at k = K"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    if any(
        args.batch_records % k or args.records % args.batch_records for k in RECORDS_PER_PATIENT
    ):
        parser.error("--batch-records must divide --records and be a multiple of 32")
    chosen = {k: v for k, v in setups().items() if not args.only or any(o in k for o in args.only)}
    if args.profile:
        profile_patient_steps(
            chosen,
            k=args.profile,
            n_records=args.records,
            batch_records=args.batch_records,
            steps=args.steps,
        )
        return
    times, sizes = interleaved(
        chosen,
        repeats=args.repeats,
        n_records=args.records,
        batch_records=args.batch_records,
        steps=args.steps,
        seconds=args.seconds,
    )
    print(
        f"{args.batch_records} expected records per batch, {args.records} records, up to "
        f"{args.steps} steps or {args.seconds} s x {args.repeats} interleaved repeats, "
        f"torch threads {torch.get_num_threads()}, torch {torch.__version__}"
    )
    print(
        "| model | variant | records/step | ms/step (median) | min | max | ratio (median) "
        "| ratio (min) | vs record default |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    misses = []
    for label, (config, _) in chosen.items():
        baseline = times[label, "record hooks"]
        default = type(config).default_grad_sample_mode
        default_median = statistics.median(times[label, f"record {default}"])
        for (row_label, variant), values in times.items():
            if row_label != label:
                continue
            median = statistics.median(values)
            patient = variant.startswith("patient")
            size = sizes.get((label, variant))
            shown_size = f"{statistics.mean(size):.0f}" if size else f"~{args.batch_records}"
            ratios = ("", "", "")
            if patient:
                ratios = (
                    f"{median / statistics.median(baseline):.2f}x",
                    f"{min(values) / min(baseline):.2f}x",
                    f"{median / default_median:.2f}x",
                )
                if median > 2 * statistics.median(baseline):
                    misses.append(f"{label}, {variant}")
                shown = f"{variant} (hooks)"
            else:
                shown = variant + (" (default)" if variant.split()[-1] == default else "")
            print(
                f"| {label} | {shown} | {shown_size} | {median:.1f} | {min(values):.1f} | "
                f"{max(values):.1f} | {' | '.join(ratios)} |"
            )
    verdict = "met for every (model, k)" if not misses else f"MISSED for {'; '.join(misses)}"
    print(
        "\nratio: patient-level hooks / record-level hooks (median: of the medians; min: of the "
        "fastest repeats); vs record default: median / median of the record-level default mode"
        f"\n<= 2x target (median ratio, same grad_sample_mode): {verdict}"
    )


if __name__ == "__main__":
    main()
