"""Offline data: real Fashion-MNIST and digits, CIFAR-10 binary and .npz files written here, and the split."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from katib_nas.trial_image.data import (
    DATASETS,
    FASHION_MNIST_DIR,
    SPLIT_SEED,
    TEST_SETS,
    DataError,
    ImageData,
    load_dataset,
    load_test_set,
    normalise,
    split_dataset,
)


def indexed_images(count: int) -> ImageData:
    """Images whose every pixel holds the image's own index, so split membership can be read back."""
    images = np.repeat(np.arange(count, dtype=np.float32), 4).reshape(count, 2, 2, 1)
    return ImageData(images, np.arange(count) % 3, 3, "indexed")


def write_idx(path: Path, magic: int, shape: tuple[int, ...], body: bytes) -> None:
    with gzip.open(path, "wb") as handle:
        handle.write(struct.pack(">I", magic) + struct.pack(f">{len(shape)}I", *shape) + body)


def test_split_is_fixed_disjoint_and_complete() -> None:
    data = indexed_images(50)
    first, second = split_dataset(data, 0.2), split_dataset(data, 0.2)
    assert np.array_equal(first.train_x, second.train_x) and np.array_equal(first.val_x, second.val_x)

    def original_indices(images: np.ndarray, split_mean: float, split_std: float) -> set[int]:
        return {int(round(v)) for v in images[:, 0, 0, 0] * split_std + split_mean}

    train = original_indices(first.train_x, first.mean[0], first.std[0])
    val = original_indices(first.val_x, first.mean[0], first.std[0])
    assert len(val) == 10 and len(train) == 40
    assert not train & val and train | val == set(range(50))
    assert first.train_x.shape == (40, 1, 2, 2)  # NCHW


def test_split_normalises_with_training_statistics_and_caps_training_size() -> None:
    rng = np.random.default_rng(0)
    data = ImageData(rng.uniform(0, 1, (300, 4, 4, 3)).astype(np.float32) * [1, 2, 3], rng.integers(0, 4, 300),
                     4, "random")
    split = split_dataset(data, 0.1)
    assert np.allclose(split.train_x.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    assert np.allclose(split.train_x.std(axis=(0, 2, 3)), 1, atol=1e-4)
    capped = split_dataset(data, 0.1, max_train_samples=50)
    assert len(capped.train_y) == 50 and np.array_equal(capped.val_y, split.val_y)


def test_split_refuses_too_little_data() -> None:
    with pytest.raises(DataError, match="cannot be split"):
        split_dataset(indexed_images(3), 0.01)


def test_digits_load_as_8x8_grey_images() -> None:
    data = load_dataset("digits", None)
    assert data.shape == (8, 8, 1) and len(data.labels) == 1797 and data.num_classes == 10
    assert 0.0 <= data.images.min() and data.images.max() <= 1.0


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_loads_from_the_debian_package() -> None:
    data = load_dataset("fashion-mnist", None)
    assert data.images.shape == (60000, 28, 28, 1) and data.labels.shape == (60000,)
    assert set(np.unique(data.labels)) == set(range(10))
    assert data.images.dtype == np.float32 and data.images.max() == 1.0


def test_fashion_mnist_missing_or_malformed_files_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=rf"{tmp_path}/train-images-idx3-ubyte.gz not found.*dataset-fashion-mnist"):
        load_dataset("fashion-mnist", str(tmp_path))
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", 0x0801, (4, 2, 2), bytes(16))
    with pytest.raises(DataError, match="is not an idx file"):
        load_dataset("fashion-mnist", str(tmp_path))
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", 0x0803, (4, 2, 2), bytes(15))
    with pytest.raises(DataError, match="holds 15 bytes"):
        load_dataset("fashion-mnist", str(tmp_path))
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", 0x0803, (4, 2, 2), bytes(range(16)))
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz is not a readable gzip file"):
        load_dataset("fashion-mnist", str(tmp_path))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", 0x0801, (4,), bytes([0, 1, 2, 3]))
    data = load_dataset("fashion-mnist", str(tmp_path))
    assert data.images.shape == (4, 2, 2, 1) and data.images[3, 1, 1, 0] == pytest.approx(15 / 255)


def cifar_records(labels: list[int], rng: np.random.Generator) -> tuple[bytes, np.ndarray]:
    pixels = rng.integers(0, 256, (len(labels), 3, 32, 32), dtype=np.uint8)
    table = np.concatenate([np.array(labels, dtype=np.uint8)[:, None], pixels.reshape(len(labels), -1)], axis=1)
    return table.tobytes(), pixels


def test_cifar10_binary_batches_load_in_hwc_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    first, first_pixels = cifar_records([3, 9, 0], rng)
    second, _ = cifar_records([1, 2], rng)
    (folder / "data_batch_1.bin").write_bytes(first)
    (folder / "data_batch_2.bin").write_bytes(second)
    data = load_dataset("cifar10", str(tmp_path))
    assert data.images.shape == (5, 32, 32, 3) and data.labels.tolist() == [3, 9, 0, 1, 2]
    assert data.images[1, 5, 7, 2] == pytest.approx(first_pixels[1, 2, 5, 7] / 255)


