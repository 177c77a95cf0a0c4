"""The speed options that follow the machine: bf16-mixed + channels-last where the CPU has native bf16 (or on a GPU),
32-true elsewhere; chosen by the CLI when the config gives no precision, by ``channels_last=None`` in the modules."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

import lit_gen
from lit_gen import speed_choice
from lit_gen.cli import LitGenCLI
from lit_gen.nets import DCGANDiscriminator, DCGANGenerator
from lit_gen.speed_choice import auto_channels_last, choose_precision, cpu_model, native_bf16
from tests.helpers import digits

ROOT = Path(__file__).resolve().parents[1]
AMX = frozenset({"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
AVX512_BF16 = frozenset({"avx512f", "avx512_bf16"})
NONE = frozenset({"avx2", "avx512f"})
CPUINFO = "processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: {}\n\nprocessor\t: 1\n"


@pytest.fixture
def flags(monkeypatch: pytest.MonkeyPatch):
    """Pretend the CPU has the given feature flags (every detection reads them through ``cpu_flags``)."""

    def pretend(found: frozenset[str]) -> None:
        monkeypatch.setattr(speed_choice, "cpu_flags", lambda: found)

    return pretend


# -- the choice -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("found", "native"), [(AMX, True), (AVX512_BF16, True), (NONE, False), (frozenset(), False)])
def test_native_bf16_from_flags(found: frozenset[str], native: bool) -> None:
    assert native_bf16(found) is native
    assert native_bf16(sorted(found)) is native  # any iterable


@pytest.mark.parametrize(("found", "native"), [(AMX, True), (NONE, False)])
def test_native_bf16_reads_proc_cpuinfo(found, native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO.format(" ".join(sorted(found))))
    monkeypatch.setattr(speed_choice, "CPUINFO", cpuinfo)
    assert native_bf16() is native and cpu_model() == "Test CPU 9000"


@pytest.mark.parametrize(
    ("found", "precision", "channels_last", "named"),
    [
        (AMX, "bf16-mixed", True, "has amx_bf16 and avx512_bf16"),
        (AVX512_BF16, "bf16-mixed", True, "has avx512_bf16"),
        (NONE, "32-true", False, "has neither amx_bf16 nor avx512_bf16"),
    ],
)
def test_cpu_choice_follows_the_flags(found, precision, channels_last, named, monkeypatch) -> None:
    monkeypatch.setattr(speed_choice, "cpu_model", lambda: "Test CPU 9000")
    for choice in (choose_precision("cpu", cpu_flags=found), choose_precision("cpu", found)):
        assert choice.precision == precision and choice.channels_last is channels_last
        assert choice.reason.startswith(f"Test CPU 9000 {named}") and precision in choice.reason


@pytest.mark.parametrize(("bf16", "precision"), [(True, "bf16-mixed"), (False, "16-mixed")])
@pytest.mark.parametrize("accelerator", ["auto", "gpu", "cuda", torch.device("cuda", 0)])
def test_gpu_choice_follows_bf16_support(bf16: bool, precision: str, accelerator, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *args: "Test GPU")
    choice = choose_precision(accelerator, cpu_flags=NONE)
    assert choice == (precision, True, choice.reason) and choice.reason.startswith("Test GPU")


def test_auto_precision_without_a_gpu(flags, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    flags(AVX512_BF16)
    assert lit_gen.auto_precision() == lit_gen.auto_precision("cpu") == "bf16-mixed"
    flags(NONE)
    assert lit_gen.auto_precision() == "32-true"


@pytest.mark.parametrize(
    ("precision", "device", "found", "on"),
    [
        ("bf16-mixed", "cpu", AMX, True),
        ("bf16-mixed", "cpu", NONE, False),  # emulated bf16
        ("32-true", "cpu", AMX, False),
        ("16-mixed", "cpu", AMX, False),
        ("bf16-mixed", "cuda", NONE, True),
        ("16-mixed", torch.device("cuda"), NONE, True),
        ("32-true", "cuda", NONE, False),
        ("bf16-mixed", "mps", AMX, False),
    ],
)
def test_automatic_channels_last(precision, device, found, on) -> None:
    assert auto_channels_last(precision, device, cpu_flags=found) is on


# -- the modules' channels_last=None ----------------------------------------------------------------------------------
def conv_gan(**kwargs) -> lit_gen.GANModule:
    L.seed_everything(0, verbose=False)
    return lit_gen.GANModule(
        generator=DCGANGenerator(latent_dim=8, image_shape=(1, 8, 8), width=4),
        discriminator=DCGANDiscriminator(image_shape=(1, 8, 8), width=4),
        **kwargs,
    )


def weights_channels_last(net: torch.nn.Module) -> bool:
    convs = [p for p in net.parameters() if p.dim() == 4 and p.shape[1] > 1 and p.shape[2] > 1]
    assert convs
    return all(p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous() for p in convs)


@pytest.mark.parametrize(
    ("channels_last", "precision", "found", "expected"),
    [
        (None, "bf16-mixed", AVX512_BF16, True),
        (None, "bf16-mixed", NONE, False),
        (None, "32-true", AMX, False),
        (True, "32-true", NONE, True),
        (False, "bf16-mixed", AMX, False),
    ],
)
def test_module_channels_last_follows_the_trainer(channels_last, precision, found, expected, flags, tmp_path) -> None:
    flags(found)
    module = conv_gan(channels_last=channels_last)
    trainer = L.Trainer(accelerator="cpu", precision=precision, max_steps=4, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(module, datamodule=digits(batch_size=8))
    assert module.hparams.channels_last is channels_last  # the automatic value stays automatic in checkpoints
    assert weights_channels_last(module.generator) is expected
    assert weights_channels_last(module.discriminator) is expected
    assert module.generator_steps == 2


# -- the CLI ----------------------------------------------------------------------------------------------------------
def fit(tmp_path: Path, config: str | list[str], *args: str) -> LitGenCLI:
    return LitGenCLI(
        args=[
            "fit",
            *([f"--config={ROOT / config}"] if isinstance(config, str) else config),
            f"--trainer.logger.init_args.save_dir={tmp_path}",
            "--trainer.max_steps=4",
            "--trainer.log_every_n_steps=1",
            "--trainer.limit_val_batches=0",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
            *args,
        ]
    )


# the demo's config (DCGAN, hinge, spectral norm, EMA) on the 8×8 digits: MNIST takes 8 s to load
DCGAN_DIGITS = [
    "--config=configs/gan/mnist.yaml",
    "--data=lit_gen.data.DigitsDataModule",
    "--data.value_range=[-1, 1]",
    "--data.batch_size=8",
    *(
        f"--model.{net}.init_args.{k}"
        for net in ("generator", "discriminator")
        for k in ("image_shape=[1, 8, 8]", "width=8")
    ),
]


def lit_gen_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("lit-gen: precision") or "channels-last" in line]


def assert_finite_losses(cli: LitGenCLI, *keys: str) -> None:
    for key in keys:
        value = cli.trainer.callback_metrics[key]
        assert math.isfinite(float(value)), (key, value)


@pytest.mark.parametrize(
    ("found", "precision", "layout", "weights_cl"),
    [(AVX512_BF16, "bf16-mixed", "channels-last", True), (NONE, "32-true", "no channels-last", False)],
)
def test_cli_chooses_for_the_cpu(found, precision, layout, weights_cl, flags, tmp_path, capsys, monkeypatch) -> None:
    """The demo's config trains in bf16-mixed channels-last where the CPU has native bf16, else in 32-true."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(speed_choice, "cpu_model", lambda: "Test CPU 9000")
    flags(found)
    cli = fit(tmp_path, DCGAN_DIGITS)
    assert cli.trainer.precision == precision
    assert weights_channels_last(cli.model.generator) is weights_cl
    assert weights_channels_last(cli.model.discriminator) is weights_cl
    assert_finite_losses(cli, "train/d_loss", "train/g_loss")
    assert cli.model.generator_steps == 2  # max_steps counts the D and G optimizer steps
    force = "32-true" if precision == "bf16-mixed" else "bf16-mixed"
    why = "avx512_bf16" if weights_cl else "neither amx_bf16 nor avx512_bf16 (bf16 would be emulated, slower)"
    assert lit_gen_lines(capsys.readouterr().out) == [
        f"lit-gen: precision {precision}, {layout} (Test CPU 9000 has {why}; force with --trainer.precision={force} "
        f"/ --model.channels_last={str(not weights_cl).lower()})"
    ]
    saved = yaml.safe_load((Path(cli.trainer.log_dir) / "config.yaml").read_text())
    assert saved["trainer"]["precision"] is None and saved["model"]["init_args"]["channels_last"] is None


