"""The library path without Hydra: `run` with a plain `RunConfig`."""

from dptrain.audit.config import AuditConfig
from dptrain.models import MLPConfig
from dptrain.pipeline import RunConfig, run
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
