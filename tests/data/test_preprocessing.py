import numpy as np

from dptrain.data.preprocessing import Standardizer


def test_statistics_come_from_the_training_records_only():
    train = np.array([[0.0], [2.0], [np.nan], [4.0]], dtype=np.float32)
    test = np.array([[100.0], [np.nan]], dtype=np.float32)
    standardizer = Standardizer.fit(train)
    filled = np.array([0.0, 2.0, 2.0, 4.0])  # NaN -> training median 2
    assert standardizer.fill.tolist() == [2.0]
    assert np.allclose(standardizer.center, filled.mean())
    assert np.allclose(
        standardizer.transform_array(test)[:, 0],
        [(100 - filled.mean()) / filled.std(), (2 - filled.mean()) / filled.std()],
    )


def test_constant_and_all_missing_columns_do_not_produce_nan():
    train = np.array([[1.0, np.nan], [1.0, np.nan]], dtype=np.float32)
    out = Standardizer.fit(train).transform_array(train)
    assert np.isfinite(out).all() and np.allclose(out, 0.0)


def test_images_are_standardised_per_channel():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(50, 2, 4, 4)).astype(np.float32)
    images[:, 0] = 3 + 2 * images[:, 0]
    images[:, 1] = -1 + 0.5 * images[:, 1]
    standardizer = Standardizer.fit(images)
    assert standardizer.center.shape == (2, 1, 1)
    out = standardizer.transform_array(images)
    assert np.allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    assert np.allclose(out.std(axis=(0, 2, 3)), 1, atol=1e-4)
