"""End-to-end wall time of the image experiments: `dptrain experiment=X` as a user runs it.

Each experiment runs in its own process (the real CLI, W&B off), one after the other; the table
gives the whole command's wall time beside the stages `results.json` records, K, and the target.

    python experiments/bench_image_experiments.py                       # ~8 min on 2 cores
    python experiments/bench_image_experiments.py --experiments breastmnist
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_MINUTES = {"breastmnist": 5, "pneumoniamnist": 15}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--experiments", nargs="+", default=list(TARGET_MINUTES))
    parser.add_argument("overrides", nargs="*", help="extra dptrain overrides")
    args = parser.parse_args()
    print("| experiment | K | wall s | load s | front end s | train s | audit s | target | ok |")
    print("|---|---|---|---|---|---|---|---|---|")
    for experiment in args.experiments:
        with tempfile.TemporaryDirectory() as run_dir:
            command = [
                sys.executable,
                "-m",
                "dptrain",
                f"experiment={experiment}",
                "tracker=none",
                f"hydra.run.dir={run_dir}",
                *args.overrides,
            ]
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            wall = time.perf_counter() - started
            results = json.loads((Path(run_dir) / "results.json").read_text())
        timings = results["timings"]
        target = TARGET_MINUTES.get(experiment, float("inf")) * 60
        cells = [
            experiment,
            results["audit"]["num_models"] if results.get("audit") else 0,
            f"{wall:.0f}",
            f"{timings['load_seconds']:.1f}",
            f"{timings.get('frontend_seconds', 0.0):.1f}",
            f"{timings['train_seconds']:.1f}",
            f"{timings.get('audit_seconds', 0.0):.0f}",
            f"{target / 60:.0f} min",
            "yes" if wall <= target else "NO",
        ]
        print("| " + " | ".join(str(cell) for cell in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
