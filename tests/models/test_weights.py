from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from dptrain.errors import ConfigError, DataError
from dptrain.models import CNNConfig, ResNetConfig, ScatterNetConfig

CONFIG = {"channels": [4, 8], "groups": 2}


def save(state: dict, path: Path) -> str:
    torch.save(state, path)
    return str(path)


def test_pretrained_weights_are_loaded(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = CNNConfig(**CONFIG).build((1, 28, 28), 2)
    path = save(source.state_dict(), tmp_path / "cnn.pt")
    torch.manual_seed(1)
    loaded = CNNConfig(**CONFIG, pretrained_path=path).build((1, 28, 28), 2)
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_head_of_another_size_stays_fresh(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = ResNetConfig(blocks=[1], width=4, groups=2).build((3, 32, 32), 10)
    path = save(source.state_dict(), tmp_path / "resnet.pt")
    model = ResNetConfig(blocks=[1], width=4, groups=2, pretrained_path=path).build((3, 32, 32), 2)
    assert model.head.weight.shape == (2, 4)
    assert torch.equal(model.features[0].weight, source.features[0].weight)


def test_weights_saved_from_an_opacus_wrapped_model_load(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = ScatterNetConfig().build((81, 7, 7), 2)
    wrapped = {f"_module.{key}": value for key, value in source.state_dict().items()}
    path = save(wrapped, tmp_path / "head.pt")
    model = ScatterNetConfig(pretrained_path=path).build((81, 7, 7), 2)
    assert torch.equal(model.classifier.head.weight, source.classifier.head.weight)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.pt"
    with pytest.raises(DataError, match=f"{path} not found.*nothing is downloaded"):
        CNNConfig(**CONFIG, pretrained_path=str(path)).build((1, 28, 28), 2)


def test_batchnorm_weights_are_refused(tmp_path: Path) -> None:
    model = CNNConfig(**CONFIG).build((1, 28, 28), 2)
    state = model.state_dict()
    state["features.1.running_mean"] = torch.zeros(4)
    state["features.1.running_var"] = torch.ones(4)
    path = save(state, tmp_path / "bn.pt")
    with pytest.raises(ConfigError, match=r"bn\.pt holds BatchNorm statistics"):
        CNNConfig(**CONFIG, pretrained_path=path).build((1, 28, 28), 2)


def test_shape_mismatch_names_the_parameter(tmp_path: Path) -> None:
    source = CNNConfig(channels=[4, 8], groups=2).build((3, 28, 28), 2)
    path = save(source.state_dict(), tmp_path / "rgb.pt")
    with pytest.raises(ConfigError, match=r"features.0.weight has shape \(4, 3, 3, 3\)"):
        CNNConfig(**CONFIG, pretrained_path=path).build((1, 28, 28), 2)


def test_other_architecture_is_refused(tmp_path: Path) -> None:
    source = CNNConfig(channels=[4, 8, 8], groups=2).build((1, 28, 28), 2)
    path = save(source.state_dict(), tmp_path / "deeper.pt")
    with pytest.raises(ConfigError, match="does not match the configured architecture"):
        CNNConfig(**CONFIG, pretrained_path=path).build((1, 28, 28), 2)


def test_pickled_module_is_not_loaded(tmp_path: Path) -> None:
    path = tmp_path / "module.pt"
    torch.save(nn.Linear(2, 2), path)  # a whole module: not loadable with weights_only=True
    with pytest.raises(DataError, match=r"weights_only=True"):
        CNNConfig(**CONFIG, pretrained_path=str(path)).build((1, 28, 28), 2)


def test_non_state_dict_is_refused(tmp_path: Path) -> None:
    path = save({"epoch": 3}, tmp_path / "checkpoint.pt")
    with pytest.raises(DataError, match="not a state dict of tensors"):
        CNNConfig(**CONFIG, pretrained_path=path).build((1, 28, 28), 2)
