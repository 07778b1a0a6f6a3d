"""Every model test runs with one torch thread (`tests.conftest.one_torch_thread`)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _models_use_one_thread(one_torch_thread) -> None:
    """Tiny tensors: on a shared 2-core machine threads only contend."""
