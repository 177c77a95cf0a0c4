from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lit_gen.callbacks import ImageWriter, SampleGrid
from tests.helpers import digits, tiny_gan, tiny_vae, trainer


def test_sample_grid_saves_on_schedule_and_at_the_end(tmp_path: Path) -> None:
    grid = SampleGrid(num_samples=16, nrow=4, every_n_epochs=2)
    t = trainer(tmp_path, max_epochs=3, limit_train_batches=1, limit_val_batches=0, callbacks=[grid])
    t.fit(tiny_gan(), datamodule=digits())
    names = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert names == ["epoch=001.png", "epoch=002.png"]  # every 2nd epoch, and the last one
    image = Image.open(tmp_path / "samples" / "epoch=002.png")
    assert image.size == (4 * 10 + 2, 4 * 10 + 2)  # 4×4 grid of 8-px digits with 2-px padding


def test_sample_grid_saves_when_max_steps_ends_training(tmp_path: Path) -> None:
    grid = SampleGrid(num_samples=4, every_n_epochs=100)
    t = trainer(tmp_path, max_epochs=5, max_steps=4, limit_train_batches=3, limit_val_batches=0, callbacks=[grid])
    t.fit(tiny_gan(), datamodule=digits())
    assert grid.last_path == tmp_path / "samples" / "step=0000004.png" and grid.last_path.is_file()


def test_sample_grid_uses_fixed_noise(tmp_path: Path) -> None:
    module = tiny_gan()
    grid = SampleGrid(num_samples=4, seed=5)
    t = trainer(tmp_path, max_epochs=1, limit_train_batches=1, limit_val_batches=0, callbacks=[grid])
    t.fit(module, datamodule=digits())
    saved = torch.from_numpy(np.array(Image.open(grid.last_path))).float()
    expected = module.sample(4, rng=torch.Generator().manual_seed(5))
    # the saved grid (8-bit) holds the fixed-noise samples mapped from [-1, 1] to [0, 255]
    first = saved[2:10, 2:10, 0] / 255
    assert torch.allclose(first, ((expected[0, 0] + 1) / 2).clamp(0, 1), atol=1 / 255 + 1e-6)


def test_image_writer_names_files_by_dataset_index(tmp_path: Path) -> None:
    writer = ImageWriter(output_dir=str(tmp_path / "out"))
    dm = digits(value_range=(0.0, 1.0), batch_size=50)
    t = trainer(tmp_path, callbacks=[writer])
    t.predict(tiny_vae(), datamodule=dm, return_predictions=False)
    for kind in ("inputs", "reconstructions", "samples"):
        files = sorted((tmp_path / "out" / kind).glob("*.png"))
        assert len(files) == 180 and files[0].name == "000000.png" and files[-1].name == "000179.png"
        assert (tmp_path / "out" / f"{kind}_grid.png").is_file()
    first = torch.from_numpy(np.array(Image.open(tmp_path / "out" / "inputs" / "000000.png")))
    dm.setup()
    raw = dm.splits["test"][0][0]  # uint8 (1, 8, 8): the writer's inputs are the test images themselves
    assert torch.equal(first[..., 0], raw[0])
