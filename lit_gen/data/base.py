"""The DataModule family: every source yields ``(uint8 images (B, C, H, W), int64 labels (B,))`` batches that are
turned into floats in ``value_range`` after the transfer to the device (4× less data moved than float32)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sized
from typing import Any, Literal

import lightning as L
import torch
import torchvision.transforms.v2.functional as TF
from lightning.pytorch.accelerators import CUDAAccelerator
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler, TensorDataset, random_split
from torchdata.stateful_dataloader import StatefulDataLoader

from lit_gen.data.batched import BatchedView, collate

Split = Literal["train", "val", "test"]


class ImageDataModule(L.LightningDataModule):
    """Base class: deterministic train/val/test splits, batching and pixel scaling; subclasses only load data.

    Args:
        batch_size: images per batch (per process under DDP).
        val_fraction: share of the training pool held out for validation.
        test_fraction: share held out for testing, for sources without an official test split.
        seed: seed of the split permutation (independent of the training seed).
        value_range: ``(low, high)`` of the pixels the model sees: ``(-1, 1)`` for tanh generators,
            ``(0, 1)`` for Bernoulli decoders.
        image_size: resize the shorter side to this (antialiased) and centre-crop a square, or keep the size (None).
        num_workers: DataLoader worker processes; None = 0 for the in-memory sources (digits, MNIST sample,
            torchvision sets: a batch is one indexing operation, workers would only add inter-process copies) and
            ``min(4, CPU count)`` for image folders, whose files are decoded per item.
        pin_memory: page-locked batches for asynchronous host-to-GPU copies; None = on when training on CUDA.
        predict_split: which split ``lit-gen predict`` iterates (reconstructions for VAEs; a batch size for GANs).
        drop_last: drop the last incomplete training batch (batch norm dislikes tiny batches).
    """

    def __init__(
        self,
        *,
        batch_size: int = 64,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        seed: int = 0,
        value_range: tuple[float, float] = (-1.0, 1.0),
        image_size: int | None = None,
        num_workers: int | None = None,
        pin_memory: bool | None = None,
        predict_split: Split = "test",
        drop_last: bool = True,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
            raise ValueError(
                f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be in [0, 1) and sum below 1"
            )
        if value_range[0] >= value_range[1]:
            raise ValueError(f"value_range must be (low, high) with low < high, got {tuple(value_range)}")
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.seed = seed
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self.image_size = image_size
        if num_workers is not None and num_workers < 0:
            raise ValueError(f"num_workers must be >= 0 (None = chosen by the source), got {num_workers}")
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.predict_split = predict_split
        self.drop_last = drop_last
        self.splits: dict[str, Dataset] = {}
        self.image_shape: tuple[int, int, int] | None = None
        self.num_classes: int | None = None

    # -- what subclasses provide -------------------------------------------------------------------------------------
    def load(self) -> tuple[Dataset, Dataset | None]:
        """Return ``(pool, official_test or None)``; items are ``(uint8 image (C, H, W), label)``."""
        raise NotImplementedError

    # -- Lightning hooks ---------------------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Load once and split deterministically with ``seed``."""
        if self.splits:
            return
        pool, test = self.load()
        n = len(pool)  # type: ignore[arg-type]
        n_val, n_test = round(n * self.val_fraction), (round(n * self.test_fraction) if test is None else 0)
        lengths = [n - n_val - n_test, n_val] + ([n_test] if test is None else [])
        parts = random_split(pool, lengths, generator=torch.Generator().manual_seed(self.seed))
        self.splits = {"train": parts[0], "val": parts[1], "test": parts[2] if test is None else test}
        image, _ = pool[0]
        self.image_shape = tuple(image.shape)  # type: ignore[assignment]

    def train_dataloader(self) -> DataLoader:
        """Shuffled by a generator seeded with ``seed``; a ``StatefulDataLoader``, so that a run resumed from a
        mid-epoch checkpoint continues with the very batches the interrupted run would have seen."""
        return self._loader("train", shuffle=True, drop_last=self.drop_last)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_split)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """This DataModule's batches, ``(uint8 images (B, C, H, W), labels)``, -> ``(images in value_range, labels)``
        on the device, in the dtype the Trainer's precision gives its inputs (bfloat16 under ``"bf16-true"``, float64
        under ``"64-true"``, float32 under the mixed precisions and ``"32-true"``).

        Anything else passes unchanged: Lightning sends other tensors through this hook too, e.g. the input sample of
        ``LightningModule.to_onnx`` / ``to_torchscript(method="trace")`` when a trainer is attached.
        """
        if not is_uint8_batch(batch):
            return batch
        images, labels = batch
        images = self.to_float(images)
        trainer = getattr(self, "trainer", None)
        if trainer is not None:  # Lightning converted the batch before this hook, while it was still uint8
            images = trainer.precision_plugin.convert_input(images)
        return images, labels

    # -- helpers -----------------------------------------------------------------------------------------------------
    def to_float(self, images: Tensor) -> Tensor:
        """uint8 pixels -> ``value_range``."""
        low, high = self.value_range
        return images.float().mul_((high - low) / 255.0).add_(low)

    def to_uint8(self, images: Tensor) -> Tensor:
        """Floats in ``value_range`` (clamped) -> uint8 pixels; the inverse of :meth:`to_float`."""
        low, high = self.value_range
        return ((images.float() - low) * (255.0 / (high - low))).round_().clamp_(0, 255).to(torch.uint8)

    def tensor_dataset(self, images: Tensor, labels: Tensor | None = None) -> TensorDataset:
        """In-memory dataset of uint8 ``(N, C, H, W)`` images, resized to ``image_size`` once, here."""
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"expected uint8 images (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if self.image_size is not None and images.shape[-2:] != (self.image_size, self.image_size):
            side = [self.image_size, self.image_size]
            images = TF.center_crop(TF.resize(images, self.image_size, antialias=True), side)
        if labels is None:
            labels = torch.zeros(len(images), dtype=torch.long)
        return TensorDataset(images.contiguous(), labels.long())

    def _loader(self, split: str, shuffle: bool = False, drop_last: bool = False) -> DataLoader:
        if not self.splits:
            self.setup()
        dataset = BatchedView(self.splits[split])  # in-memory sources gather a batch in one indexing operation
        sampler = EpochSeededRandomSampler(dataset, seed=self.seed) if shuffle else None
        workers = self.num_workers
        if workers is None:
            workers = 0 if dataset.source is not None else min(4, os.cpu_count() or 1)
        pin = self.pin_memory
        if pin is None:
            trainer = getattr(self, "trainer", None)
            pin = trainer is not None and isinstance(trainer.accelerator, CUDAAccelerator)
        return StatefulDataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            # every iterator draws its workers' base seed from this generator: from torch's global RNG otherwise, so
            # that a validation would move the training noise (and a resume that skips one would differ)
            generator=torch.Generator().manual_seed(self.seed),
            drop_last=drop_last and len(dataset) // self._world_size() > self.batch_size,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=pin,
            collate_fn=collate,
        )

    def _world_size(self) -> int:
        trainer = getattr(self, "trainer", None)
        return trainer.world_size if trainer is not None else 1

    def state_dict(self) -> dict[str, Any]:
        return {"image_shape": self.image_shape, "value_range": self.value_range}


