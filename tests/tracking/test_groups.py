"""Which group a run's tracker gets: the sweep directory in a multirun, unless the user chose."""

from pathlib import Path
from types import SimpleNamespace

from hydra.types import RunMode

from dptrain.cli.main import _with_sweep_group
from dptrain.tracking.local import CsvTrackerConfig
from dptrain.tracking.mlflow_tracker import MlflowTrackerConfig
from dptrain.tracking.wandb import WandbTrackerConfig


def _hydra(mode: RunMode, sweep_dir: Path) -> SimpleNamespace:
    return SimpleNamespace(mode=mode, sweep=SimpleNamespace(dir=str(sweep_dir)))


def test_multirun_jobs_are_grouped_by_their_sweep_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    multirun = _hydra(RunMode.MULTIRUN, Path("multirun/2026-01-31/10-00-00"))
    for config in (WandbTrackerConfig(), MlflowTrackerConfig()):
        assert _with_sweep_group(config, multirun).group == "multirun/2026-01-31/10-00-00"
    assert _with_sweep_group(WandbTrackerConfig(group="mine"), multirun).group == "mine"
    assert _with_sweep_group(CsvTrackerConfig(), multirun) == CsvTrackerConfig()


def test_a_single_run_has_no_group_unless_one_is_set(tmp_path):
    single = _hydra(RunMode.RUN, tmp_path / "multirun" / "x")
    assert _with_sweep_group(WandbTrackerConfig(), single).group is None
    assert _with_sweep_group(MlflowTrackerConfig(group="pilot"), single).group == "pilot"
