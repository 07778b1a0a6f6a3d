from __future__ import annotations

import pytest
import torch
from opacus.validators import ModuleValidator
from torch import nn

from dptrain.errors import ConfigError
from dptrain.models import CNNConfig, ResNetConfig, ScatterNetConfig
from dptrain.models.vision import WSConv2d

IMAGE_MODELS = {
    "cnn": CNNConfig(channels=[4, 8, 8], groups=4),
    "cnn_flatten_ws": CNNConfig(
        channels=[4, 8], groups=2, head="flatten", weight_standardization=True, dropout=0.1
    ),
    "resnet18": ResNetConfig(width=4, groups=2),
    "resnet9_ws": ResNetConfig(depth=9, width=4, groups=2, weight_standardization=True),
}


@pytest.mark.parametrize("name", IMAGE_MODELS)
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 64, 64), (1, 8, 8), (3, 30, 41)])
def test_image_models_map_images_to_logits(name: str, shape: tuple[int, ...]) -> None:
    model = IMAGE_MODELS[name].build(shape, 3)
    logits = model(torch.rand(2, *shape))
    assert logits.shape == (2, 3) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    assert ModuleValidator.validate(model, strict=True) == []


@pytest.mark.parametrize(
    "config", [*IMAGE_MODELS.values(), ScatterNetConfig(), ScatterNetConfig(head="cnn")]
)
def test_no_batchnorm_anywhere(config) -> None:
    shape = (81, 7, 7) if isinstance(config, ScatterNetConfig) else (3, 28, 28)
    model = config.build(shape, 2)
    assert not any(
        isinstance(module, nn.modules.batchnorm._BatchNorm) for module in model.modules()
    )
    assert not any(
        name.endswith(("running_mean", "running_var")) for name, _ in model.named_buffers()
    )


def test_validator_catches_batchnorm() -> None:
    # The check above relies on the validator; make sure it rejects what it must.
    model = CNNConfig(channels=[4], groups=0).build((1, 8, 8), 2)
    model.features.insert(1, nn.BatchNorm2d(4))
    assert ModuleValidator.validate(model, strict=False)


def test_resnet_at_224_uses_the_large_stem() -> None:
    config = ResNetConfig(width=4, groups=2)
    model = config.build((3, 224, 224), 2)
    stem = model.features[0]
    assert stem.kernel_size == (7, 7) and stem.stride == (2, 2)
    with torch.no_grad():
        assert model(torch.rand(1, 3, 224, 224)).shape == (1, 2)
    assert config.build((3, 28, 28), 2).features[0].kernel_size == (3, 3)


def test_resnet_depths() -> None:
    def convs(config: ResNetConfig) -> int:
        model = config.build((3, 32, 32), 2)
        # the 1x1 shortcut projections are not counted in a ResNet's depth
        weighted = [
            m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1)
        ]
        return len(weighted) + 1  # + the linear head

    assert convs(ResNetConfig(depth=18, width=4, groups=2)) == 18
    assert convs(ResNetConfig(depth=9, width=4, groups=2)) == 9
    assert convs(ResNetConfig(blocks=[1, 1, 1], width=4, groups=2)) == 8


def test_weight_standardization_standardises_filters() -> None:
    torch.manual_seed(0)
    conv = WSConv2d(2, 3, 3, bias=False)
    with torch.no_grad():
        conv.weight.mul_(7.0).add_(2.0)
        inputs = torch.randn(1, 2, 5, 5)
        weight = conv.weight
        standardised = (weight - weight.mean((1, 2, 3), keepdim=True)) / weight.std(
            (1, 2, 3), keepdim=True, unbiased=False
        )
        expected = nn.functional.conv2d(inputs, standardised)
        torch.testing.assert_close(conv(inputs), expected, rtol=1e-4, atol=1e-4)
    cnn = CNNConfig(channels=[4], groups=2, weight_standardization=True).build((1, 8, 8), 2)
    assert isinstance(cnn.features[0], WSConv2d)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"channels": []}, "model.channels"),
        ({"kernel_size": 2}, "model.kernel_size must be odd"),
        (
            {"channels": [6, 8], "groups": 4},
            r"model.groups must be 0 or divide every channel count \[6, 8\], got 4",
        ),
        ({"activation": "swish"}, "model.activation"),
        ({"pool": "min"}, "model.pool"),
        ({"head": "attention"}, "model.head"),
        ({"dropout": 1.0}, r"model.dropout must be in \[0, 1\), got 1.0"),
    ],
)
def test_cnn_config_errors(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CNNConfig(**options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"depth": 50}, r"model.depth must be one of \[9, 18\], got 50"),
        ({"blocks": [2, 0]}, "model.blocks"),
        ({"width": 12, "groups": 8}, "model.groups"),
        ({"stem": "huge"}, "model.stem"),
    ],
)
def test_resnet_config_errors(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ResNetConfig(**options)


@pytest.mark.parametrize("shape", [(26,), (1, 4, 28), (28, 28)])
def test_image_models_reject_non_image_records(shape: tuple[int, ...]) -> None:
    with pytest.raises(ConfigError, match="needs image records"):
        CNNConfig().build(shape, 2)
    with pytest.raises(ConfigError, match="use model=mlp for tables"):
        ResNetConfig().build(shape, 2)


def test_cnn_rejects_images_too_small_for_its_pools() -> None:
    with pytest.raises(ConfigError, match="H, W >= 16"):
        CNNConfig(channels=[4, 4, 4, 4, 4], groups=2).build((1, 8, 8), 2)
