from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from dptrain.errors import ConfigError
from dptrain.models import (
    MODELS,
    CNNConfig,
    MLPConfig,
    ResNetConfig,
    ScatterNetConfig,
    model_config,
    model_frontend,
    model_name,
    resolve_grad_sample_mode,
)
from dptrain.models.ecg import CNN1DConfig, Scatter1DConfig

OPACUS_MODES = {"ghost", "hooks", "functorch", "ew"}


def test_registry_names() -> None:
    assert MODELS == {
        "mlp": MLPConfig,
        "cnn": CNNConfig,
        "resnet": ResNetConfig,
        "scatternet": ScatterNetConfig,
        "cnn1d": CNN1DConfig,
        "scatter1d": Scatter1DConfig,
    }
    for name, config_class in MODELS.items():
        assert model_name(model_config(name)) == name
        assert set(config_class.grad_sample_modes) <= OPACUS_MODES
        assert config_class.default_grad_sample_mode in config_class.grad_sample_modes


def test_unknown_model_lists_the_valid_names() -> None:
    with pytest.raises(
        ConfigError,
        match=(
            r"unknown model 'vgg': use one of "
            r"\['cnn', 'cnn1d', 'mlp', 'resnet', 'scatter1d', 'scatternet'\]"
        ),
    ):
        model_config("vgg")


def test_unknown_option_lists_the_fields() -> None:
    with pytest.raises(
        ConfigError, match=r"model=cnn has no option 'hidden': use one of \['channels'"
    ):
        model_config("cnn", hidden=[8])


def test_options_are_validated() -> None:
    assert model_config("resnet", depth=9, width=8, groups=4).depth == 9
    with pytest.raises(ConfigError, match=r"model\.depth"):
        model_config("resnet", depth=50)


def test_auto_resolves_to_the_measured_default() -> None:
    assert resolve_grad_sample_mode(MLPConfig(), "auto") == "ghost"
    for config_class in MODELS.values():
        config = config_class()
        assert resolve_grad_sample_mode(config, "auto") == config_class.default_grad_sample_mode


def test_unverified_mode_is_refused_with_the_fix() -> None:
    assert resolve_grad_sample_mode(CNNConfig(), "ghost") == "ghost"
    with pytest.raises(
        ConfigError,
        match=r"grad_sample_mode='ew' is not verified for model=cnn: use one of "
        r"\['hooks', 'ghost', 'functorch'\] or auto",
    ):
        resolve_grad_sample_mode(CNNConfig(), "ew")
    with pytest.raises(ConfigError, match="not verified for model=mlp"):
        resolve_grad_sample_mode(MLPConfig(), "fast")


def test_factories_outside_the_registry() -> None:
    class Custom:
        def build(self, input_shape, n_outputs):
            raise NotImplementedError

    assert resolve_grad_sample_mode(Custom(), "hooks") == "hooks"
    with pytest.raises(ConfigError, match="model=Custom declares none: set privacy"):
        resolve_grad_sample_mode(Custom(), "auto")


def test_only_scatternet_has_a_frontend() -> None:
    assert model_frontend(MLPConfig(), (26,)) is None
    assert model_frontend(CNNConfig(), (1, 28, 28)) is None
    assert model_frontend(ResNetConfig(), (1, 28, 28)) is None
    assert model_frontend(ScatterNetConfig(), (3, 28, 28)).output_shape((3, 28, 28)) == (243, 7, 7)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_configs_are_hydra_structured_configs(name: str) -> None:
    # Hydra builds these from YAML: every field must have a type OmegaConf accepts, and the
    # ClassVars must stay out of the schema.
    schema = OmegaConf.structured(MODELS[name])
    assert "grad_sample_modes" not in schema and "default_grad_sample_mode" not in schema
    assert isinstance(OmegaConf.to_object(schema), MODELS[name])
