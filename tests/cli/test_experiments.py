"""Every saved experiment composes and builds (lightning-hydra-template's experiment=glob(*))."""

from pathlib import Path

import pytest

from dptrain.cli.config import CONFIG_DIR, build_run_config

EXPERIMENTS = sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"))
# Experiments over the user's own files need those files named.
REQUIRED = {
    "image_folder": [
        "data.path=metadata.csv",
        "data.path_column=path",
        "data.id_column=patient_id",
        "data.label_columns=[label]",
    ],
}


def test_the_modality_experiments_are_there():
    assert {"breastmnist", "pneumoniamnist", "image_folder", "ptbxl", "mitbih"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_into_library_objects(compose_config, experiment):
    run_config, _ = build_run_config(
        compose_config([f"experiment={experiment}", *REQUIRED.get(experiment, [])])
    )
    assert run_config.audit.num_models >= 16 or not run_config.audit.enabled
    assert run_config.train.epochs >= 1


@pytest.mark.parametrize("model", ["mlp", "cnn", "resnet", "scatternet"])
def test_every_registered_model_composes(compose_config, model):
    run_config, _ = build_run_config(compose_config([f"model={model}"]))
    assert type(run_config.model).__name__.lower().startswith(model[:3])
