"""Under DDP a GAN's batch-norm statistics differ per process mid-epoch: checkpoints hold their average."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import lightning as L
    import torch
    from torch import nn

    from lit_gen import GANModule
    from lit_gen.nets import MLPGenerator
    from tests.helpers import digits

    out = Path(sys.argv[1])


    class StatsBeforeSave(L.Callback):
        # callbacks' on_save_checkpoint runs before the module's: each process's own statistics, before the average
        def on_save_checkpoint(self, trainer, pl_module, checkpoint):
            stats = {k: v.clone() for k, v in pl_module.state_dict().items() if "running_" in k}
            torch.save(stats, out / f"before{trainer.global_rank}-{trainer.global_step}.pt")


    L.seed_everything(0, verbose=False)
    discriminator = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.LeakyReLU(0.2), nn.Linear(16, 1)
    )
    generator = MLPGenerator(latent_dim=4, image_shape=(1, 8, 8), hidden=(16,))
    module = GANModule(generator=generator, discriminator=discriminator)
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(out, every_n_train_steps=6, save_top_k=-1, filename="{step}")
    trainer = L.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", max_epochs=1, limit_train_batches=5, limit_val_batches=0,
        logger=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[checkpoint, StatsBeforeSave()],
    )
    trainer.fit(module, datamodule=digits())
    """
)


@pytest.mark.slow  # two processes start in ~10 s each and import torch: ~30 s on 2 shared cores
def test_mid_epoch_checkpoints_hold_the_average_batch_norm_statistics(tmp_path: Path) -> None:
    script = tmp_path / "fit_ddp.py"
    script.write_text(SCRIPT)
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    ckpt = torch.load(tmp_path / "step=6.ckpt", weights_only=False)  # after batch 3 of 5: mid-epoch
    before = [torch.load(tmp_path / f"before{r}-6.pt") for r in (0, 1)]
    assert before[0].keys() == {"discriminator.2.running_mean", "discriminator.2.running_var"}
    for key in before[0]:
        assert not torch.allclose(before[0][key], before[1][key])  # each process saw its own batches
        torch.testing.assert_close(ckpt["state_dict"][key], (before[0][key] + before[1][key]) / 2)
