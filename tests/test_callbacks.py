from __future__ import annotations

import functools
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import Tensor
from torchvision.transforms.functional import to_tensor
from torchvision.utils import make_grid

from lit_gen import VAEModule
from lit_gen.callbacks import ImageWriter, Interpolations, Reconstructions, SampleGrid
from lit_gen.callbacks.interpolations import slerp
from lit_gen.nets import MLPDecoder, MLPEncoder
from tests.helpers import digits, tiny_gan, tiny_vae, trainer
from tests.wandb_offline import offline_runs, read_run


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
    assert grid.last_path == tmp_path / "samples" / "step=0000002.png" and grid.last_path.is_file()


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


# -- image callbacks with every kind of logger ------------------------------------------------------------------------
def sample_grid_case() -> tuple[Any, Any, Any, tuple[int, int]]:
    module, callback = tiny_gan(), SampleGrid(num_samples=6, nrow=3, seed=3)

    def expected() -> Tensor:
        images = module.sample(6, rng=torch.Generator().manual_seed(3))
        return make_grid(((images + 1) / 2).clamp(0, 1), nrow=3, padding=2)

    return module, callback, expected, (3 * 10 + 2, 2 * 10 + 2)


def reconstructions_case() -> tuple[Any, Any, Any, tuple[int, int]]:
    module, callback = tiny_vae(), Reconstructions(num_images=6, pairs_per_row=3)

    def expected() -> Tensor:
        dm = digits(value_range=(0.0, 1.0))
        dm.setup("fit")
        x = torch.stack([dm.splits["val"][i][0] for i in range(6)]).float() / 255  # the first validation digits
        pairs = torch.stack([x, module.reconstruct(x)], dim=1).flatten(0, 1)  # input, reconstruction, input, ...
        return make_grid(pairs, nrow=6, padding=2)

    return module, callback, expected, (6 * 10 + 2, 2 * 10 + 2)


def interpolations_case() -> tuple[Any, Any, Any, tuple[int, int]]:
    module, callback = tiny_gan(), Interpolations(num_rows=2, steps=5, seed=4)

    def expected() -> Tensor:
        z_a, z_b = torch.randn(2, 2, module.latent_dim, generator=torch.Generator().manual_seed(4))
        module.eval()
        ends = [((module.generator(z) + 1) / 2).clamp(0, 1) for z in (z_a, z_b)]
        images = torch.stack([ends[0], *[torch.full_like(ends[0], -1)] * 3, ends[1]], dim=1)  # middle: unchecked
        return make_grid(images.flatten(0, 1), nrow=5, padding=2)

    return module, callback, expected, (5 * 10 + 2, 2 * 10 + 2)


CASES = {"samples": sample_grid_case, "reconstructions": reconstructions_case, "interpolations": interpolations_case}


@pytest.fixture
def wandb_offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """WANDB_MODE=offline for one test; wandb reads its environment once per process, hence the teardowns."""
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    wandb.finish()  # a run an earlier test left (Lightning never finishes one)
    wandb.teardown()  # wandb reads its environment once per process
    yield
    wandb.finish()
    wandb.teardown()


def make_logger(kind: str, tmp_path: Path) -> Any:
    if kind == "wandb":
        return WandbLogger(save_dir=tmp_path, project="test")
    if kind == "tensorboard":
        return TensorBoardLogger(save_dir=tmp_path, name="tb")
    return False  # no logger: PNG files under default_root_dir


def logged_images(kind: str, name: str, tmp_path: Path, t: L.Trainer) -> list[Tensor]:
    """Every image the run logged for ``images/<name>``, oldest first, as (3, H, W) floats in [0, 1]."""
    if kind == "wandb":
        import wandb

        wandb.finish()  # flushes the run file
        (run,) = offline_runs(tmp_path)
        rows = [row for row in read_run(run)["history"] if f"images/{name}" in row]
        paths = [run / "files" / row[f"images/{name}"]["filenames"][0] for row in rows]
    elif kind == "tensorboard":
        accumulator = EventAccumulator(t.loggers[0].log_dir, size_guidance={"images": 0})
        accumulator.Reload()
        events = accumulator.Images(f"images/{name}")
        return [to_tensor(Image.open(io.BytesIO(e.encoded_image_string)).convert("RGB")) for e in events]
    else:
        paths = sorted((tmp_path / name).glob("*.png"))
    return [to_tensor(Image.open(p).convert("RGB")) for p in paths]


