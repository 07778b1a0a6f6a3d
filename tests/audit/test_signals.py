import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dptrain.audit.attacks.inputs import check_signals, check_target_signals
from dptrain.audit.signals import true_label_confidence
from dptrain.errors import DataError


def _naive_single_label(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """log p_y − log(1 − p_y) from an extended-precision softmax (fine for moderate logits)."""
    z = logits.astype(np.longdouble)
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    p_y = p[np.arange(len(labels)), labels]
    return np.asarray(np.log(p_y) - np.log1p(-p_y), dtype=np.float64)


def test_single_label_matches_extended_precision_reference():
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 6.0, (300, 7))
    labels = rng.integers(0, 7, 300)
    phi = true_label_confidence(logits, labels)
    assert phi.shape == (300,)
    assert phi.dtype == np.float64
    np.testing.assert_allclose(phi, _naive_single_label(logits, labels), rtol=1e-9, atol=1e-9)


def test_binary_softmax_is_logit_difference():
    logits = np.array([[0.3, -1.2], [4.0, 4.5]])
    phi = true_label_confidence(logits, np.array([0, 1]))
    np.testing.assert_allclose(phi, [1.5, 0.5])


def test_extreme_logits_stay_finite_and_exact():
    logits = np.array([[1e3, -1e3, 0.0]] * 3)
    phi = true_label_confidence(logits, np.array([0, 1, 2]))
    assert np.all(np.isfinite(phi))
    np.testing.assert_allclose(phi, [1e3, -2e3, -1e3])
    # The naive softmax route saturates: p_y rounds to 1 and log(1 − p_y) is -inf.
    with np.errstate(divide="ignore"):
        p = np.exp(logits[0] - logits[0].max()) / np.exp(logits[0] - logits[0].max()).sum()
        assert np.isinf(np.log(p[0]) - np.log(1.0 - p[0]))


@settings(max_examples=50, deadline=None)
@given(
    logits=arrays(np.float64, (4, 5), elements=st.floats(-50, 50)),
    shift=st.floats(-1e3, 1e3),
    label=st.integers(0, 4),
)
def test_single_label_is_invariant_to_a_common_logit_shift(logits, shift, label):
    labels = np.full(4, label)
    np.testing.assert_allclose(
        true_label_confidence(logits + shift, labels),
        true_label_confidence(logits, labels),
        atol=1e-9,
    )


@settings(max_examples=50, deadline=None)
@given(logits=arrays(np.float64, (3, 4), elements=st.floats(-1e3, 1e3)), bump=st.floats(0.5, 10))
def test_raising_the_true_logit_raises_phi(logits, bump):
    labels = np.array([0, 1, 3])
    raised = logits.copy()
    raised[np.arange(3), labels] += bump
    assert np.all(true_label_confidence(raised, labels) > true_label_confidence(logits, labels))


def test_multi_label_matches_sigmoid_reference():
    rng = np.random.default_rng(1)
    logits = rng.normal(0.0, 4.0, (200, 5))
    labels = (rng.random((200, 5)) < 0.3).astype(int)
    labels[:10] = 0  # records without any positive finding
    z = logits.astype(np.longdouble)
    p = 1.0 / (1.0 + np.exp(-z))
    p_true = np.where(labels == 1, p, 1.0 - p)
    per_class = np.asarray(np.log(p_true) - np.log1p(-p_true), dtype=np.float64)
    positive = labels == 1
    expected = np.where(
        positive.any(axis=1),
        (per_class * positive).sum(axis=1) / np.maximum(positive.sum(axis=1), 1),
        per_class.mean(axis=1),
    )
    np.testing.assert_allclose(true_label_confidence(logits, labels), expected, rtol=1e-9)


def test_multi_label_extremes_and_single_output_binary():
    logits = np.array([[1e3, -1e3], [1e3, -1e3]])
    phi = true_label_confidence(logits, np.array([[1, 1], [0, 0]]))
    np.testing.assert_allclose(phi, [0.0, 0.0])
    phi = true_label_confidence(np.array([[2.5], [2.5]]), np.array([[1], [0]]))
    np.testing.assert_allclose(phi, [2.5, -2.5])


@pytest.mark.parametrize(
    ("logits", "labels"),
    [
        (np.zeros((3, 4)), np.array([0, 1])),  # label count
        (np.zeros((3, 4)), np.array([0, 1, 4])),  # out of range
        (np.zeros((3, 4)), np.array([0, -1, 2])),  # negative
        (np.zeros((3, 4)), np.array([0.0, 1.0, 2.0])),  # float class indices
        (np.zeros((3, 1)), np.array([0, 0, 0])),  # single-label needs C ≥ 2
        (np.array([[0.0, np.nan]]), np.array([0])),  # NaN logits
        (np.zeros((2, 3)), np.array([[1, 0, 2], [0, 0, 1]])),  # multi-label not 0/1
        (np.zeros((2, 3)), np.zeros((2, 2), dtype=int)),  # multi-label shape
        (np.zeros(3), np.array([0, 1, 2])),  # 1-D logits
    ],
)
def test_bad_inputs_raise_data_error(logits, labels):
    with pytest.raises(DataError):
        true_label_confidence(logits, labels)


def test_check_signals_coerces_and_rejects():
    signals, membership = check_signals(np.zeros((2, 3), dtype=np.float32), np.ones((2, 3)))
    assert signals.dtype == np.float64
    assert membership.dtype == bool
    with pytest.raises(DataError, match="membership shape"):
        check_signals(np.zeros((2, 3)), np.ones((3, 2)))
    with pytest.raises(DataError, match="at least 2 models"):
        check_signals(np.zeros((1, 3)), np.ones((1, 3)), min_models=2)
    with pytest.raises(DataError, match="NaN"):
        check_signals(np.array([[np.inf, 0.0]]), np.ones((1, 2)))
    with pytest.raises(DataError, match="boolean"):
        check_signals(np.zeros((1, 2)), np.array([[2, 0]]))
    with pytest.raises(DataError, match="shape"):
        check_target_signals(np.zeros(4), 3)
    with pytest.raises(DataError, match="NaN"):
        check_target_signals(np.array([0.0, np.nan]), 2)
