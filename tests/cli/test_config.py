from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import OmegaConfBaseException

from dptrain.audit.config import AuditConfig
from dptrain.cli.config import build_run_config
from dptrain.data.tables import TableDataConfig
from dptrain.models import MLPConfig
from dptrain.privacy.accounting import PrivacyConfig
from dptrain.tracking.wandb import WandbTrackerConfig


def test_default_config_builds_library_objects(compose_config):
    run_config, tracker = build_run_config(compose_config())
    assert isinstance(run_config.data, TableDataConfig) and run_config.data.name == "actg175"
    assert run_config.data.path.endswith("ACTG175.csv")
    assert isinstance(run_config.model, MLPConfig)
    assert isinstance(run_config.privacy, PrivacyConfig) and run_config.privacy.private
    assert isinstance(run_config.audit, AuditConfig) and run_config.audit.enabled
    assert isinstance(tracker, WandbTrackerConfig)


def test_command_line_overrides_reach_the_library(compose_config):
    run_config, _ = build_run_config(
        compose_config(["privacy.epsilon=3", "model.hidden=[128,128]", "privacy=none", "seed=7"])
    )
    assert run_config.model.hidden == [128, 128]
    assert not run_config.privacy.private and run_config.seed == 7


@pytest.mark.parametrize(
    "overrides",
    [
        ["privacy.epsilon=3"],
        ["privacy=none"],
        ["audit=none"],
        ["tracker=csv"],
        ["tracker=none"],
        ["debug=fast"],
        ["experiment=epsilon_sweep"],
    ],
)
def test_every_group_option_composes(compose_config, overrides):
    build_run_config(compose_config(overrides))


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["privacy.epsilonn=3"], "epsilonn"),
        (["train.epochs=many"], "train.epochs"),
        (["model.hidden=[a]"], "model.hidden"),
        (["audit.num_model=4"], "num_model"),
    ],
)
def test_typos_and_wrong_types_fail_at_composition_with_the_key_named(
    compose_config, overrides, key
):
    with pytest.raises((ConfigCompositionException, OmegaConfBaseException)) as raised:
        compose_config(overrides)
    assert key in str(raised.value) + str(raised.value.__cause__)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ([], r"data\.path is required and has no value: point it at the data file"),
        (["data.path=t.csv"], r"data\.id_column is required .*data\.id_column=null if every row"),
        (["data.path=t.csv", "data.id_column=id"], r"data\.label_columns is required .*\[died\]"),
    ],
)
def test_table_config_requires_its_columns_with_one_line_naming_the_key(
    compose_config, overrides, message
):
    from dptrain.errors import ConfigError

    with pytest.raises(ConfigError, match=message) as raised:
        build_run_config(compose_config(["data=table", *overrides]))
    assert "\n" not in str(raised.value)


def test_a_quoted_home_directory_in_a_data_path_is_expanded(compose_config):
    run_config, _ = build_run_config(
        compose_config(
            ["data=table", 'data.path="~/v.csv"', "data.id_column=id", "data.label_columns=[y]"]
        )
    )
    assert run_config.data.path == str(Path.home() / "v.csv")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+privacy.epsilom=3", r"unknown config key privacy\.epsilom; valid keys of privacy"),
        ("+trian.epochs=3", r"unknown config key 'trian'"),
        ("+data.lable_columns=[y]", r"unknown config key data\.lable_columns"),
    ],
)
def test_keys_added_with_plus_that_no_schema_knows_are_refused(compose_config, override, message):
    from dptrain.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        build_run_config(compose_config([override]))


def test_a_table_run_is_named_after_its_file(compose_config):
    run_config, _ = build_run_config(
        compose_config(
            [
                "data=table",
                "data.path=/data/icu_visits.csv.gz",
                "data.id_column=id",
                "data.label_columns=[died]",
            ]
        )
    )
    assert run_config.data.name == "icu_visits"


@pytest.mark.parametrize(
    "override",
    ["data.subgroup_bins={age:[0,40,120]}", "+data.subgroup_bins={age:[0.0,40.0,120.0]}"],
)
def test_subgroup_bins_take_integer_edges_with_or_without_plus(compose_config, override):
    run_config, _ = build_run_config(
        compose_config(
            [
                "data=table",
                "data.path=t.csv",
                "data.id_column=id",
                "data.label_columns=[y]",
                "data.subgroup_columns=[age]",
                override,
                "data.value_names={age:{young:y}}",
            ]
        )
    )
    assert run_config.data.subgroup_bins == {"age": [0.0, 40.0, 120.0]}
    assert run_config.data.value_names == {"age": {"young": "y"}}
