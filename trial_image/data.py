"""Offline datasets and the fixed train/validation split.

Sources: Fashion-MNIST idx.gz files (Debian package dataset-fashion-mnist),
scikit-learn's bundled digits, CIFAR-10 binary batches from a path, and an
.npz file with arrays x (N, H, W[, C]) and y (N,). Nothing is downloaded and
nothing is unpickled. Images are kept as read (uint8 files stay uint8, one byte
a pixel) until the split picks its rows; only those come out as float32 NCHW,
scaled to [0, 1] and then standardised per channel with statistics of the
training part.
"""

from __future__ import annotations

import gzip
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from katib_nas.contract.errors import InvalidInput

from .fetch_cifar10 import FOLDER as CIFAR10_FOLDER

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_HINT = "install the Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist) " \
                     "or pass --data-dir with train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz"
CIFAR10_HINT = "pass --data-dir with CIFAR-10's binary version (data_batch_1.bin ... data_batch_5.bin, " \
               "from cifar-10-binary.tar.gz)"
NPZ_HINT = "pass --data-dir with a .npz file holding arrays x (N, H, W[, C]) and y (N,) of integer labels"
CIFAR10_RECORD = 1 + 32 * 32 * 3
#: Largest idx body read (2 GiB): a damaged header cannot make the reader allocate more.
MAX_IDX_BYTES = 2**31
READ_CHUNK = 1 << 20
# The split does not depend on --seed: every trial of an experiment is scored on the same validation images.
# --split-seed picks another fixed split (e.g. to repeat a whole study on other validation images).
SPLIT_SEED = 20180


class DataError(InvalidInput):
    """Data that is missing or malformed; the message names the path and how to get it."""


@dataclass(frozen=True)
class ImageData:
    """Images (N, H, W, C) and integer labels; `pixels` is uint8 (0..255, read as value / 255) or float (read as
    it is)."""

    pixels: np.ndarray
    labels: np.ndarray
    num_classes: int
    source: str
    #: What the source's pixel values were multiplied by to give float `pixels` (digits: 1/16 of 0..16).
    source_scale: float = 1.0

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.pixels.shape[1:])  # type: ignore[return-value]

    @property
    def scale(self) -> float:
        """What a pixel value as the source holds it is multiplied by before the training part's mean and std
        apply: 1/255 for uint8 images, 1/16 for the digits, 1 for float images (taken as they are)."""
        return self.source_scale / 255.0 if self.pixels.dtype == np.uint8 else self.source_scale

    @property
    def first_label(self) -> int:
        """The smallest label (0 when there are none)."""
        return int(self.labels.min()) if self.labels.size else 0

    @property
    def images(self) -> np.ndarray:
        """All images as float32, uint8 ones divided by 255 (a new array; `rows` converts only a selection)."""
        return self.rows(slice(None))

    def rows(self, index: np.ndarray | slice) -> np.ndarray:
        """The selected images as float32, uint8 ones divided by 255."""
        selected = self.pixels[index]
        if selected.dtype != np.uint8:
            return selected
        scaled = selected.astype(np.float32)
        scaled /= 255.0
        return scaled


@dataclass(frozen=True)
class Split:
    """Normalised NCHW float32 arrays for training and validation, and the normalisation used."""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    #: What the source's pixel values are multiplied by before mean and std apply (ImageData.scale).
    scale: float = 1.0


@dataclass(frozen=True)
class Dataset:
    """A dataset the trial reads: how, from where (`location`, what --data-dir names for it), and where its
    separate test images are (`test_files`; none when `test` is None). A dataset a package ships (`bundled`,
    what it is) takes no --data-dir."""

    name: str
    load: Callable[[str | None], ImageData]
    location: str
    test: Callable[[str | None], ImageData] | None = None
    test_files: str = ""
    bundled: str = ""


def _fashion_dir(data_dir: str | None) -> Path:
    return Path(data_dir) if data_dir else FASHION_MNIST_DIR