@pytest.mark.parametrize("kind", ["png", "wandb", "tensorboard"])
@pytest.mark.parametrize("name", list(CASES))
def test_image_callback_logs_grids_to_the_trainers_logger(kind: str, name: str, tmp_path: Path, request) -> None:
    if kind == "wandb":
        request.getfixturevalue("wandb_offline")
    module, callback, expected, size = CASES[name]()
    dm = digits(value_range=(0.0, 1.0) if name == "reconstructions" else (-1.0, 1.0))
    t = trainer(tmp_path, max_epochs=2, limit_train_batches=2, callbacks=[callback], logger=make_logger(kind, tmp_path))
    t.fit(module, datamodule=dm)
    images = logged_images(kind, name, tmp_path, t)
    assert len(images) == 2  # one grid per epoch (every_n_epochs=1), none twice at the end
    assert all(tuple(image.shape) == (3, size[1], size[0]) for image in images)
    if kind != "png":
        assert not (tmp_path / name).exists()  # the logger shows the grids: no PNG files besides
    want = expected()
    columns = [0, 4] if name == "interpolations" else list(range(want.shape[-1] // 10))
    for col in columns:  # the last grid is the model's at the end, denormalised from the data's range
        tile = (slice(None), slice(None), slice(col * 10, col * 10 + 12))
        assert torch.allclose(images[-1][tile], want[tile], atol=1 / 255 + 1e-6), col


def test_sample_grid_draws_from_the_ema_generator(tmp_path: Path) -> None:
    fast = functools.partial(torch.optim.Adam, lr=0.05)  # the EMA visibly lags the trained generator
    module = tiny_gan(ema_decay=0.5, generator_optimizer=fast)
    grid = SampleGrid(num_samples=4, nrow=4, seed=1)
    t = trainer(tmp_path, max_epochs=1, limit_train_batches=3, limit_val_batches=0, callbacks=[grid])
    t.fit(module, datamodule=digits())
    saved = to_tensor(Image.open(grid.last_path).convert("RGB"))
    z = torch.randn(4, module.latent_dim, generator=torch.Generator().manual_seed(1))
    for net, matches in ((module.generator_ema.module.eval(), True), (module.generator.eval(), False)):
        want = make_grid(((net(z) + 1) / 2).clamp(0, 1), nrow=4, padding=2)
        assert torch.allclose(saved, want, atol=1 / 255 + 1e-6) is matches


def test_every_n_steps_counts_training_batches(tmp_path: Path) -> None:
    grid = SampleGrid(num_samples=4, every_n_epochs=0, every_n_steps=2)
    module = tiny_gan(n_critic=2)  # 3 optimizer steps per batch: Lightning's global_step would be 15
    t = trainer(tmp_path, max_epochs=1, limit_train_batches=5, limit_val_batches=0, callbacks=[grid])
    t.fit(module, datamodule=digits())
    assert grid.logged == [("step=0000002", 2), ("step=0000004", 4), ("step=0000005", 5)]  # and at the end
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == [f"step=000000{i}.png" for i in (2, 4, 5)]


def test_reconstructions_refuse_a_module_without_reconstruct(tmp_path: Path) -> None:
    t = trainer(tmp_path, callbacks=[Reconstructions()])
    with pytest.raises(TypeError, match="Reconstructions needs a module with reconstruct"):
        t.fit(tiny_gan(), datamodule=digits())


def test_slerp_keeps_the_norm_and_the_endpoints() -> None:
    a = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    b = torch.tensor([[0.0, 2.0], [2.0, 2.0]])  # orthogonal, equal norms; parallel (linear fallback)
    path = slerp(a, b, torch.linspace(0, 1, 5))
    assert torch.allclose(path[:, 0], a) and torch.allclose(path[:, -1], b)
    assert torch.allclose(path[0].norm(dim=1), torch.full((5,), 2.0))  # on the circle of radius 2
    assert torch.allclose(path[0, 2], torch.tensor([2**0.5, 2**0.5]))
    assert torch.allclose(path[1, 2], torch.tensor([1.5, 1.5]))  # parallel: the straight line


def test_conditional_vae_reconstructs_and_interpolates_with_labels(tmp_path: Path) -> None:
    L.seed_everything(0, verbose=False)
    module = VAEModule(
        encoder=MLPEncoder((1, 8, 8), latent_dim=2, hidden=(16,), num_classes=10),
        decoder=MLPDecoder(latent_dim=2, image_shape=(1, 8, 8), hidden=(16,), num_classes=10),
    )
    recon, interp = Reconstructions(num_images=2, pairs_per_row=2), Interpolations(num_rows=2, steps=3)
    t = trainer(tmp_path, limit_train_batches=2, callbacks=[recon, interp])
    t.fit(module, datamodule=digits(value_range=(0.0, 1.0)))
    dm = digits(value_range=(0.0, 1.0))
    dm.setup("fit")
    x = torch.stack([dm.splits["val"][i][0] for i in range(2)]).float() / 255
    y = torch.tensor([int(dm.splits["val"][i][1]) for i in range(2)])
    saved = to_tensor(Image.open(recon.last_path).convert("RGB"))
    assert torch.equal(recon.labels, y)
    first = module.reconstruct(x, y)[0].expand(3, 8, 8)  # the 2nd tile of the grid: x0, r0, x1, r1
    assert torch.allclose(saved[:, 2:10, 12:20], first, atol=1 / 255 + 1e-6)
    assert not torch.allclose(saved[:, 2:10, 12:20], module.reconstruct(x, (y + 1) % 10)[0].expand(3, 8, 8))
    assert to_tensor(Image.open(interp.last_path)).shape[-2:] == (2 * 10 + 2, 3 * 10 + 2)


def test_both_schedules_off_make_no_grid(tmp_path: Path) -> None:
    grid = SampleGrid(num_samples=4, every_n_epochs=0, every_n_steps=0)
    t = trainer(tmp_path, max_epochs=1, max_steps=2, limit_train_batches=3, limit_val_batches=0, callbacks=[grid])
    t.fit(tiny_gan(), datamodule=digits())
    assert grid.logged == [] and not (tmp_path / "samples").exists()


def test_interpolations_on_a_vq_vae_name_the_callback_to_use() -> None:
    from lit_gen import VQVAEModule
    from lit_gen.callbacks.interpolations import latent_decoder

    with pytest.raises(TypeError, match="A VQ-VAE has a grid of codes.*Reconstructions"):
        latent_decoder(VQVAEModule())
