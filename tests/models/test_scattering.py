from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from dptrain.errors import ConfigError, DataError
from dptrain.models import Frontend, ScatteringFrontend, ScatterNetConfig, model_frontend
from dptrain.models.scattering import scattering_channels


def test_direct_kymatio_import_works_whatever_scipy() -> None:
    # `import kymatio.torch` breaks with scipy >= 1.17 (kymatio #1068); this path must not.
    code = (
        "from kymatio.scattering2d.frontend.torch_frontend import ScatteringTorch2D\n"
        "import torch\n"
        "print(tuple(ScatteringTorch2D(J=2, shape=(8, 8), L=8)(torch.zeros(1, 8, 8)).shape))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(1, 81, 2, 2)"


@pytest.mark.parametrize(("J", "L", "K"), [(2, 8, 81), (1, 8, 9), (3, 4, 61)])
def test_scattering_channel_count(J: int, L: int, K: int) -> None:
    assert scattering_channels(J, L) == K
    frontend = ScatterNetConfig(J=J, L=L).frontend((1, 32, 32))
    assert frontend.transform(np.zeros((1, 1, 32, 32), np.float32)).shape[1] == K


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 28, 28), (1, 64, 64), (3, 30, 22)])
def test_frontend_output_is_81_channels_per_colour_at_quarter_size(shape) -> None:
    frontend = ScatterNetConfig().frontend(shape)
    images = np.random.default_rng(0).random((2, *shape), dtype=np.float32)
    features = frontend.transform(images)
    channels, height, width = shape
    assert features.shape == (2, 81 * channels, height // 4, width // 4)
    assert features.dtype == np.float32
    assert frontend.output_shape(shape) == features.shape[1:]
    assert isinstance(frontend, Frontend)


def test_frontend_chunks_and_channels_are_independent() -> None:
    rng = np.random.default_rng(1)
    images = rng.random((7, 2, 16, 16), dtype=np.float32)
    whole = ScatteringFrontend((2, 16, 16), chunk_size=100).transform(images)
    chunked = ScatteringFrontend((2, 16, 16), chunk_size=3).transform(images)
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)
    # The first 81 coefficients belong to colour channel 0 alone.
    grey = ScatteringFrontend((1, 16, 16)).transform(images[:, :1])
    np.testing.assert_allclose(whole[:, :81], grey, rtol=1e-5, atol=1e-6)
    # The zeroth-order coefficient is a low-pass average: positive for positive images.
    assert (whole[:, 0] > 0).all()


def test_uint8_images_are_scaled_to_unit_range() -> None:
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 256, (3, 1, 16, 16), dtype=np.uint8)
    frontend = ScatteringFrontend((1, 16, 16))
    np.testing.assert_allclose(
        frontend.transform(pixels),
        frontend.transform(pixels.astype(np.float32) / 255),
        rtol=1e-6,
        atol=1e-6,
    )


def test_frontend_pickles_without_its_filters() -> None:
    frontend = ScatteringFrontend((1, 16, 16))
    images = np.random.default_rng(3).random((2, 1, 16, 16), dtype=np.float32)
    expected = frontend.transform(images)
    restored = pickle.loads(pickle.dumps(frontend))
    assert restored._scattering is None
    np.testing.assert_array_equal(restored.transform(images), expected)


def test_frontend_rejects_other_shapes() -> None:
    frontend = ScatteringFrontend((1, 28, 28))
    with pytest.raises(DataError, match=r"built for images \(1, 28, 28\)"):
        frontend.transform(np.zeros((2, 3, 28, 28), np.float32))
    with pytest.raises(ConfigError, match="H, W >= 8"):
        ScatteringFrontend((1, 4, 28))


@pytest.mark.parametrize("head", ["linear", "cnn"])
@pytest.mark.parametrize("image_shape", [(1, 28, 28), (3, 16, 16)])
def test_head_trains_on_frontend_output(head: str, image_shape) -> None:
    config = ScatterNetConfig(head=head)
    frontend = model_frontend(config, image_shape)
    features = frontend.transform(np.random.default_rng(4).random((2, *image_shape), np.float32))
    model = config.build(frontend.output_shape(image_shape), 4)
    logits = model(torch.from_numpy(features))
    assert logits.shape == (2, 4)
    logits.sum().backward()
    assert all(param.grad is not None for param in model.parameters())


def test_head_normalises_each_record_alone() -> None:
    # The parameter-free GroupNorm must not mix records (it is DP-safe only if it does not).
    model = ScatterNetConfig().build((81, 3, 3), 2).eval()
    records = torch.randn(3, 81, 3, 3)
    together = model(records)
    alone = torch.cat([model(records[index : index + 1]) for index in range(3)])
    torch.testing.assert_close(together, alone)
    assert sum(param.numel() for param in model.norm.parameters()) == 0


def test_head_refuses_image_shapes_and_bad_groups() -> None:
    with pytest.raises(ConfigError, match=r"apply model\.frontend"):
        ScatterNetConfig().build((784,), 2)
    with pytest.raises(ConfigError, match="norm_groups=27 must divide the 9"):
        ScatterNetConfig(J=1).build((9, 14, 14), 2)
    with pytest.raises(ConfigError, match=r"model\.head must be one of"):
        ScatterNetConfig(head="mlp")