#: Every dataset, by its --dataset name: the choices, help texts and messages of the commands come from here.
DATASETS: dict[str, Dataset] = {dataset.name: dataset for dataset in (
    Dataset("fashion-mnist", lambda d: load_fashion_mnist(_fashion_dir(d)),
            f"Fashion-MNIST's idx.gz folder (default {FASHION_MNIST_DIR})",
            lambda d: load_fashion_mnist(_fashion_dir(d), part="t10k"), "t10k files"),
    Dataset("digits", lambda d: load_digits(), "nothing (scikit-learn's bundled 8x8 digits)",
            bundled="scikit-learn's bundled 8x8 digits"),
    Dataset("cifar10", lambda d: load_cifar10(required_dir("cifar10", d, CIFAR10_HINT)),
            "CIFAR-10's binary batches folder",
            lambda d: load_cifar10(required_dir("cifar10", d, CIFAR10_HINT), pattern="test_batch*.bin"),
            "test_batch.bin"),
    Dataset("npz", lambda d: load_npz(required_dir("npz", d, NPZ_HINT)), "the .npz file (arrays x and y)"),
)}
#: Datasets with a separate test set (what --test evaluates on).
TEST_SETS = tuple(name for name, dataset in DATASETS.items() if dataset.test is not None)


def dataset(name: str) -> Dataset:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]


def load_dataset(name: str, data_dir: str | None) -> ImageData:
    """Load one of DATASETS; data_dir overrides the default location (required for cifar10 and npz, refused
    for a bundled dataset, which would not read it)."""
    chosen = dataset(name)
    if data_dir and chosen.bundled:
        raise DataError(f"--dataset {name} takes no --data-dir (it reads {chosen.bundled}); leave out "
                        f"--data-dir {data_dir}")
    return chosen.load(data_dir)


def test_sets_text() -> str:
    """'fashion-mnist (t10k files) and cifar10 (test_batch.bin)'."""
    return " and ".join(f"{name} ({DATASETS[name].test_files})" for name in TEST_SETS)


def load_test_set(name: str, data_dir: str | None) -> ImageData:
    """The dataset's separate test images (never used for training or validation); DataError when it has none."""
    test = dataset(name).test
    if test is None:
        raise DataError(f"dataset {name} has no separate test set; --test works with {test_sets_text()}")
    return test(data_dir)


def required_dir(name: str, data_dir: str | None, hint: str) -> Path:
    """data_dir as a Path, for datasets that have no default location; DataError with the hint when missing."""
    if not data_dir:
        raise DataError(f"--dataset {name} needs --data-dir: {hint}")
    return Path(data_dir)


def fashion_mnist_files(directory: Path, part: str = "train") -> tuple[Path, Path]:
    """The idx.gz files of the images and the labels of one part (`train` or `t10k`) of Fashion-MNIST."""
    return directory / f"{part}-images-idx3-ubyte.gz", directory / f"{part}-labels-idx1-ubyte.gz"


def load_fashion_mnist(directory: Path, part: str = "train") -> ImageData:
    """The `train` (60,000) or `t10k` (10,000) images and labels of Fashion-MNIST."""
    images_file, labels_file = fashion_mnist_files(directory, part)
    images = read_idx(images_file, 3)
    labels = read_idx(labels_file, 1)
    if len(images) != len(labels):
        raise DataError(f"{directory}: {len(images)} images but {len(labels)} labels; {FASHION_MNIST_HINT}")
    return ImageData(images[..., None], labels.astype(np.int64), 10, str(directory))