def test_test_sets_are_the_separate_files_and_never_the_training_ones(tmp_path: Path) -> None:
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", 0x0803, (4, 2, 2), bytes(16))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", 0x0801, (4,), bytes(4))
    with pytest.raises(DataError, match=rf"{tmp_path}/t10k-images-idx3-ubyte.gz not found"):
        load_test_set("fashion-mnist", str(tmp_path))
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", 0x0803, (2, 2, 2), bytes([255] * 8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 0x0801, (2,), bytes([7, 8]))
    test = load_test_set("fashion-mnist", str(tmp_path))
    assert test.images.shape == (2, 2, 2, 1) and test.labels.tolist() == [7, 8] and test.images.min() == 1.0
    records, _ = cifar_records([4, 5, 6], np.random.default_rng(2))
    (tmp_path / "data_batch_1.bin").write_bytes(bytes(0))
    with pytest.raises(DataError, match=r"no test_batch\*.bin files"):
        load_test_set("cifar10", str(tmp_path))
    (tmp_path / "test_batch.bin").write_bytes(records)
    assert load_test_set("cifar10", str(tmp_path)).labels.tolist() == [4, 5, 6]
    with pytest.raises(DataError, match="needs --data-dir"):
        load_test_set("cifar10", None)
    assert set(TEST_SETS) == {"fashion-mnist", "cifar10"}
    for name in set(DATASETS) - set(TEST_SETS):
        with pytest.raises(DataError, match=f"dataset {name} has no separate test set"):
            load_test_set(name, str(tmp_path))


def test_test_images_are_normalised_with_the_training_statistics() -> None:
    split = split_dataset(indexed_images(20), 0.25)
    images = np.full((1, 2, 2, 1), split.mean[0] + 2 * split.std[0], np.float32)
    assert normalise(images, split.mean, split.std) == pytest.approx(np.full((1, 1, 2, 2), 2.0), rel=1e-5)


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_test_set_is_the_10000_t10k_images() -> None:
    test = load_test_set("fashion-mnist", None)
    assert test.images.shape == (10000, 28, 28, 1) and np.bincount(test.labels).tolist() == [1000] * 10


def test_cifar10_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="needs --data-dir"):
        load_dataset("cifar10", None)
    with pytest.raises(DataError, match=rf"{tmp_path}: no data_batch_\*.bin files"):
        load_dataset("cifar10", str(tmp_path))
    (tmp_path / "data_batch_1.bin").write_bytes(bytes(3072))
    with pytest.raises(DataError, match="data_batch_1.bin: 3072 bytes is not a whole number"):
        load_dataset("cifar10", str(tmp_path))
    records, _ = cifar_records([12], np.random.default_rng(1))
    (tmp_path / "data_batch_1.bin").write_bytes(records)
    with pytest.raises(DataError, match="label 12 outside 0..9"):
        load_dataset("cifar10", str(tmp_path))


def test_npz_grey_and_colour_images(tmp_path: Path) -> None:
    path = tmp_path / "grey.npz"
    np.savez(path, x=np.full((6, 5, 4), 255, dtype=np.uint8), y=np.array([0, 1, 2, 3, 4, 0]))
    grey = load_dataset("npz", str(path))
    assert grey.shape == (5, 4, 1) and grey.num_classes == 5 and grey.images.max() == 1.0
    folder = tmp_path / "colour"
    folder.mkdir()
    np.savez(folder / "data.npz", x=np.ones((4, 3, 3, 3), dtype=np.float64) * 0.5, y=np.array([1, 0, 1, 0]))
    colour = load_dataset("npz", str(folder))
    assert colour.shape == (3, 3, 3) and colour.num_classes == 2 and colour.images.dtype == np.float32


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.zeros((3, 4, 4))}, "missing array"),
    ({"x": np.zeros((3, 4)), "y": np.zeros(3, dtype=int)}, "expected \\(N, H, W\\)"),
    ({"x": np.zeros((3, 4, 4)), "y": np.zeros(3)}, "expected 3 integer labels"),
    ({"x": np.zeros((3, 4, 4)), "y": np.zeros(2, dtype=int)}, "expected 3 integer labels"),
    ({"x": np.zeros((3, 4, 4)), "y": np.array([0, -1, 1])}, "negative label"),
    ({"x": np.full((3, 4, 4), np.nan), "y": np.zeros(3, dtype=int)}, "NaN or infinite"),
    ({"x": np.array([[{"a": 1}]] * 3, dtype=object), "y": np.zeros(3, dtype=int)}, "without pickled objects"),
])
def test_npz_problems_are_named(tmp_path: Path, arrays: dict[str, np.ndarray], message: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=message) as caught:
        load_dataset("npz", str(path))
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_npz_missing_file_and_ambiguous_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing.npz not found"):
        load_dataset("npz", str(tmp_path / "missing.npz"))
    for name in ("a.npz", "b.npz"):
        np.savez(tmp_path / name, x=np.zeros((2, 2, 2)), y=np.zeros(2, dtype=int))
    with pytest.raises(DataError, match="exactly one .npz file"):
        load_dataset("npz", str(tmp_path))
    (tmp_path / "broken.npz").write_bytes(b"PK not really")
    with pytest.raises(DataError, match="broken.npz is not a readable .npz"):
        load_dataset("npz", str(tmp_path / "broken.npz"))


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_stays_uint8_until_the_split_converts_its_rows() -> None:
    data = load_dataset("fashion-mnist", None)
    assert data.pixels.dtype == np.uint8 and data.pixels.nbytes == 60000 * 28 * 28
    split = split_dataset(data, 0.1, 100)
    assert split.train_x.shape == (100, 1, 28, 28) and split.train_x.dtype == np.float32
    assert split.val_x.shape == (6000, 1, 28, 28)


