from __future__ import annotations

import struct
from pathlib import Path

import pytest
import torch
from PIL import Image

from lit_gen.data import DigitsDataModule, ImageFolderDataModule, MNISTSampleDataModule, TorchvisionDataModule


def indices(dm: DigitsDataModule, split: str) -> list[int]:
    return list(dm.splits[split].indices)  # type: ignore[attr-defined]


def test_digits_splits_are_deterministic_disjoint_and_complete() -> None:
    a, b, c = DigitsDataModule(seed=0), DigitsDataModule(seed=0), DigitsDataModule(seed=1)
    for dm in (a, b, c):
        dm.setup()
    sizes = [len(a.splits[s]) for s in ("train", "val", "test")]
    assert sum(sizes) == 1797 and sizes[1] == sizes[2] == 180
    everything = indices(a, "train") + indices(a, "val") + indices(a, "test")
    assert sorted(everything) == list(range(1797))
    assert indices(a, "val") == indices(b, "val") != indices(c, "val")
    assert a.image_shape == (1, 8, 8) and a.num_classes == 10


@pytest.mark.parametrize("value_range", [(-1.0, 1.0), (0.0, 1.0)])
def test_batches_arrive_as_floats_in_the_value_range(value_range: tuple[float, float]) -> None:
    dm = DigitsDataModule(batch_size=256, value_range=value_range)
    dm.setup()
    raw, labels = next(iter(dm.train_dataloader()))
    assert raw.dtype == torch.uint8 and raw.max() == 255  # digits use the full grey range
    images, same_labels = dm.on_after_batch_transfer((raw, labels), 0)
    assert images.dtype == torch.float32 and images.shape == (256, 1, 8, 8)
    assert images.min().item() == value_range[0] and images.max().item() == value_range[1]
    assert torch.equal(dm.to_uint8(images), raw) and torch.equal(same_labels, labels)


def test_mnist_sample_is_5000_real_digits() -> None:
    dm = MNISTSampleDataModule()
    dm.setup()
    assert sum(len(s) for s in dm.splits.values()) == 5000
    assert dm.image_shape == (1, 28, 28) and dm.num_classes == 10
    images, labels = next(iter(dm.test_dataloader()))
    assert images.float().mean() / 255 == pytest.approx(0.13, abs=0.03)  # MNIST's mean intensity
    assert set(labels.tolist()) <= set(range(10))


def test_image_size_resizes_in_memory_sources_once() -> None:
    dm = DigitsDataModule(image_size=16)
    dm.setup()
    assert dm.image_shape == (1, 16, 16)
    assert next(iter(dm.val_dataloader()))[0].shape[1:] == (1, 16, 16)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"val_fraction": 0.6, "test_fraction": 0.5}, "sum below 1"),
        ({"value_range": (1.0, -1.0)}, "low < high"),
    ],
)
def test_bad_data_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DigitsDataModule(**kwargs)


# -- image folders, written here in real formats ---------------------------------------------------------------------
def write_folder(root: Path, sizes: dict[str, tuple[int, int]]) -> None:
    torch.manual_seed(0)
    for name, (h, w) in sizes.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(torch.randint(0, 256, (h, w, 3), dtype=torch.uint8).numpy()).save(path)


def test_image_folder_with_class_subfolders(tmp_path: Path) -> None:
    write_folder(tmp_path, {f"cat/{i}.png": (12, 12) for i in range(6)} | {f"dog/{i}.jpg": (12, 12) for i in range(4)})
    dm = ImageFolderDataModule(root=str(tmp_path), channels=3, batch_size=4, val_fraction=0.2, test_fraction=0.2)
    dm.setup()
    assert dm.image_shape == (3, 12, 12) and dm.num_classes == 2
    labels = sorted(int(y) for s in dm.splits.values() for _, y in s)
    assert labels == [0] * 6 + [1] * 4
    images, _ = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 3, 12, 12) and images.dtype == torch.uint8


def test_image_folder_grey_and_resized(tmp_path: Path) -> None:
    write_folder(tmp_path, {"a.png": (20, 30), "b.jpg": (40, 40), "c.png": (16, 16)})
    dm = ImageFolderDataModule(root=str(tmp_path), channels=1, image_size=8, val_fraction=0, test_fraction=0)
    dm.setup()
    shapes = {tuple(x.shape) for x, _ in dm.splits["train"]}
    assert shapes == {(1, 8, 8)}


def test_image_folder_of_mixed_sizes_asks_for_image_size(tmp_path: Path) -> None:
    write_folder(tmp_path, {"a.png": (8, 8), "b.png": (10, 10)})
    dm = ImageFolderDataModule(root=str(tmp_path), val_fraction=0, test_fraction=0)
    with pytest.raises(ValueError, match=r"mixed sizes: .*b\.png is 10×10, .*a\.png is 8×8.*DataModule's image_size"):
        dm.setup()  # found from the headers, before any training


def test_corrupt_image_file_is_named(tmp_path: Path) -> None:
    write_folder(tmp_path, {"good.png": (8, 8)})
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    dm = ImageFolderDataModule(root=str(tmp_path), val_fraction=0, test_fraction=0)
    with pytest.raises(ValueError, match=r"cannot decode image file .*broken\.png.*remove or replace it"):
        dm.setup()
        [x for x, _ in dm.splits["train"]]


def test_missing_or_empty_image_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolderDataModule(root=str(tmp_path / "nope")).setup()
    with pytest.raises(FileNotFoundError, match="no image files"):
        ImageFolderDataModule(root=str(tmp_path)).setup()


# -- torchvision datasets, from files in their real format -----------------------------------------------------------
def write_idx(path: Path, array: torch.Tensor) -> None:
    header = struct.pack(">I", 0x0800 | array.dim()) + b"".join(struct.pack(">I", s) for s in array.shape)
    path.write_bytes(header + array.numpy().tobytes())


def test_torchvision_mnist_from_idx_files(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", 50), ("t10k", 20)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", torch.arange(n, dtype=torch.uint8) % 10)
    dm = TorchvisionDataModule(name="MNIST", root=str(tmp_path), val_fraction=0.2)
    dm.setup()
    assert [len(dm.splits[s]) for s in ("train", "val", "test")] == [40, 10, 20]
    assert dm.image_shape == (1, 28, 28) and dm.num_classes == 10


def test_torchvision_missing_data_says_what_to_do_offline(tmp_path: Path) -> None:
    dm = TorchvisionDataModule(name="FashionMNIST", root=str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="FashionMNIST files into .*download=True on the DataModule"):
        dm.setup()


def test_unknown_torchvision_name() -> None:
    with pytest.raises(ValueError, match="unknown torchvision dataset 'MNSIT'"):
        TorchvisionDataModule(name="MNSIT")