def read_idx(path: Path, dims: int) -> np.ndarray:
    """An unsigned-byte idx array (gzip-compressed) with the expected number of dimensions, decompressed
    straight into the array (no second copy of the file's bytes)."""
    if not path.is_file():
        raise DataError(f"{path} not found: {FASHION_MNIST_HINT}")
    try:
        with gzip.open(path, "rb") as handle:
            header = handle.read(4 + 4 * dims)
            expected_magic = 0x0800 + dims
            if len(header) < 4 + 4 * dims or struct.unpack(">I", header[:4])[0] != expected_magic:
                raise DataError(f"{path} is not an idx file of unsigned bytes with {dims} dimension(s): "
                                f"{FASHION_MNIST_HINT}")
            shape = struct.unpack(f">{dims}I", header[4:])
            body, size = _read_body(handle, int(np.prod(shape)))
    except (OSError, EOFError) as err:
        raise DataError(f"{path} is not a readable gzip file ({err}): {FASHION_MNIST_HINT}") from None
    if size != int(np.prod(shape)):
        raise DataError(f"{path} holds {size} bytes of data, its header says {shape}: {FASHION_MNIST_HINT}")
    return body.reshape(shape)


def _read_body(handle: gzip.GzipFile, expected: int) -> tuple[np.ndarray, int]:
    """(the first `expected` bytes as an array, how many bytes the stream holds in all)."""
    limit = min(expected, MAX_IDX_BYTES)
    body = np.empty(limit, dtype=np.uint8)
    view, size = memoryview(body), 0
    while size < limit:  # in chunks: gzip decompresses a whole request into a temporary bytes object
        count = handle.readinto(view[size:size + READ_CHUNK])
        if not count:
            return body, size
        size += count
    while chunk := handle.read(READ_CHUNK):  # data beyond what the header announces
        size += len(chunk)
    return body, size


def load_digits() -> ImageData:
    """scikit-learn's bundled 8x8 digits (1797 images, values 0..16)."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = (bunch.images / 16.0).astype(np.float32)[..., None]
    return ImageData(images, bunch.target.astype(np.int64), 10, "sklearn digits", source_scale=1 / 16)


def load_cifar10(directory: Path, pattern: str = "data_batch_*.bin") -> ImageData:
    """CIFAR-10 batches (training by default) in the binary format: records of 1 label byte + 3072 CHW bytes."""
    if (directory / CIFAR10_FOLDER).is_dir():
        directory = directory / CIFAR10_FOLDER
    files = sorted(directory.glob(pattern)) if directory.is_dir() else []
    if not files:
        raise DataError(f"{directory}: no {pattern} files: {CIFAR10_HINT}")
    records = []
    for path in files:
        raw = np.fromfile(path, dtype=np.uint8)
        if raw.size == 0 or raw.size % CIFAR10_RECORD:
            raise DataError(f"{path}: {raw.size} bytes is not a whole number of {CIFAR10_RECORD}-byte records: "
                            f"{CIFAR10_HINT}")
        records.append(raw.reshape(-1, CIFAR10_RECORD))
    table = np.concatenate(records)
    labels = table[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DataError(f"{directory}: label {labels.max()} outside 0..9, not CIFAR-10 binary data: {CIFAR10_HINT}")
    images = table[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return ImageData(images, labels, 10, str(directory))


def load_npz(path: Path) -> ImageData:
    """x as (N, H, W) or (N, H, W, C), uint8 (scaled by 1/255) or float (taken as is); y integer labels."""
    if path.is_dir():
        candidates = sorted(path.glob("*.npz"))
        if len(candidates) != 1:
            raise DataError(f"{path}: expected exactly one .npz file in the directory, found {len(candidates)}: "
                            f"{NPZ_HINT}")
        path = candidates[0]
    if not path.is_file():
        raise DataError(f"{path} not found: {NPZ_HINT}")
    x, y = _npz_arrays(path)
    return ImageData(_npz_images(x, path), _npz_labels(y, len(x), path), int(y.max()) + 1 if y.size else 0, str(path))


def _npz_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The arrays x and y of an .npz file; DataError naming the arrays it holds instead when either is missing
    (said as such, not as an unreadable file: DataError is a ValueError, which the read's own errors are too)."""
    unreadable = (OSError, ValueError, zipfile.BadZipFile, EOFError)
    try:
        loaded = np.load(path, allow_pickle=False)
    except unreadable as err:
        raise DataError(f"{path} is not a readable .npz without pickled objects ({err}): {NPZ_HINT}") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):  # a .npy file: one array, no names
        raise DataError(f"{path} holds one array, not an .npz archive of arrays x and y: {NPZ_HINT}")
    try:
        with loaded as archive:
            names = list(archive.files)
            missing = {"x", "y"} - set(names)
            arrays = () if missing else (archive["x"], archive["y"])  # read only what will be used
    except unreadable as err:
        raise DataError(f"{path} is not a readable .npz without pickled objects ({err}): {NPZ_HINT}") from None
    if missing:
        raise DataError(f"{path}: missing array(s) {', '.join(sorted(missing))}; found "
                        f"{', '.join(names) or 'none'}: {NPZ_HINT}")
    return arrays


