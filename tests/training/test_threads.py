"""Intra-op threads by model size: one for tiny models, the cores for big ones, or as configured."""

import numpy as np
import pytest
import torch

from dptrain.data.cohort import Cohort
from dptrain.errors import ConfigError
from dptrain.models import MLPConfig
from dptrain.training.config import TrainConfig
from dptrain.training.threads import (
    SINGLE_THREAD_FLOPS_PER_STEP,
    choose_threads,
    forward_flops_per_record,
    intra_op_threads,
)


def table(n_features: int) -> Cohort:
    rng = np.random.default_rng(0)
    return Cohort.from_records(
        name="toy",
        features=rng.normal(size=(8, n_features)).astype(np.float32),
        labels=[0, 1] * 4,
        patient_ids=list(range(8)),
    )


def test_flops_of_an_mlp_are_twice_its_multiply_adds():
    # 10 → 32 → 2 (no hidden activation FLOPs counted): 2·(10·32 + 32·2) per record
    flops = forward_flops_per_record(MLPConfig(hidden=[32]), table(10))
    assert flops == 2 * (10 * 32 + 32 * 2)


def test_a_tiny_model_gets_one_thread_and_a_big_one_the_cores():
    tiny = choose_threads(
        requested=0,
        model_factory=MLPConfig(hidden=[64, 64]),
        cohort=table(20),
        batch_size=256,
        available=16,
    )
    assert tiny.threads == 1 and tiny.forward_flops_per_step < SINGLE_THREAD_FLOPS_PER_STEP
    assert "1 intra-op thread" in tiny.reason
    big = choose_threads(
        requested=0,
        model_factory=MLPConfig(hidden=[2048, 2048]),
        cohort=table(512),
        batch_size=256,
        available=16,
    )
    assert big.threads == 16 and big.forward_flops_per_step > SINGLE_THREAD_FLOPS_PER_STEP
    assert "16 intra-op threads" in big.reason


def test_train_threads_overrides_the_choice():
    choice = choose_threads(
        requested=3,
        model_factory=MLPConfig(hidden=[64]),
        cohort=table(4),
        batch_size=8,
        available=16,
    )
    assert choice.threads == 3 and choice.reason == "train.threads = 3"


def test_the_global_rng_is_untouched_by_measuring():
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    forward_flops_per_record(MLPConfig(hidden=[16]), table(4))
    assert torch.equal(torch.rand(3), expected)


def test_threads_are_restored_after_the_block_even_on_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), intra_op_threads(1):
        assert torch.get_num_threads() == 1
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before


def test_negative_threads_are_a_config_error():
    with pytest.raises(ConfigError, match=r"train.threads must be >= 0 .* got -1"):
        TrainConfig(threads=-1)
