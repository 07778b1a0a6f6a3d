"""The ECG models: registry entries, shapes, validation and the scattering front end.

Their per-sample gradients are checked against batch-of-one, for every declared mode, with every
other registered model in ``test_per_sample_gradients.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dptrain.errors import ConfigError, DataError
from dptrain.models import MODELS, model_frontend
from dptrain.models.ecg import CNN1DConfig, Scatter1DConfig


def test_ecg_models_are_registered_with_a_verified_default() -> None:
    assert MODELS["cnn1d"] is CNN1DConfig and MODELS["scatter1d"] is Scatter1DConfig
    for config_class in (CNN1DConfig, Scatter1DConfig):
        assert config_class.default_grad_sample_mode in config_class.grad_sample_modes


def test_default_cnn1d_is_small_and_has_no_batchnorm() -> None:
    model = CNN1DConfig().build((12, 1000), 5)
    n_parameters = sum(p.numel() for p in model.parameters())
    assert 20_000 < n_parameters < 150_000
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert sum(isinstance(m, nn.GroupNorm) for m in model.modules()) == 4
    assert model(torch.zeros(2, 12, 1000)).shape == (2, 5)
    residual = CNN1DConfig(residual=True).build((12, 1000), 5)
    assert sum(isinstance(m, nn.GroupNorm) for m in residual.modules()) == 8 + 2  # + shortcuts


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(kernel_sizes=[4]), "odd"),
        (dict(kernel_sizes=[3, 3]), "model.depth"),
        (dict(groups=5), "divide every width"),
        (dict(width=0), "width"),
        (dict(stem_stride=0), "stem_stride"),
    ],
)
def test_cnn1d_rejects_bad_options(options, message) -> None:
    with pytest.raises(ConfigError, match=message):
        CNN1DConfig(**options)


def test_cnn1d_refuses_images_and_too_short_signals() -> None:
    with pytest.raises(ConfigError, match=r"signal records \(leads, samples\)"):
        CNN1DConfig().build((1, 28, 28), 2)
    with pytest.raises(ConfigError, match="at least 16 samples"):
        CNN1DConfig().build((12, 8), 2)


def test_scattering_frontend_matches_kymatio_and_feeds_the_head() -> None:
    from kymatio.scattering1d.frontend.torch_frontend import ScatteringTorch1D

    config = Scatter1DConfig(J=3, Q=2)
    frontend = model_frontend(config, (2, 64))
    signals = np.random.default_rng(0).normal(size=(3, 2, 64)).astype(np.float32)
    features = frontend.transform(signals)
    direct = ScatteringTorch1D(J=3, shape=64, Q=2)(torch.from_numpy(signals)).flatten(1, 2)
    np.testing.assert_allclose(features, direct.numpy(), rtol=1e-5, atol=1e-6)
    assert features.shape == (3, *frontend.output_shape((2, 64)))
    head = config.build(frontend.output_shape((2, 64)), 4)
    assert head(torch.from_numpy(features)).shape == (3, 4)
    with pytest.raises(DataError, match="was built for signals"):
        frontend.transform(signals[:, :1])