def _npz_images(x: np.ndarray, path: Path) -> np.ndarray:
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or min(x.shape) < 1:
        raise DataError(f"{path}: x has shape {x.shape}, expected (N, H, W) or (N, H, W, C): {NPZ_HINT}")
    if x.dtype == np.uint8:
        return x
    if not np.issubdtype(x.dtype, np.floating) and not np.issubdtype(x.dtype, np.integer):
        raise DataError(f"{path}: x has dtype {x.dtype}, expected uint8 or float: {NPZ_HINT}")
    images = x.astype(np.float32)
    if not np.isfinite(images).all():
        raise DataError(f"{path}: x contains NaN or infinite values: {NPZ_HINT}")
    return images


def _npz_labels(y: np.ndarray, count: int, path: Path) -> np.ndarray:
    if y.ndim != 1 or len(y) != count or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: y has shape {y.shape} and dtype {y.dtype}, expected {count} integer labels: "
                        f"{NPZ_HINT}")
    if count and y.min() < 0:
        raise DataError(f"{path}: y has negative label {y.min()}: {NPZ_HINT}")
    if count and y.min() == y.max():
        raise DataError(f"{path}: every label in y is {y.min()}; a classifier needs images of at least 2 classes "
                        f"(every trial would score 1.0 by always answering {y.min()}): {NPZ_HINT}")
    return y.astype(np.int64)


def split_dataset(data: ImageData, val_fraction: float, max_train_samples: int | None = None,
                  seed: int = SPLIT_SEED) -> Split:
    """A fixed seeded split into training and validation parts, normalised with training statistics."""
    count = len(data.labels)
    val_count = int(round(count * val_fraction))
    if val_count < 1 or count - val_count < 2:
        raise DataError(f"{data.source}: {count} images cannot be split with --val-fraction {val_fraction} "
                        f"into at least 2 training and 1 validation image")
    val_index, train_index = seeded_split(count, val_count, seed)
    if max_train_samples is not None:
        train_index = train_index[:max_train_samples]
    train = data.rows(train_index)
    mean = tuple(float(v) for v in train.mean(axis=(0, 1, 2)))
    std = tuple(float(v) for v in np.maximum(train.std(axis=(0, 1, 2)), 1e-6))
    return Split(_standardise(train, mean, std), data.labels[train_index],
                 _standardise(data.rows(val_index), mean, std), data.labels[val_index], mean, std, data.num_classes,
                 data.scale)


def seeded_split(count: int, first: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed permutation of range(count) (the same for the same seed, on every machine) cut after `first`:
    (the first `first` indices, the rest)."""
    order = np.random.default_rng(seed).permutation(count)
    return order[:first], order[first:]


def normalise(images: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """NHWC images in [0, 1] -> standardised float32 NCHW (with the training part's statistics)."""
    return _standardise(np.array(images, dtype=np.float32), mean, std)


def _standardise(images: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """`normalise` of a float32 array the caller hands over: computed in place, no second copy."""
    images -= np.asarray(mean, np.float32)
    images /= np.asarray(std, np.float32)
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2))
