"""VQVAEModule: the objective, training and its logs, test metrics and rates, predict, checkpoints, the CLI."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from lit_gen import VQVAEModule
from lit_gen.cli import LitGenCLI
from lit_gen.losses.vq import codebook_loss, commitment_loss, squared_error
from lit_gen.nets import VectorQuantizer, VQDecoder, VQEncoder
from tests.helpers import digits, trainer
from tests.test_cli import FAST, ROOT, write_cifar10
from tests.test_compression import tiny_vqvae


def test_loss_terms_are_recon_plus_beta_commitment_plus_codebook() -> None:
    module = tiny_vqvae(ema=False, commitment=0.5)
    x = torch.rand(5, 1, 8, 8)
    terms, counts = module.loss_terms(x)
    module.eval()  # the same codebook, no update: recompute by hand
    out = module(x)
    recon = squared_error(out.recon, x).mean()
    commit = commitment_loss(out.z_e, out.quantized.codewords).mean()
    book = codebook_loss(out.z_e, out.quantized.codewords).mean()
    assert terms["recon"].item() == pytest.approx(recon.item(), rel=1e-5)
    assert terms["commitment"].item() == pytest.approx(commit.item(), rel=1e-5)
    assert terms["codebook"].item() == pytest.approx(book.item(), rel=1e-5)
    assert terms["loss"].item() == pytest.approx(recon.item() + 0.5 * commit.item() + book.item(), rel=1e-5)
    assert int(counts.sum()) == 5 * 16


def test_training_lowers_the_loss_and_logs_code_usage(tmp_path) -> None:
    module = tiny_vqvae()
    dm = digits(value_range=(0.0, 1.0), batch_size=64)
    dm.setup()
    before = module.loss_terms(dm.to_float(next(iter(dm.val_dataloader()))[0]))[0]["loss"].item()
    t = trainer(tmp_path, max_epochs=3, limit_train_batches=None, limit_val_batches=None)
    t.fit(module, datamodule=dm)
    metrics = t.callback_metrics
    assert metrics["val/loss"].item() < before / 2
    keys = {"train/loss", "train/recon", "train/commitment", "train/perplexity", "train/usage", "train/restarts",
            "val/loss", "val/recon", "val/commitment", "val/perplexity", "val/usage", "val/dead_codes"}  # fmt: skip
    assert keys <= set(metrics)
    assert 1 <= metrics["val/perplexity"].item() <= 16 and 0 < metrics["val/usage"].item() <= 1
    assert metrics["val/dead_codes"].item() == pytest.approx(16 * (1 - metrics["val/usage"].item()))
    # the code frequencies were counted on the whole training split at the last validation
    assert int(module.code_counts.sum()) == len(dm.splits["train"]) * 16


def test_counting_the_training_codes_leaves_the_training_rng_alone(tmp_path) -> None:
    module, dm = tiny_vqvae(), digits(value_range=(0.0, 1.0))
    trainer(tmp_path, limit_train_batches=1).fit(module, datamodule=dm)
    module.code_counts.zero_()
    state = torch.get_rng_state()
    module._count_training_codes()
    assert torch.equal(torch.get_rng_state(), state) and int(module.code_counts.sum()) == len(dm.splits["train"]) * 16


def test_a_learned_codebook_gets_the_codebook_loss_gradient(tmp_path) -> None:
    module = tiny_vqvae(ema=False)
    assert isinstance(module.quantizer.codebook, torch.nn.Parameter)
    t = trainer(tmp_path, limit_train_batches=2)
    t.fit(module, datamodule=digits(value_range=(0.0, 1.0)))
    assert "train/codebook" in t.callback_metrics
    before = module.quantizer.codebook.detach().clone()
    terms, _ = module.loss_terms(torch.rand(4, 1, 8, 8))
    terms["loss"].backward()
    assert module.quantizer.codebook.grad.abs().sum() > 0
    assert torch.equal(module.quantizer.codebook.detach(), before)


def test_test_metrics_count_the_stored_bytes(tmp_path) -> None:
    module = tiny_vqvae()
    dm = digits(value_range=(0.0, 1.0), batch_size=64)
    t = trainer(tmp_path, limit_train_batches=4)
    t.fit(module, datamodule=dm)
    scores = t.test(module, datamodule=dm, verbose=False)[0]
    images = torch.cat([dm.to_float(x) for x, _ in dm.test_dataloader()])
    stored = module.compress(images)
    assert scores["test/bits_per_image"] == pytest.approx(sum(8 * len(b) for b in stored) / len(images), rel=1e-6)
    assert scores["test/bits_fixed"] == pytest.approx(16 * math.log2(16))
    probabilities = module.code_probabilities()
    log2p, codes = torch.from_numpy(probabilities).log2(), module.codes(images)  # per position: (4, 4, 16)
    ideal = -sum(log2p[i, j, codes[:, i, j]] for i in range(4) for j in range(4)).mean()
    assert scores["test/bits_information"] == pytest.approx(ideal.item(), rel=1e-5)
    recon = module.decompress(stored)
    mse = (recon.clamp(0, 1) - images).square().flatten(1).mean(1)
    assert scores["test/mse"] == pytest.approx(mse.mean().item(), rel=1e-4)
    assert scores["test/psnr"] == pytest.approx((10 * (1 / mse).log10()).mean().item(), rel=1e-4)
    assert {"test/perplexity", "test/usage", "test/dead_codes", "test/loss"} <= set(scores)


def test_without_code_frequencies_the_test_rate_is_the_fixed_length_file(tmp_path) -> None:
    module = tiny_vqvae(recount_codes=False)
    dm = digits(value_range=(0.0, 1.0), batch_size=64)
    t = trainer(tmp_path, limit_train_batches=2)
    t.fit(module, datamodule=dm)
    scores = t.test(module, datamodule=dm, verbose=False)[0]
    assert int(module.code_counts.sum()) == 0 and "test/bits_information" not in scores
    assert scores["test/bits_per_image"] == 8 * (5 + 16 * 4 / 8)  # a 5-byte header and 16 codes of 4 bits


def test_predict_writes_inputs_beside_their_decompressed_reconstructions(tmp_path) -> None:
    module = tiny_vqvae()
    dm = digits(value_range=(0.0, 1.0), batch_size=32)
    t = trainer(tmp_path, limit_train_batches=2)
    t.fit(module, datamodule=dm)
    out = t.predict(module, datamodule=dm)[0]
    assert set(out) == {"inputs", "reconstructions"}
    assert torch.equal(out["reconstructions"], module.decompress(module.compress(out["inputs"])))


def test_load_from_checkpoint_compresses_identically(tmp_path) -> None:
    module = tiny_vqvae()
    dm = digits(value_range=(0.0, 1.0))
    t = trainer(tmp_path, limit_train_batches=2)
    t.fit(module, datamodule=dm)
    t.save_checkpoint(tmp_path / "vq.ckpt")
    loaded = VQVAEModule.load_from_checkpoint(
        tmp_path / "vq.ckpt", encoder=VQEncoder((1, 8, 8), code_dim=4, width=8),
        decoder=VQDecoder(4, (1, 8, 8), width=8), quantizer=VectorQuantizer(num_codes=16, code_dim=4),
    )  # fmt: skip
    assert torch.equal(loaded.code_counts, module.code_counts) and int(loaded.code_counts.sum()) > 0
    x = torch.rand(3, 1, 8, 8)
    assert module.compress(x) == loaded.compress(x)
    assert torch.equal(loaded.decompress(module.compress(x)), module.reconstruct(x))


def test_discretized_logistic_likelihood_takes_two_channels_per_pixel(tmp_path) -> None:
    module = tiny_vqvae(likelihood="discretized_logistic", decoder=VQDecoder(4, (1, 8, 8), width=8, out_channels=2))
    t = trainer(tmp_path, limit_train_batches=2)
    t.fit(module, datamodule=digits(value_range=(-1.0, 1.0)))
    assert torch.isfinite(t.callback_metrics["train/loss"]) and module.pixel_range == (-1.0, 1.0)
    t.save_checkpoint(tmp_path / "vq.ckpt")
    nets = {"encoder": VQEncoder((1, 8, 8), code_dim=4, width=8), "quantizer": VectorQuantizer(16, 4),
            "decoder": VQDecoder(4, (1, 8, 8), width=8, out_channels=2)}  # fmt: skip
    loaded = VQVAEModule.load_from_checkpoint(tmp_path / "vq.ckpt", **nets)
    assert loaded.pixel_range == (-1.0, 1.0)
    images = module.reconstruct(torch.rand(3, 1, 8, 8) * 2 - 1)
    assert images.shape == (3, 1, 8, 8) and images.min() >= -1 and images.max() <= 1
    with pytest.raises(ValueError, match="the discretized_logistic likelihood needs 2 output channels"):
        tiny_vqvae(likelihood="discretized_logistic")(torch.rand(2, 1, 8, 8))


def test_bernoulli_likelihood_refuses_pixels_outside_zero_one(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"Bernoulli likelihood needs pixels in \[0, 1\].*value_range=\(0, 1\) on the"):
        trainer(tmp_path).fit(tiny_vqvae(likelihood="bernoulli"), datamodule=digits(value_range=(-1.0, 1.0)))


def test_decoder_data_shape_mismatch_is_named(tmp_path) -> None:
    module = VQVAEModule(encoder=VQEncoder((1, 8, 8), code_dim=4), decoder=VQDecoder(4, (1, 16, 16), downsample=2),
                         quantizer=VectorQuantizer(8, 4))  # fmt: skip
    with pytest.raises(ValueError, match="decoder makes 1×16×16 images but the data is 1×8×8"):
        trainer(tmp_path).fit(module, datamodule=digits(value_range=(0.0, 1.0)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"commitment": -1.0}, "commitment must be >= 0"),
        ({"likelihood": "poisson"}, "unknown likelihood"),
        ({"quantizer": VectorQuantizer(num_codes=8, code_dim=5)}, r"code sizes disagree.*\[4, 5\]"),
        (
            {"decoder": VQDecoder(4, (1, 16, 16), downsample=1)},
            "encoder makes a 4×4 grid of codes but the decoder takes 8×8",
        ),
    ],
)
def test_bad_hyperparameters_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tiny_vqvae(**kwargs)


def run_cli(*args: str) -> LitGenCLI:
    return LitGenCLI(args=list(args))


@pytest.mark.parametrize(
    ("config", "resume"),
    [
        ("configs/vae/vqvae_digits.yaml", True),
        pytest.param("configs/vae/vqvae_mnist.yaml", False, marks=pytest.mark.slow),
    ],
)  # the resume path is the same for both; MNIST skips it to save a data load (and is marked slow, ~25 s)
def test_configs_fit_resume_test_and_predict(config: str, resume: bool, tmp_path: Path) -> None:
    common = ["--config", str(ROOT / config), f"--trainer.logger.init_args.save_dir={tmp_path}"]
    cli = run_cli("fit", *common, *FAST)
    run = Path(cli.trainer.log_dir)
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "config.yaml").is_file()
    assert int(cli.model.code_counts.sum()) > 0  # counted at the end-of-epoch validation, saved in last.ckpt

    if resume:
        resumed = run_cli("fit", *common, "--ckpt_path=last", *FAST[1:], "--trainer.max_epochs=2")
        assert Path(resumed.trainer.log_dir) == run and resumed.trainer.current_epoch == 2

    tested = run_cli("test", *common, "--ckpt_path=last", "--trainer.limit_test_batches=2",
                     "--trainer.enable_progress_bar=false")  # fmt: skip
    metrics = tested.trainer.callback_metrics
    keys = {"test/loss", "test/recon", "test/commitment", "test/mse", "test/psnr", "test/bits_per_image",
            "test/bits_fixed", "test/bits_information", "test/perplexity", "test/usage", "test/dead_codes"}  # fmt: skip
    assert keys <= set(metrics) and all(torch.isfinite(metrics[k]) for k in keys)
    assert metrics["test/bits_per_image"] < metrics["test/bits_fixed"] + 8 * 16  # header and the coder's last word

    out = tmp_path / "predictions"
    run_cli("predict", *common, "--ckpt_path=last", f"--predict_writer.output_dir={out}",
            "--trainer.limit_predict_batches=2", "--trainer.enable_progress_bar=false")  # fmt: skip
    batch = yaml.safe_load((ROOT / config).read_text())["data"]["init_args"]["batch_size"]
    for kind in ("inputs", "reconstructions"):
        assert len(list((out / kind).glob("*.png"))) == 2 * batch and (out / f"{kind}_grid.png").is_file()


def test_cifar10_config_trains_on_files_in_torchvisions_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets.cifar as cifar

    write_cifar10(tmp_path / "data")
    monkeypatch.setattr(cifar, "check_integrity", lambda *args, **kwargs: True)  # our files are not the real md5s
    monkeypatch.setattr(cifar.CIFAR10, "_check_integrity", lambda self: True)
    cli = run_cli("fit", "--config", str(ROOT / "configs/vae/cifar10_vqvae.yaml"),
                  f"--trainer.logger.init_args.save_dir={tmp_path}", f"--data.init_args.root={tmp_path / 'data'}",
                  "--data.init_args.batch_size=8", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
                  *FAST[:1], *FAST[3:])  # fmt: skip
    assert cli.datamodule.image_shape == (3, 32, 32) and cli.model.quantizer.num_codes == 512
    assert cli.model.encoder.grid == (8, 8) and (Path(cli.trainer.log_dir) / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow  # two processes: about a minute on 2 shared cores
def test_ddp_two_cpu_processes_keep_one_codebook(tmp_path: Path) -> None:
    from tests.test_strategies import run_ddp

    done = run_ddp("configs/vae/vqvae_digits.yaml", tmp_path, "--model.quantizer.init_args.restart_after=2",
                   "--model.quantizer.init_args.num_codes=64")  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    rank0, rank1 = (torch.load(tmp_path / "weights" / f"rank{r}.pt") for r in (0, 1))
    assert rank0.keys() == rank1.keys()
    for key in rank0:  # EMA statistics summed over processes, restarts drawn on rank 0: one codebook
        assert torch.equal(rank0[key], rank1[key]), key
    assert rank0["quantizer.restarts"].item() > 0 and int(rank0["code_counts"].sum()) > 0


@pytest.mark.slow  # three training runs in subprocesses: about a minute on 2 shared cores
def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    import tests.test_resume as resume

    # restarts every few steps draw from the training RNG; the codebook's EMA statistics and counters are buffers
    extra = ("--model.quantizer.init_args.restart_after=3", "--model.quantizer.init_args.num_codes=64")
    config = "configs/vae/vqvae_digits.yaml"
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(resume.command(config, straight, *extra), cwd=ROOT, env=resume.env(), check=True, timeout=300)
    marker = tmp_path / "hanging"
    hang = ["--trainer.callbacks+=tests.probes.Slow", "--trainer.callbacks.hang_at_step=51",
            f"--trainer.callbacks.marker={marker}"]  # fmt: skip
    run = subprocess.Popen(resume.command(config, killed, *extra, *hang), cwd=ROOT, env=resume.env(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 240
    while not marker.exists():
        assert run.poll() is None and time.monotonic() < deadline, "the run ended before it reached step 51"
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert resume.final_state(killed)["global_step"] == 50
    done = subprocess.run(resume.command(config, killed, *extra, "--ckpt_path=last"), cwd=ROOT, env=resume.env(),
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = resume.final_state(straight), resume.final_state(killed)
    assert a["global_step"] == b["global_step"] > 50 and a["state_dict"]["quantizer.restarts"].item() > 0
    resume.assert_same(a["state_dict"], b["state_dict"], "state_dict")
    resume.assert_same(a["optimizer_states"], b["optimizer_states"], "optimizer_states")
