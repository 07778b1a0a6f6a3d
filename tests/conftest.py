"""Shared fixtures: tiny cohorts in real on-disk formats, and Hydra configs via the compose API."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from dptrain.cli.config import CONFIG_DIR, register_schemas
from dptrain.data.fake import write_fake_ehr_table
from dptrain.data.tables import TableDataConfig

# Seconds-long recipe for end-to-end runs: tiny data, two epochs, four audit models.
FAST = [
    "train.epochs=2",
    "train.batch_size=32",
    "audit.num_models=4",
    "audit.rmia_num_population=100",
    "audit.workers=1",
    "tracker=none",
]


@pytest.fixture(autouse=True)
def _private_pseudonym_home(tmp_path_factory, monkeypatch):
    """Tests never create or read the user's own pseudonym key."""
    monkeypatch.setenv("DPTRAIN_HOME", str(tmp_path_factory.mktemp("dptrain_home")))


@pytest.fixture
def visits_csv(tmp_path: Path) -> Path:
    """120 patients with 1-3 visits each, in CSV."""
    return write_fake_ehr_table(
        tmp_path / "visits.csv", n_patients=120, max_records_per_patient=3, seed=3
    )


@pytest.fixture
def visits_config(visits_csv: Path) -> TableDataConfig:
    """The table config a user would write for `visits_csv`."""
    return TableDataConfig(
        path=str(visits_csv),
        id_column="patient_id",
        label_columns=["label"],
        name="visits",
        categorical_columns=["site"],
        exclude_columns=["sex", "age"],
        subgroup_columns=["sex", "age"],
        subgroup_bins={"age": [0.0, 50.0, 120.0]},
    )


def table_overrides(path: Path) -> list[str]:
    """Overrides that point the app at a `fake_ehr_table` file."""
    return [
        "data=table",
        f"data.path={path}",
        "data.id_column=patient_id",
        "data.label_columns=[label]",
        "data.exclude_columns=[sex,age]",
        "data.subgroup_columns=[sex]",
    ]


@pytest.fixture
def compose_config():
    """Composes the app's config with overrides, as `dptrain` would (without running it)."""
    register_schemas()

    def _compose(overrides: list[str] | None = None):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            return compose(config_name="config", overrides=overrides or [])

    yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture
def one_torch_thread():
    """One intra-op thread for tests of tiny models: on a shared 2-core machine threads only
    contend (kymatio's many small ops ran 10-40x slower). Use with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
