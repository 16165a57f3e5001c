"""Datasets: the bundled digits, image folders, CIFAR pickles, and their errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from supernet.data import DatasetConfig, DatasetError, load_dataset, random_shift, resize


def test_bundled_mnist_split_is_stratified_fixed_and_disjoint():
    data = load_dataset(DatasetConfig(kind="mnist", val_fraction=0.2, test_fraction=0.1, seed=0))
    assert (len(data.train), len(data.val), len(data.test)) == (3500, 1000, 500)
    assert data.in_channels == 1 and data.num_classes == 10 and data.image_size == 28
    for split, per_class in ((data.train, 350), (data.val, 100), (data.test, 50)):
        assert torch.bincount(split.labels).tolist() == [per_class] * 10
    assert data.train.images.dtype == torch.uint8

    again = load_dataset(DatasetConfig(kind="mnist", seed=0))
    assert torch.equal(again.val.images, data.val.images)
    other = load_dataset(DatasetConfig(kind="mnist", seed=1))
    assert not torch.equal(other.val.images, data.val.images)

    def keys(split):
        return {bytes(img.numpy()) for img in split.images}

    assert not keys(data.train) & keys(data.val) and not keys(data.val) & keys(data.test)


def test_normalisation_uses_train_statistics():
    data = load_dataset(DatasetConfig(kind="mnist"))
    x = data.normalize(data.train.images)
    assert abs(x.mean().item()) < 1e-3 and abs(x.std().item() - 1) < 1e-2
    assert 0.1 < data.mean[0] < 0.2  # MNIST's mean intensity is about 0.13


def test_limit_keeps_every_class():
    data = load_dataset(DatasetConfig(kind="mnist", limit=40))
    assert len(data.train) == len(data.val) == len(data.test) == 40
    assert len(torch.unique(data.train.labels)) >= 8


def test_resize_and_shift():
    x = torch.rand(4, 1, 28, 28)
    assert resize(x, 16).shape == (4, 1, 16, 16)
    assert resize(x, 28) is x
    gen = torch.Generator().manual_seed(0)
    shifted = random_shift(x, 2, gen)
    assert shifted.shape == x.shape
    assert torch.equal(random_shift(x, 0, gen), x)
    again = random_shift(x, 2, torch.Generator().manual_seed(0))
    assert torch.equal(shifted, again)


def _write_images(folder, classes, per_class, mode, size=12):
    rng = np.random.default_rng(0)
    for cls in classes:
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape = (size, size) if mode == "L" else (size, size, 3)
            Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(
                folder / cls / f"{i}.png"
            )


def test_image_folder_grey_with_random_split(tmp_path):
    _write_images(tmp_path, ["cat", "dog", "eel"], 10, "L")
    data = load_dataset(DatasetConfig(kind="imagefolder", path=str(tmp_path), image_size=16))
    assert data.classes == ["cat", "dog", "eel"]
    assert data.in_channels == 1 and data.image_size == 16
    assert len(data.train) + len(data.val) + len(data.test) == 30


def test_image_folder_rgb_with_split_folders(tmp_path):
    _write_images(tmp_path / "train", ["a", "b"], 6, "RGB")
    _write_images(tmp_path / "val", ["a", "b"], 2, "RGB")
    data = load_dataset(DatasetConfig(kind="imagefolder", path=str(tmp_path), image_size=8))
    assert data.in_channels == 3
    # val comes from val/; test (10%) is carved from train/: 1 of the 6 images per class
    assert (len(data.train), len(data.val), len(data.test)) == (10, 4, 2)


def test_image_folder_errors(tmp_path):
    def load(path, **kw):
        return load_dataset(DatasetConfig(kind="imagefolder", path=str(path), **kw))

    with pytest.raises(DatasetError, match="does not exist"):
        load(tmp_path / "missing")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DatasetError, match="not a folder"):
        load(tmp_path / "file.txt")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="no class subfolders"):
        load(empty)
    (empty / "cls").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        load(empty)
    (empty / "cls" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"cannot read image .*broken\.png"):
        load(empty)
    with pytest.raises(DatasetError, match="needs `path`"):
        load_dataset(DatasetConfig(kind="cifar10"))


def _pickle(path, obj):
    with path.open("wb") as f:
        pickle.dump(obj, f)


def _cifar_batch(n, label_key, classes):
    rng = np.random.default_rng(n)
    return {
        b"data": rng.integers(0, 255, (n, 3 * 32 * 32), dtype=np.uint8),
        label_key: [int(v) for v in rng.integers(0, classes, n)],
    }


def test_cifar10_folder(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i in range(1, 6):
        _pickle(folder / f"data_batch_{i}", _cifar_batch(20, b"labels", 10))
    _pickle(folder / "test_batch", _cifar_batch(10, b"labels", 10))
    _pickle(folder / "batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)]})
    data = load_dataset(DatasetConfig(kind="cifar10", path=str(tmp_path)))
    assert data.in_channels == 3 and data.num_classes == 10 and data.image_size == 32
    assert len(data.test) == 10 and len(data.train) + len(data.val) == 100
    assert data.classes[3] == "c3"


def test_cifar100_folder_and_errors(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    _pickle(folder / "train", _cifar_batch(50, b"fine_labels", 100))
    _pickle(folder / "test", _cifar_batch(10, b"fine_labels", 100))
    _pickle(folder / "meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)]})
    data = load_dataset(DatasetConfig(kind="cifar100", path=str(tmp_path)))
    assert data.num_classes == 100
    (folder / "test").unlink()
    with pytest.raises(DatasetError, match=r"CIFAR file missing: .*test"):
        load_dataset(DatasetConfig(kind="cifar100", path=str(tmp_path)))
    (folder / "test").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DatasetError, match="cannot read CIFAR file"):
        load_dataset(DatasetConfig(kind="cifar100", path=str(tmp_path)))


def test_unknown_split_name():
    data = load_dataset(DatasetConfig(kind="mnist", limit=10))
    with pytest.raises(DatasetError, match="unknown split 'dev'"):
        data.split("dev")


class _RunsACommand:
    """A pickle that would call os.system when loaded."""

    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > pwned.txt",))


def test_cifar_pickles_may_hold_numpy_arrays_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i in range(1, 6):
        _pickle(folder / f"data_batch_{i}", _cifar_batch(20, b"labels", 10))
    _pickle(folder / "test_batch", {b"data": _RunsACommand(), b"labels": [0]})
    _pickle(folder / "batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)]})
    with pytest.raises(DatasetError, match=r"test_batch: it names (posix|nt)\.system"):
        load_dataset(DatasetConfig(kind="cifar10", path=str(tmp_path)))
    assert not (tmp_path / "pwned.txt").exists()
    # numpy's older module names (numpy.core, as in the real files) and each protocol load
    batch = _cifar_batch(10, b"labels", 10)
    old_names = pickle.dumps(batch, protocol=2).replace(b"numpy._core", b"numpy.core")
    for blob in (old_names, *(pickle.dumps(batch, protocol=p) for p in (2, 4, 5))):
        (folder / "test_batch").write_bytes(blob)
        data = load_dataset(DatasetConfig(kind="cifar10", path=str(tmp_path)))
        assert len(data.test) == 10
