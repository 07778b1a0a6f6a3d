"""The ECG models: shapes, validation, and Opacus' per-sample gradients against batch-of-one.

The same check as ``test_per_sample_gradients.py`` (whose helpers it reuses), for every
``grad_sample_mode`` the 1-D CNN (plain and residual) and the scattering-1D heads declare.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from opacus.grad_sample import wrap_model
from torch import nn

from dptrain.errors import ConfigError, DataError
from dptrain.models import MODELS, model_frontend
from dptrain.models.ecg import CNN1DConfig, Scatter1DConfig
from tests.models.test_per_sample_gradients import batch_of_one_gradients, check_ghost_clipping

BATCH = 4
N_CLASSES = 3
CASES = {
    "cnn1d": (CNN1DConfig(width=4, depth=3, kernel_sizes=[5, 3, 3], groups=2), (2, 32)),
    "cnn1d_residual": (
        CNN1DConfig(width=4, depth=2, kernel_sizes=[3], groups=2, residual=True, dropout=0.0),
        (3, 16),
    ),
    "scatter1d_cnn": (Scatter1DConfig(channels=4, groups=2), (10, 4)),
    "scatter1d_linear": (Scatter1DConfig(head="linear", norm_groups=5), (10, 4)),
}
PARAMS = [
    pytest.param(case, mode, id=f"{case}-{mode}")
    for case, (config, _) in CASES.items()
    for mode in type(config).grad_sample_modes
]


def make_case(case: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    config, shape = CASES[case]
    torch.manual_seed(0)
    model = config.build(shape, N_CLASSES).double()
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(BATCH, *shape, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, N_CLASSES, (BATCH,), generator=generator)
    return model, inputs, labels


@pytest.mark.parametrize(("case", "mode"), PARAMS)
def test_per_sample_gradients_match_batch_of_one(case: str, mode: str) -> None:
    model, inputs, labels = make_case(case)
    reference = batch_of_one_gradients(model, inputs, labels)
    private = copy.deepcopy(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if mode == "ghost":
            check_ghost_clipping(private, inputs, labels, reference)
            return
        wrapped = wrap_model(private, mode, batch_first=True, loss_reduction="sum")
        F.cross_entropy(wrapped(inputs), labels, reduction="sum").backward()
    parameters = list(private.parameters())
    assert len(parameters) == len(reference)
    for param, expected in zip(parameters, reference):
        torch.testing.assert_close(param.grad_sample, expected, rtol=1e-7, atol=1e-10)


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