@pytest.mark.parametrize("config", ["configs/vae/digits.yaml", "configs/gan/digits.yaml"])
@pytest.mark.parametrize(("found", "precision"), [(AMX, "bf16-mixed"), (NONE, "32-true")])
def test_cli_both_paths_train(config, found, precision, flags, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    flags(found)
    cli = fit(tmp_path, config)
    assert cli.trainer.precision == precision
    assert_finite_losses(cli, *(("train/loss",) if "vae" in config else ("train/d_loss", "train/g_loss")))


@pytest.mark.parametrize(
    ("args", "precision", "weights_cl", "line"),
    [
        (["--trainer.precision=32-true"], "32-true", False,
         "lit-gen: no channels-last for the given precision 32-true on cpu"),
        (["--trainer.precision=32-true", "--model.channels_last=true"], "32-true", True, None),
        (["--trainer.precision=bf16-mixed", "--model.init_args.channels_last=false"], "bf16-mixed", False, None),
        (["--model.channels_last=false"], "bf16-mixed", False, "lit-gen: precision bf16-mixed (Test CPU 9000 has "),
    ],
)  # fmt: skip
def test_what_the_user_gives_wins(args, precision, weights_cl, line, flags, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(speed_choice, "cpu_model", lambda: "Test CPU 9000")
    flags(AMX)
    cli = fit(tmp_path, DCGAN_DIGITS, "--trainer.max_steps=2", *args)
    assert cli.trainer.precision == precision
    assert weights_channels_last(cli.model.generator) is weights_cl
    printed = lit_gen_lines(capsys.readouterr().out)
    if line is None:
        assert printed == []  # the user forced both: nothing to say
    else:
        assert len(printed) == 1 and printed[0].startswith(line), printed


def test_precision_in_a_config_file_wins(flags, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    flags(AMX)
    extra = tmp_path / "fp32.yaml"
    extra.write_text("trainer:\n  precision: 32-true\n")
    cli = fit(tmp_path, "configs/vae/digits.yaml", f"--config={extra}")
    assert cli.trainer.precision == "32-true"


def test_bf16_checkpoint_resumes(flags, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    flags(AVX512_BF16)
    common = ["--trainer.max_steps=-1", "--trainer.limit_train_batches=3"]
    first = fit(tmp_path, "configs/gan/digits.yaml", *common, "--trainer.max_epochs=1")
    assert first.trainer.precision == "bf16-mixed" and first.model.generator_steps == 3
    second = fit(tmp_path, "configs/gan/digits.yaml", *common, "--trainer.max_epochs=2", "--ckpt_path=last")
    assert second.trainer.precision == "bf16-mixed"
    assert second.trainer.current_epoch == 2 and second.model.generator_steps == 6
    assert_finite_losses(second, "train/d_loss", "train/g_loss")


def test_evaluation_subcommands_keep_32_true(flags, tmp_path, monkeypatch, capsys) -> None:
    """``validate``/``test``/``predict`` report metrics that do not depend on the machine."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    flags(AMX)
    cli = LitGenCLI(args=["validate", f"--config={ROOT / 'configs/vae/digits.yaml'}", "--trainer.logger=false",
                          "--trainer.limit_val_batches=1", "--trainer.enable_progress_bar=false",
                          f"--trainer.default_root_dir={tmp_path}"])  # fmt: skip
    assert cli.trainer.precision == "32-true"
    assert lit_gen_lines(capsys.readouterr().out) == []


@pytest.mark.slow
def test_the_demo_follows_this_machine(tmp_path, capsys) -> None:
    """``make demo`` (configs/gan/mnist.yaml, no mocks): bf16-mixed + channels-last where this CPU has native bf16."""
    choice = choose_precision()
    cli = fit(tmp_path, "configs/gan/mnist.yaml", "--data.batch_size=8")
    assert cli.trainer.precision == choice.precision
    assert weights_channels_last(cli.model.generator) is choice.channels_last
    assert lit_gen_lines(capsys.readouterr().out)[0].startswith(f"lit-gen: precision {choice.precision}")


@pytest.mark.parametrize(("found", "weights_cl"), [(AMX, True), (NONE, False)])
def test_vqvae_follows_the_choice(found, weights_cl, flags, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    flags(found)
    cli = fit(tmp_path, "configs/vae/vqvae_digits.yaml")
    model = cli.model
    assert cli.trainer.precision == ("bf16-mixed" if weights_cl else "32-true") and model.hparams.channels_last is None
    assert weights_channels_last(model.encoder) is weights_cl and weights_channels_last(model.decoder) is weights_cl
    assert_finite_losses(cli, "train/loss")
    x = torch.rand(4, 1, 8, 8)
    model.eval()
    assert torch.equal(model.decompress(model.compress(x, method="fixed")), model.decode_codes(model.codes(x)))


def test_no_model_summary_warning_for_the_automatic_precision(flags, tmp_path, monkeypatch) -> None:
    """Lightning warns that the summary cannot size bf16-mixed weights; the stored weights are fp32, so it is right."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    flags(AMX)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli = fit(tmp_path, "configs/vae/digits.yaml", "--trainer.enable_model_summary=true")
    assert cli.trainer.precision == "bf16-mixed"
    assert not [w for w in caught if "model summary" in str(w.message)]