def is_uint8_batch(batch: Any) -> bool:
    """Whether ``batch`` is one the DataModules make: ``(uint8 images, labels)`` (a tuple or list of two)."""
    return (
        isinstance(batch, (tuple, list))
        and len(batch) == 2
        and isinstance(batch[0], Tensor)
        and batch[0].dtype == torch.uint8
    )


class EpochSeededRandomSampler(Sampler[int]):
    """A random order per epoch that is a function of ``(seed, epoch)`` alone, and a state that knows its epoch.

    ``order(e) = torch.randperm(len(data_source), generator=torch.Generator().manual_seed(seed + e))``. Lightning
    calls ``set_epoch`` at the start of every epoch, but it may create the epoch's iterator before that call (it does
    when a run resumes), so the iterator draws its order lazily, at its first index, from the epoch the sampler holds
    then. Its ``state_dict`` (which ``StatefulDataLoader`` saves in every checkpoint) is ``{"epoch", "position"}``;
    after ``load_state_dict`` the iterator continues at ``position`` only if the saved epoch is the one being
    trained, so that the state of a finished epoch (a checkpoint written at an epoch's last batch or at its end)
    does not replay or truncate the next one.

    Args:
        data_source: the dataset whose indices are shuffled.
        seed: seed of epoch 0's order; epoch ``e`` uses ``seed + e``.
    """

    def __init__(self, data_source: Sized, seed: int = 0) -> None:
        self.data_source = data_source
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order the next iterator yields (called by Lightning before each epoch)."""
        self.epoch = epoch

    def order(self, epoch: int) -> list[int]:
        """The indices of ``epoch``, in the order they are drawn."""
        generator = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(len(self.data_source), generator=generator).tolist()

    def __iter__(self) -> Iterator[int]:
        return _EpochSeededIterator(self)

    def __len__(self) -> int:
        return len(self.data_source)


class _EpochSeededIterator(Iterator[int]):
    """One pass of :class:`EpochSeededRandomSampler`; stateful (torchdata's ``Stateful`` protocol)."""

    def __init__(self, sampler: EpochSeededRandomSampler) -> None:
        self.sampler = sampler
        self.epoch: int | None = None  # bound at the first index drawn
        self.indices: list[int] = []
        self.position = 0
        self._restored: dict[str, Any] | None = None

    def __iter__(self) -> _EpochSeededIterator:
        return self

    def __next__(self) -> int:
        if self.epoch is None:
            self._start()
        if self.position >= len(self.indices):
            raise StopIteration
        self.position += 1
        return self.indices[self.position - 1]

    def _start(self) -> None:
        self.epoch = epoch = self.sampler.epoch
        self.indices = self.sampler.order(epoch)
        self.position = self._restored_position(epoch) if self._restored is not None else 0
        self._restored = None

    def _restored_position(self, epoch: int) -> int:
        """Where the restored state continues this epoch: its position if it was saved in this epoch, else 0 (a state
        saved in an earlier epoch belongs to a finished pass)."""
        state = self._restored
        assert state is not None
        if "epoch" in state:
            return int(state["position"]) if state["epoch"] == epoch else 0
        # lit_gen 0.1.0 used torchdata's RandomSampler, whose state is its generator at the start of the epoch (seeded
        # with seed + epoch) and the indices yielded
        seeded = torch.Generator().manual_seed(self.sampler.seed + epoch).get_state()
        return int(state["yielded"]) if torch.equal(seeded, state["generator"]) else 0

    def state_dict(self) -> dict[str, Any]:
        if self.epoch is None:  # nothing drawn yet: the state restored, or the start of the sampler's epoch
            return dict(self._restored) if self._restored is not None else {"epoch": self.sampler.epoch, "position": 0}
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep ``state_dict``; it is applied at the first index drawn, once Lightning has called ``set_epoch``."""
        self.epoch, self.indices, self.position, self._restored = None, [], 0, dict(state_dict)
