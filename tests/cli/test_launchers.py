"""Hydra launchers: the cluster configs compose, and a sweep through submitit really runs."""

import json
import os
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher

from dptrain.cli.config import CONFIG_DIR, register_schemas

from ..conftest import table_overrides

# What each launcher option needs installed (`pip install 'dptrain[launchers]'`).
LAUNCHERS = {
    "joblib": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
    "submitit_local": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher",
    "submitit_slurm": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
}


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_each_launcher_option_composes_and_names_its_plugin(launcher):
    pytest.importorskip(LAUNCHERS[launcher].rsplit(".", 2)[0])
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name="config",
            overrides=[f"hydra/launcher={launcher}"],
            return_hydra_config=True,
        )
    GlobalHydra.instance().clear()
    assert cfg.hydra.launcher._target_ == LAUNCHERS[launcher]
    plugin_names = {
        f"{plugin.__module__}.{plugin.__name__}" for plugin in Plugins.instance().discover(Launcher)
    }
    assert LAUNCHERS[launcher] in plugin_names


@pytest.mark.slow
def test_a_two_job_sweep_runs_through_the_submitit_local_launcher(tmp_path, visits_csv):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep_dir = tmp_path / "sweep"
    command = [
        sys.executable,
        "-m",
        "dptrain",
        "-m",
        "privacy.epsilon=2,4",
        *table_overrides(visits_csv),
        "train.epochs=1",
        "train.batch_size=32",
        "audit.mode=none",
        "tracker=none",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=10",
        f"hydra.sweep.dir={sweep_dir}",
        "hydra.sweep.subdir=${hydra.job.num}",
    ]
    env = {**os.environ, "HYDRA_FULL_ERROR": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    epsilons = []
    for job in ("0", "1"):
        results = json.loads((sweep_dir / job / "results.json").read_text())
        assert results["status"] == "complete"
        epsilons.append(results["config"]["privacy"]["epsilon"])
    assert epsilons == [2.0, 4.0]
    # Each job ran in its own submitit process, which left its own log folder.
    assert len([path for path in (sweep_dir / ".submitit").iterdir() if path.name != "%j"]) == 2
