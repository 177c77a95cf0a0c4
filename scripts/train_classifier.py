"""Train the digit classifier whose features lit_gen's Fréchet distance, KID, precision/recall and class coverage use.

    python scripts/train_classifier.py --dataset mnist_sample   # writes lit_gen/metrics/weights/mnist_sample.{pt,json}
    python scripts/train_classifier.py --dataset digits

It trains on the DataModule's train split (split seed 0, 10 % validation, 10 % test: the splits of the shipped
configs), keeps the epoch with the best validation accuracy, and records the test accuracy next to the weights.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from lit_gen import DigitsDataModule, MNISTSampleDataModule, __version__
from lit_gen.metrics.features import WEIGHTS_DIR
from lit_gen.nets import DigitClassifier

DATASETS = {"digits": DigitsDataModule, "mnist_sample": MNISTSampleDataModule}


class ClassifierTask(L.LightningModule):
    """Cross-entropy training of a :class:`DigitClassifier` with light random shifts (±2 px for 28 px, ±1 for 8)."""

    def __init__(self, net: DigitClassifier, lr: float, shift: int) -> None:
        super().__init__()
        self.net, self.lr, self.shift = net, lr, shift

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        if self.shift:
            dx, dy = torch.randint(-self.shift, self.shift + 1, (2,)).tolist()
            x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
        loss = F.cross_entropy(self.net(x), y)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("val/acc", (self.net(x).argmax(1) == y).float().mean(), prog_bar=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.net.parameters(), lr=self.lr)


def split_tensors(dm: L.LightningDataModule, split: str) -> tuple[Tensor, Tensor]:
    batches = [dm.on_after_batch_transfer(b, 0) for b in getattr(dm, f"{split}_dataloader")()]
    return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(DATASETS), required=True)
    parser.add_argument("--epochs", type=int, default=None, help="default: 20 (mnist_sample), 60 (digits)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="weights path without suffix (default: the package's)")
    args = parser.parse_args()
    start = time.time()
    L.seed_everything(args.seed, verbose=False)
    dm = DATASETS[args.dataset](batch_size=64, value_range=(0.0, 1.0), seed=0)
    dm.setup()
    net = DigitClassifier(image_shape=dm.image_shape)
    task = ClassifierTask(net, args.lr, shift=2 if dm.image_shape[-1] >= 16 else 1)
    epochs = args.epochs or (20 if args.dataset == "mnist_sample" else 60)
    best = {"acc": -1.0, "state": None, "epoch": -1}

    class KeepBest(L.Callback):
        def on_validation_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
            acc = float(trainer.callback_metrics["val/acc"])
            if acc > best["acc"]:
                best.update(
                    acc=acc, epoch=trainer.current_epoch, state={k: v.clone() for k, v in net.state_dict().items()}
                )

    trainer = L.Trainer(
        max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False, callbacks=[KeepBest()],
        enable_model_summary=False, num_sanity_val_steps=0, deterministic=True,
    )  # fmt: skip
    trainer.fit(task, datamodule=dm)
    net.load_state_dict(best["state"])  # type: ignore[arg-type]
    test_acc = net.accuracy(*split_tensors(dm, "test"))
    out = args.out or WEIGHTS_DIR / args.dataset
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), out.with_suffix(".pt"))
    c, h, w = dm.image_shape
    meta = {
        "dataset": args.dataset,
        "architecture": {"image_shape": [c, h, w], "num_classes": net.num_classes, "feature_dim": net.num_features},
        "inputs": "pixels in [0, 1]",
        "split": {"seed": 0, "val_fraction": dm.val_fraction, "test_fraction": dm.test_fraction},
        "train_images": len(dm.splits["train"]),
        "test_images": len(dm.splits["test"]),
        "best_epoch": best["epoch"],
        "val_accuracy": round(best["acc"], 4),
        "test_accuracy": round(test_acc, 4),
        "command": "python " + shlex.join(sys.argv),
        "seed": args.seed,
        "lit_gen": __version__,
        "torch": torch.__version__,
        "wall_seconds": round(time.time() - start, 1),
    }
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
