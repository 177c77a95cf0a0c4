"""Images from a directory: ``root/<class>/*.png`` (labels from folder names) or a flat ``root/*.png``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torchvision.transforms.v2.functional as TF
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS

from lit_gen.data.base import ImageDataModule


class ImageFiles(Dataset):
    """Decodes one file per item into uint8 ``(C, H, W)``, resized and centre-cropped to ``image_size`` if given."""

    def __init__(self, files: list[Path], labels: list[int], channels: int, image_size: int | None) -> None:
        self.files, self.labels = files, labels
        self.mode = "L" if channels == 1 else "RGB"
        self.image_size = image_size
        self.shape: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        path = self.files[i]
        try:
            with Image.open(path) as pil:
                image = TF.pil_to_tensor(pil.convert(self.mode))
        except (OSError, UnidentifiedImageError, ValueError) as err:
            raise ValueError(f"cannot decode image file {path} ({err}); remove or replace it") from err
        if self.image_size is not None:
            image = TF.center_crop(TF.resize(image, self.image_size, antialias=True), [self.image_size] * 2)
        elif self.shape is None:
            self.shape = tuple(image.shape)
        elif tuple(image.shape) != self.shape:
            raise ValueError(
                f"images of mixed sizes: {path} is {tuple(image.shape)}, earlier ones are {self.shape}; "
                "set the DataModule's image_size (--data.image_size=SIZE) to resize them all"
            )
        return image, self.labels[i]


class ImageFolderDataModule(ImageDataModule):
    """All images under ``root`` (png, jpg, bmp, ...), decoded per item by DataLoader workers.

    Args:
        root: the directory. Sub-directories, if any, are classes (torchvision ImageFolder layout).
        channels: 1 (grey) or 3 (RGB): every image is converted to it.
        **kwargs: the arguments of :class:`ImageDataModule`; set ``image_size`` when the files differ in size.
    """

    def __init__(self, root: str, channels: Literal[1, 3] = 3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = root
        self.channels = channels

    def load(self) -> tuple[Dataset, Dataset | None]:
        root = Path(self.root)
        if not root.is_dir():
            raise FileNotFoundError(
                f"image folder {root.resolve()} does not exist; point the DataModule's root "
                "(--data.root=DIR) at your images"
            )
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
        if not files:
            raise FileNotFoundError(f"no image files ({', '.join(IMG_EXTENSIONS)}) under {root.resolve()}")
        classes = sorted({p.parent.relative_to(root).parts[0] for p in files if p.parent != root})
        index = {c: i for i, c in enumerate(classes)}
        labels = [index[p.parent.relative_to(root).parts[0]] if p.parent != root else 0 for p in files]
        self.num_classes = max(len(classes), 1)
        self._check_headers(files)
        return ImageFiles(files, labels, self.channels, self.image_size), None

    def _check_headers(self, files: list[Path]) -> None:
        """Read every file's header (no decoding) now, so that unreadable files and mixed sizes are reported before
        training starts. Damage past the header is reported, with the file's name, when the image is decoded."""
        sizes: dict[tuple[int, int], Path] = {}
        for path in files:
            try:
                with Image.open(path) as image:
                    size = image.size
            except (OSError, UnidentifiedImageError, ValueError) as err:
                raise ValueError(f"cannot decode image file {path} ({err}); remove or replace it") from err
            sizes.setdefault(size, path)
            if self.image_size is None and len(sizes) > 1:
                (w0, h0), first = next(iter(sizes.items()))
                raise ValueError(
                    f"images of mixed sizes: {path} is {size[0]}×{size[1]}, {first} is {w0}×{h0}; "
                    "set the DataModule's image_size (--data.image_size=SIZE) to resize them all"
                )
