"""Every executor trains the same models: bit-identical signals, whatever the engine."""

import sys

import numpy as np
import pytest

from dptrain.audit.config import AuditConfig
from dptrain.audit.executors import (
    EXECUTOR_NAMES,
    LocalExecutor,
    RayExecutor,
    SubmititExecutor,
    make_executor,
)
from dptrain.audit.reference import Recipe, train_reference_models
from dptrain.data.fake import write_fake_ehr_table
from dptrain.data.splits import balanced_membership_masks
from dptrain.data.tables import TableDataConfig
from dptrain.errors import ConfigError
from dptrain.models import MLPConfig
from dptrain.privacy.accounting import PrivacyConfig
from dptrain.training.config import TrainConfig

# DP on, so noise, Poisson sampling and clipping are all in the comparison.
RECIPE = Recipe(
    model_factory=MLPConfig(hidden=[16]),
    privacy=PrivacyConfig(epsilon=4.0, delta=1e-3),
    train=TrainConfig(epochs=2, batch_size=16),
)
NUM_MODELS = 4


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    path = write_fake_ehr_table(
        tmp_path_factory.mktemp("executors") / "visits.csv",
        n_patients=40,
        max_records_per_patient=2,
        seed=5,
    )
    return TableDataConfig(
        path=str(path), id_column="patient_id", label_columns=["label"], exclude_columns=["sex"]
    ).load()


@pytest.fixture(scope="module")
def membership(pool):
    return balanced_membership_masks(
        patient_labels=pool.patient_labels, num_models=NUM_MODELS, seed=0
    )


def signals_on(executor, pool, membership, indices=None):
    with executor:
        outputs = train_reference_models(
            pool=pool,
            membership=membership,
            recipe=RECIPE,
            seed=3,
            executor=executor,
            indices=indices,
        )
    return np.stack([output.signals for output in outputs]), [o.index for o in outputs]


@pytest.fixture(scope="module")
def local_pool_signals(pool, membership):
    signals, indices = signals_on(LocalExecutor(workers=2), pool, membership)
    assert indices == list(range(NUM_MODELS))
    return signals


def test_one_process_and_a_pool_give_the_same_bits(pool, membership, local_pool_signals):
    signals, _ = signals_on(LocalExecutor(workers=1), pool, membership)
    np.testing.assert_array_equal(signals, local_pool_signals)
    assert np.ptp(local_pool_signals, axis=0).max() > 0  # the models differ from each other


def test_ray_tasks_give_the_same_bits_as_the_local_pool(pool, membership, local_pool_signals):
    pytest.importorskip("ray", reason="Ray is the optional extra dptrain[ray]")
    signals, indices = signals_on(RayExecutor(num_cpus=2), pool, membership)
    assert indices == list(range(NUM_MODELS))
    np.testing.assert_array_equal(signals, local_pool_signals)


def test_submitit_local_jobs_give_the_same_bits_as_the_local_pool(
    pool, membership, local_pool_signals, tmp_path
):
    pytest.importorskip("submitit", reason="submitit is the optional extra dptrain[slurm]")
    executor = SubmititExecutor(folder=tmp_path / "jobs", cluster="local", poll_seconds=0.2)
    # The last model alone, in a fresh interpreter: a model's bits do not depend on its company.
    signals, indices = signals_on(executor, pool, membership, indices=[3])
    assert indices == [3]
    np.testing.assert_array_equal(signals, local_pool_signals[[3]])
    assert not list((tmp_path / "jobs").glob("shared-*.pkl"))  # the staged payload is removed


@pytest.mark.parametrize(
    ("name", "options", "expected"),
    [
        ("local", {"workers": 3}, LocalExecutor(workers=3)),
        ("ray", {"ray_address": "auto"}, RayExecutor(address="auto")),
        ("ray", {"workers": 2}, RayExecutor(num_cpus=2)),
    ],
)
def test_the_registry_builds_each_executor_from_the_audit_settings(name, options, expected):
    assert make_executor(AuditConfig(executor=name, **options)) == expected


def test_submitit_settings_pass_through(tmp_path):
    audit = AuditConfig(
        executor="submitit",
        submitit_cluster="slurm",
        slurm_partition="cpu",
        slurm_time_minutes=20,
        slurm_cpus_per_task=2,
        slurm_options={"slurm_mem": "8G"},
        workers=16,
    )
    executor = make_executor(audit, run_dir=tmp_path)
    assert executor.folder == tmp_path / "submitit"
    assert (executor.cluster, executor.partition, executor.time_minutes) == ("slurm", "cpu", 20)
    assert (executor.cpus_per_task, executor.max_parallel) == (2, 16)
    assert executor.options == {"slurm_mem": "8G"}
    assert set(EXECUTOR_NAMES) == {"local", "ray", "submitit"}


def test_an_unknown_executor_is_a_config_error():
    with pytest.raises(ConfigError, match=r"audit.executor must be one of .* got 'dask'"):
        AuditConfig(executor="dask")


@pytest.mark.parametrize(
    ("executor", "module", "command"),
    [
        (RayExecutor(), "ray", "pip install 'dptrain\\[ray\\]'"),
        (SubmititExecutor(folder="unused"), "submitit", "pip install 'dptrain\\[slurm\\]'"),
    ],
)
def test_a_missing_extra_says_which_pip_command_installs_it(executor, module, command, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=f"^audit.executor=.* needs {module}: {command}$"):
        executor.__enter__()
