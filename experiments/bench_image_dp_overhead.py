"""DP-SGD step time vs non-private step time, per verified grad_sample_mode, for the image models.

Each image model on 28×28 grey images (MedMNIST size), logical batch 64, SGD with momentum: the
GroupNorm CNN (16-32-64), a small GroupNorm ResNet, and the ScatterNet linear head on scattering
features computed once beforehand (as `fit` would reuse them; the one-off scattering cost is
printed separately). Step time does not depend on pixel values, so the images are seeded uniform
noise. A DP step runs through `dptrain.privacy.engine.make_private` on Opacus' Poisson-sampled
batches (expected size = the batch size); the non-private step on fixed-size batches. All models
and modes run in one process, interleaved across repeats, so machine noise hits them alike.

    python experiments/bench_image_dp_overhead.py [--steps 50] [--seconds 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
import torch
from steptime import interleaved_times

from dptrain.models import CNNConfig, ResNetConfig, ScatterNetConfig, model_name
from dptrain.training.loop import TensorRecords

IMAGE_SHAPE = (1, 28, 28)
N_CLASSES = 2


def image_models() -> dict[str, object]:
    """The benchmarked configs, by label."""
    return {
        "cnn 16-32-64": CNNConfig(),
        "resnet-18 layout, width 16": ResNetConfig(depth=18, width=16, groups=8),
        "scatternet + linear": ScatterNetConfig(),
    }


def training_records(config: object, n_images: int, *, scattering_seconds: dict) -> TensorRecords:
    """Seeded noise images (or their scattering features, timed), with balanced labels."""
    rng = np.random.default_rng(0)
    images = rng.random((n_images, *IMAGE_SHAPE), dtype=np.float32)
    frontend = getattr(config, "frontend", None)
    if frontend is not None:
        started = time.perf_counter()
        images = frontend(IMAGE_SHAPE).transform(images)
        scattering_seconds[model_name(config)] = time.perf_counter() - started
    labels = np.arange(n_images) % N_CLASSES
    return TensorRecords(torch.from_numpy(images), torch.from_numpy(labels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=1.0, help="time cap per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    scattering_seconds: dict[str, float] = {}
    models = image_models()
    records = {
        label: training_records(config, args.images, scattering_seconds=scattering_seconds)
        for label, config in models.items()
    }
    modes, times = interleaved_times(
        {label: (config, records[label]) for label, config in models.items()},
        repeats=args.repeats,
        n_outputs=N_CLASSES,
        multilabel=False,
        batch_size=args.batch_size,
        steps=args.steps,
        seconds=args.seconds,
    )
    print(
        f"28x28 grey, batch {args.batch_size}, {args.images} images, up to {args.steps} steps "
        f"or {args.seconds} s x {args.repeats} interleaved repeats, torch threads {args.threads}"
    )
    for name, seconds in scattering_seconds.items():
        print(f"{name}: scattering front end {1000 * seconds / args.images:.2f} ms/image, once")
    print(
        f"{'model':<28}{'grad_sample_mode':<20}{'ms/step':>9}{'min':>8}{'max':>8}"
        f"{'DP/non-DP':>11}{'(of mins)':>11}"
    )
    for label, config in models.items():
        baseline = statistics.median(times[label, "none"])
        baseline_min = min(times[label, "none"])
        default = type(config).default_grad_sample_mode
        for mode in modes[label]:
            median = statistics.median(times[label, mode])
            shown = "none (non-private)" if mode == "none" else mode
            shown += " *" if mode == default else ""
            print(
                f"{label:<28}{shown:<20}{median:>9.2f}{min(times[label, mode]):>8.2f}"
                f"{max(times[label, mode]):>8.2f}{median / baseline:>10.2f}x"
                f"{min(times[label, mode]) / baseline_min:>10.2f}x"
            )
    print("* the model's default_grad_sample_mode")


if __name__ == "__main__":
    main()
