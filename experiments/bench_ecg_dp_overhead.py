"""DP-SGD step time vs non-private step time, per verified grad_sample_mode, for the ECG models.

The default GroupNorm 1-D CNN (`CNN1DConfig`) on PTB-XL-shaped records (12 leads × 1,000
samples, 10 s at 100 Hz) and on MIT-BIH beat windows (1 lead × 252 samples), and the scattering-1D
head on PTB-XL scattering features computed once beforehand (as `fit` reuses them; the one-off
scattering cost is printed separately). Logical batch 64, SGD with momentum. Step time does not
depend on signal values, so the signals are seeded Gaussian noise. A DP step runs through
`dptrain.privacy.engine.make_private` on Opacus' Poisson-sampled batches; the non-private step on
fixed-size batches. All setups run in one process, interleaved across repeats.

    python experiments/bench_ecg_dp_overhead.py [--steps 20] [--seconds 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
import torch
from steptime import interleaved_times

from dptrain.models.ecg import CNN1DConfig, Scatter1DConfig
from dptrain.training.loop import TensorRecords

N_OUTPUTS = 5


def setups() -> dict[str, tuple[object, tuple[int, int]]]:
    """The benchmarked (config, record shape) pairs, by label."""
    return {
        "cnn1d, PTB-XL 12x1000": (CNN1DConfig(), (12, 1000)),
        "cnn1d, MIT-BIH beat 1x252": (CNN1DConfig(), (1, 252)),
        "scatter1d + cnn head, PTB-XL": (Scatter1DConfig(), (12, 1000)),
    }


def training_records(
    config: object, shape: tuple[int, int], n_records: int, *, frontend_seconds: dict, label: str
) -> TensorRecords:
    """Seeded noise signals (or their scattering features, timed), with 0/1 labels."""
    rng = np.random.default_rng(0)
    signals = rng.normal(size=(n_records, *shape)).astype(np.float32)
    frontend = getattr(config, "frontend", None)
    if frontend is not None:
        started = time.perf_counter()
        signals = frontend(shape).transform(signals)
        frontend_seconds[label] = time.perf_counter() - started
    labels = (rng.random((n_records, N_OUTPUTS)) < 0.3).astype(np.int64)
    return TensorRecords(torch.from_numpy(signals), torch.from_numpy(labels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=2.0, help="time cap per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--records", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="*", default=None, help="labels to run (default all)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    chosen = {k: v for k, v in setups().items() if not args.only or any(o in k for o in args.only)}
    frontend_seconds: dict[str, float] = {}
    records = {
        label: training_records(
            config, shape, args.records, frontend_seconds=frontend_seconds, label=label
        )
        for label, (config, shape) in chosen.items()
    }
    modes, times = interleaved_times(
        {label: (config, records[label]) for label, (config, _) in chosen.items()},
        repeats=args.repeats,
        n_outputs=N_OUTPUTS,
        multilabel=True,
        batch_size=args.batch_size,
        steps=args.steps,
        seconds=args.seconds,
    )
    print(
        f"batch {args.batch_size}, {args.records} records, up to {args.steps} steps or "
        f"{args.seconds} s x {args.repeats} interleaved repeats, torch threads {args.threads}"
    )
    for label, seconds in frontend_seconds.items():
        print(f"{label}: scattering front end {1000 * seconds / args.records:.2f} ms/record, once")
    print("| model | grad_sample_mode | ms/step | min | max | DP / non-private |")
    print("|---|---|---|---|---|---|")
    for label, (config, _) in chosen.items():
        baseline = statistics.median(times[label, "none"])
        default = type(config).default_grad_sample_mode
        for mode in modes[label]:
            median = statistics.median(times[label, mode])
            shown = "none (non-private)" if mode == "none" else mode
            shown += " (default)" if mode == default else ""
            print(
                f"| {label} | {shown} | {median:.1f} | {min(times[label, mode]):.1f} | "
                f"{max(times[label, mode]):.1f} | {median / baseline:.2f}x |"
            )


if __name__ == "__main__":
    main()
