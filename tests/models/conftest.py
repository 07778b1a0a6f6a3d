"""One torch thread for the model tests: their tensors are tiny, and on a shared 2-core machine
intra-op thread synchronisation made kymatio's many small ops 10-40x slower."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