def test_a_split_seed_gives_another_fixed_split_and_the_default_stays_put() -> None:
    data = indexed_images(40)
    default, same = split_dataset(data, 0.25), split_dataset(data, 0.25, seed=SPLIT_SEED)
    other, again = split_dataset(data, 0.25, seed=7), split_dataset(data, 0.25, seed=7)
    assert np.array_equal(default.val_x, same.val_x)
    assert np.array_equal(other.val_x, again.val_x) and not np.array_equal(other.val_x, default.val_x)


def test_every_dataset_comes_from_the_one_table_with_its_flags_and_messages() -> None:
    from katib_nas.cli.main import build_parser

    trial = build_parser()._subparsers._group_actions[0].choices["trial"]  # type: ignore[union-attr]
    flags = {action.dest: action for action in trial._actions}
    assert tuple(flags["dataset"].choices) == tuple(DATASETS)
    assert all(name in flags["data_dir"].help and dataset.location in flags["data_dir"].help
               for name, dataset in DATASETS.items())
    assert set(TEST_SETS) <= set(DATASETS) and all(DATASETS[n].test_files in flags["test"].help for n in TEST_SETS)


def test_the_training_flags_are_the_training_settings_with_their_defaults() -> None:
    from dataclasses import asdict, fields

    from katib_nas.cli.main import build_parser
    from katib_nas.trial_image.inputs import DEFAULTS, TrainingSettings, options_from
    from katib_nas.trial_image.proxyless.search_trial import SearchOptions
    from katib_nas.trial_image.trial import TrialOptions

    for argv, cls, extra in ((["trial", "--architecture=x", "--epochs=2"], TrialOptions, {}),
                             (["proxyless-search", "--architecture=x", "--search=y"], SearchOptions, {"supernet": "x"})):
        args = build_parser().parse_args(argv)
        options = options_from(cls, args, **extra)
        assert {f.name: getattr(options, f.name) for f in fields(TrainingSettings)} == asdict(DEFAULTS)
    assert options_from(TrialOptions, build_parser().parse_args(["trial", "--architecture=x", "--lr=0.2",
                                                                 "--epochs=3"])).lr == 0.2


def test_an_npz_with_other_array_names_is_named_as_such_in_one_statement(tmp_path: Path) -> None:
    """Arrays saved under other names (or positionally, arr_0 and arr_1) are said to be missing, with the names
    found; before, the line called the file unreadable and wrapped that message and the hint in a second one."""
    from katib_nas.trial_image.data import NPZ_HINT

    path = tmp_path / "named.npz"
    np.savez(path, images=np.zeros((3, 4, 4)), labels=np.arange(3))
    with pytest.raises(DataError) as caught:
        load_dataset("npz", str(path))
    assert str(caught.value) == f"{path}: missing array(s) x, y; found images, labels: {NPZ_HINT}"


def test_a_single_array_file_is_named_as_one_array_not_an_archive(tmp_path: Path) -> None:
    """np.save's .npy holds one unnamed array; before, reading it as an archive ended in a TypeError traceback."""
    from katib_nas.trial_image.data import NPZ_HINT

    path = tmp_path / "images.npy"
    np.save(path, np.zeros((3, 4, 4)))
    with pytest.raises(DataError) as caught:
        load_dataset("npz", str(path))
    assert str(caught.value) == f"{path} holds one array, not an .npz archive of arrays x and y: {NPZ_HINT}"


def test_an_npz_whose_labels_are_all_one_class_exits_2_before_training(tmp_path: Path) -> None:
    """One class only: every trial would score 1.0 by answering it, and a search would end at its goal at once."""
    from .support.trial_cli import run_trial

    path = tmp_path / "threes.npz"
    np.savez(path, x=np.random.default_rng(0).uniform(0, 1, (40, 8, 8)), y=np.full(40, 3))
    run = run_trial("--architecture=in8x8x1-cls10-stem4/w8:c3", "--dataset=npz", f"--data-dir={path}",
                    "--threads=1")
    assert run.code == 2 and run.stdout == ""
    assert run.error_lines() == [f"katib-nas trial: error: {path}: every label in y is 3; a classifier needs "
                                 f"images of at least 2 classes (every trial would score 1.0 by always answering "
                                 f"3): pass --data-dir with a .npz file holding arrays x (N, H, W[, C]) and y (N,) "
                                 f"of integer labels"]
