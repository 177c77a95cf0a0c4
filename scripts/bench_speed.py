"""Benchmark: lit_gen's ``Trainer.fit`` against a hand-written PyTorch loop (``scripts/plain_loops.py``) with the same
nets, optimizers, batch size, precision and data, for the default GAN (``configs/gan/mnist.yaml``) and VAE
(``configs/vae/mnist.yaml``).

    python scripts/bench_speed.py                  # both models on CPU: ~10-15 min on 2 cores
    python scripts/bench_speed.py --quick          # a short run of every section (~2 min on a quiet 2-core machine)
    python scripts/bench_speed.py --quick --threads 1  # on a busy machine: 2 threads on 2 shared cores are 7-16× slower

On a GPU, one command per setting (``--image-size 64`` builds the DCGAN for 64×64 and resizes the digits; the
DDP and threads sections are CPU-only and skipped):

    python scripts/bench_speed.py --device cuda --models gan --image-size 64 --precision bf16-mixed [--compile]
    python scripts/bench_speed.py --device cuda --models vae --precision 16-mixed [--compile] [--channels-last]

Sections (``--sections``): ``check`` (the same losses after the same steps from the same weights, noise and batches),
``train`` (images/s, alternating A/B rounds in one process, after a warm-up round of each), ``eval``
(``trainer.validate`` / ``trainer.test`` against plain loops computing the same numbers), ``size`` and ``batch`` (time
per epoch against dataset size, images/s against batch size), ``threads`` (the plain loop at 1 and N torch threads),
``ddp`` (``python -m lit_gen fit`` with 1 and 2 CPU processes, gloo), ``profile`` (what each piece of Lightning
and lit_gen costs per training step in the shipped run, timed in place) and ``precision`` (the shipped configs as they
are, in each ``--precision-variants`` at each ``--precision-batch-sizes``: images/s and achieved GFLOP/s, the FLOPs of
one training iteration counted with ``torch.utils.flop_counter``, as fractions of the fp32 and bf16 matmul limits
measured in the same process; the CPU's model and matrix flags head every table):

    python scripts/bench_speed.py --sections precision --precision-images 1280 --rounds 3 --threads 2 \
        --out results/speed-precision/<date>-<cpu>    # fp32 against bf16-mixed + channels-last, batch 32 and 128
    python scripts/bench_speed.py --sections precision --models gan --precision-batch-sizes 32 \
        --precision-variants bf16-mixed+cl bf16-mixed+cl+compile    # does torch.compile pay?

A is run two ways: as shipped (``lit-gen fit``'s CSV logger, checkpoints, sample grid, progress bar, config file) and
as a bare ``Trainer`` (no logger, callbacks or progress bar). A's timed epochs are epochs 1..R of one ``fit``; B's
rounds run between them (in a callback at each epoch start), so A and B alternate. "training batches" is the time
from the start of an epoch to its last training batch; "whole epoch" adds validation and what happens at the epoch's
end (checkpoint, grid). Peak memory is the peak RSS during a round on CPU (``/proc/self/status`` VmHWM, reset before
each round; ``ru_maxrss`` where that is not possible), ``torch.cuda.max_memory_allocated`` on a GPU. Writes
``results/speed/results.json`` and ``table.md``.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import logging
import math
import os
import platform
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout, suppress
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torch.utils.data import Subset, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import build, write_results
from plain_loops import Amp, Batches, PlainGAN, PlainVAE

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"gan": "configs/gan/mnist.yaml", "vae": "configs/vae/mnist.yaml"}
# The plain GAN loop implements the non-saturating and minimax losses without an EMA generator; the shipped GAN
# config's hinge loss and EMA are swapped for them (its spectral-norm discriminator is the same net in both).
PLAIN_COMPARABLE = {"gan": ["--model.loss=non_saturating", "--model.ema_decay=null"], "vae": []}
SECTIONS = ("check", "train", "eval", "size", "batch", "threads", "ddp", "profile", "precision")


# -- building A and its twin B ---------------------------------------------------------------------------------------
def module_supports(kind: str, option: str) -> bool:
    from lit_gen import GANModule, VAEModule

    cls = GANModule if kind == "gan" else VAEModule
    return option in inspect.signature(cls.__init__).parameters


def run_overrides(args: argparse.Namespace, kind: str) -> list[str]:
    """Config overrides for the device, precision, image size, compile and channels_last settings."""
    accelerator = "gpu" if args.device == "cuda" else "cpu"
    out = [f"--trainer.accelerator={accelerator}", "--trainer.devices=1", f"--trainer.precision={args.precision}"]
    if args.image_size != 28:
        side = args.image_size
        nets = ("generator", "discriminator") if kind == "gan" else ("encoder", "decoder")
        out += [f"--model.{net}.init_args.image_shape=[1,{side},{side}]" for net in nets]
        out += [f"--data.image_size={side}", "--model.evaluation=null"]  # the shipped classifiers are 28×28
    for flag, option in ((args.compile, "compile"), (args.channels_last, "channels_last")):
        if flag and module_supports(kind, option):
            out.append(f"--model.{option}=true")
    return out


def nets_of(model: L.LightningModule) -> list[nn.Module]:
    if hasattr(model, "generator"):
        return [model.generator, model.discriminator]
    return [model.encoder, model.decoder]


def speed_up(nets: list[nn.Module], args: argparse.Namespace, kind: str | None) -> None:
    """``torch.compile`` / ``channels_last`` on nets in place (for A only where the module has no such option)."""
    for net in nets:
        if args.channels_last and (kind is None or not module_supports(kind, "channels_last")):
            net.to(memory_format=torch.channels_last)
        if args.compile and (kind is None or not module_supports(kind, "compile")):
            net.compile()


def build_run(kind: str, args: argparse.Namespace, shipped: bool, *extra: str) -> Any:
    """A LitGenCLI of the shipped config, with its logger, checkpoints and callbacks (``shipped``, writing into a
    temporary directory) or bare (``bench_common.build``)."""
    overrides = [*PLAIN_COMPARABLE[kind], *run_overrides(args, kind), *args.override, *extra]
    if not shipped:
        return build(args.configs[kind], *overrides)
    from lit_gen.cli import LitGenCLI

    save_dir = tempfile.mkdtemp(prefix="bench_speed_", dir=args.tmp)
    cli = LitGenCLI(args=["--config", args.configs[kind], f"--trainer.logger.init_args.save_dir={save_dir}",
                          *overrides], run=False)  # fmt: skip
    cli.before_fit()  # what `lit-gen fit` does before Trainer.fit: atomic checkpoint writes
    return cli


def split_tensors(dm: L.LightningDataModule, split: str) -> tuple[Tensor, Tensor]:
    """The uint8 images ``(N, C, H, W)`` and labels of one split of a lit_gen DataModule, in the split's order."""
    dm.setup("fit")
    ds = dm.splits[split]
    if isinstance(ds, Subset) and isinstance(ds.dataset, TensorDataset):
        index = torch.as_tensor(ds.indices)
        return ds.dataset.tensors[0][index], ds.dataset.tensors[1][index]
    items = [ds[i] for i in range(len(ds))]
    return torch.stack([x for x, _ in items]), torch.as_tensor([int(y) for _, y in items])


def amp_of(trainer: L.Trainer) -> Amp:
    """The plain loop's precision, read from the Trainer's precision plugin (what Lightning actually runs)."""
    from lightning.pytorch.plugins.precision import MixedPrecision, Precision

    plugin = trainer.precision_plugin
    if isinstance(plugin, MixedPrecision):
        dtype = torch.bfloat16 if plugin.precision == "bf16-mixed" else torch.float16
        scaler = torch.amp.GradScaler(plugin.device) if plugin.scaler is not None else None
        return Amp(plugin.device, dtype, scaler)
    if type(plugin) is not Precision:
        raise ValueError(f"the plain loops run 32-true, 16-mixed and bf16-mixed, not {type(plugin).__name__}")
    return Amp(trainer.strategy.root_device.type)


def check_defaults(model: L.LightningModule) -> None:
    """The plain loops implement the shipped configs' options only: say which option is not, with the fix."""
    h = model.hparams
    if hasattr(model, "generator"):
        options = {"gradient_penalty": 0.0, "r1_gamma": 0.0, "weight_clip": None, "pack": 1, "diffaugment": None,
                   "instance_noise": 0.0, "label_smoothing": 0.0, "ema_decay": None, "accumulate_grad_batches": 1,
                   "generator_clip_norm": None, "discriminator_clip_norm": None, "generator_scheduler": None,
                   "discriminator_scheduler": None}  # fmt: skip
        bad = [k for k, v in options.items() if h.get(k, v) != v] + (["num_classes"] if model.num_classes else [])
        if h.get("loss", "non_saturating") not in ("non_saturating", "minimax"):
            bad.append("loss")
    else:
        options = {"beta_schedule": "constant", "capacity": None, "free_bits": 0.0, "iwae_samples": 1,
                   "likelihood": "bernoulli", "lr_scheduler": None}  # fmt: skip
        bad = [k for k, v in options.items() if h.get(k, v) != v] + (["num_classes"] if model.num_classes else [])
    if bad:
        raise ValueError(f"the plain loop of bench_speed does not implement {bad}: benchmark the shipped defaults")


def module_optimizers(model: L.LightningModule) -> list[torch.optim.Optimizer]:
    """The optimizers the module's ``configure_optimizers`` makes (GAN: generator's, then discriminator's)."""
    configured = model.configure_optimizers()
    items = configured if isinstance(configured, (list, tuple)) else [configured]
    return [item["optimizer"] if isinstance(item, dict) else item for item in items]


def same_optimizer(like: torch.optim.Optimizer, *nets: nn.Module) -> torch.optim.Optimizer:
    """An optimizer of ``like``'s class and hyperparameters (its ``defaults``) over the parameters of ``nets``."""
    if len(like.param_groups) != 1:
        raise ValueError("bench_speed's plain loops copy optimizers with one parameter group only")
    params = [p for net in nets for p in net.parameters()]
    if len(params) != len(like.param_groups[0]["params"]):
        raise ValueError("the module optimizes parameters outside its nets (e.g. a learned σ): not a shipped default")
    return type(like)(params, **like.defaults)


class Twin:
    """B: the plain loop with copies of A's nets (same weights), A's optimizer factories, precision and data."""

    def __init__(self, cli: Any, args: argparse.Namespace, dm: L.LightningDataModule) -> None:
        model, device = cli.model, torch.device(args.device)
        check_defaults(model)
        amp = amp_of(cli.trainer)
        nets = [copy.deepcopy(net).to(device) for net in nets_of(model)]
        for net in nets:  # a copy of a compiled net would call the original's compiled function: compile anew
            for sub in net.modules():
                sub._compiled_call_impl = None
        speed_up(nets, args, None)
        optimizers = module_optimizers(model)
        if hasattr(model, "generator"):
            g_opt, d_opt = (same_optimizer(opt, net) for opt, net in zip(optimizers, nets, strict=True))
            self.plain: PlainGAN | PlainVAE = PlainGAN(nets[0], nets[1], g_opt, d_opt, model.latent_dim,
                                                       model.hparams.get("loss"), model.n_critic, amp)  # fmt: skip
        else:
            self.plain = PlainVAE(nets[0], nets[1], same_optimizer(optimizers[0], *nets), model.beta, amp)
        self.device, self.dm, self.channels_last = device, dm, args.channels_last
        self.importance_samples = getattr(model, "importance_samples", 0)
        self.epoch = 0
        self.train = self.batches("train", shuffle=True)

    def batches(self, split: str, shuffle: bool = False, batch_size: int | None = None) -> Batches:
        images, labels = split_tensors(self.dm, split)
        bs = batch_size or self.dm.batch_size
        drop = shuffle and self.dm.drop_last and len(images) > bs
        return Batches(images, bs, self.device, self.dm.value_range, seed=self.dm.seed, shuffle=shuffle,
                       drop_last=drop, labels=labels, channels_last=self.channels_last)  # fmt: skip

    def train_round(self, limit: int | None = None) -> tuple[float, int]:
        """One epoch (``limit`` batches at most) of the plain loop: ``(seconds, images)``."""
        sync(self.device)
        start = time.perf_counter()
        with torch.enable_grad():
            images, losses = self.plain.train(self.train.epoch(self.epoch, limit))
        losses.cpu()  # one host sync, at the end
        sync(self.device)
        self.epoch += 1
        return time.perf_counter() - start, images

    def evaluate(
        self, split: str, on_batch: Callable | None = None, test: bool = False, limit: int | None = None
    ) -> dict[str, float]:
        data = self.batches(split).labelled(0, limit)
        if isinstance(self.plain, PlainVAE):
            return self.plain.evaluate(data, self.importance_samples if test else 0, on_batch)
        return self.plain.evaluate(data, on_batch)


@contextmanager
def quiet(log: Path | None = None) -> Iterator[None]:
    """stdout and stderr (Lightning's progress bar, summaries and warnings) into ``log``, or nowhere."""
    with open(log or os.devnull, "a") as sink, redirect_stdout(sink), redirect_stderr(sink):
        yield


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- memory and GPU utilisation --------------------------------------------------------------------------------------
def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    with suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM, the peak RSS


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        return int(re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) / 1024  # type: ignore[union-attr]
    except (OSError, AttributeError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class GpuUtilisation:
    """Mean GPU utilisation (%) while a block runs, sampled at 10 Hz (``torch.cuda.utilization``, needs pynvml)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.samples, self._stop = device, [], threading.Event()

    def __enter__(self) -> GpuUtilisation:
        if self.device.type == "cuda":
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(torch.cuda.utilization(self.device))
            except Exception:  # no pynvml / no NVML: no figure
                return
            time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.samples) if self.samples else None


# -- A/B rounds inside one fit ---------------------------------------------------------------------------------------
class AlternatingTimer(L.Callback):
    """Times each training epoch of A and runs one round of B before each epoch after the first and after the last:
    A0 (warm-up), B0 (warm-up), A1, B1, ..., AR, BR."""

    def __init__(self, twin: Twin, limit: int | None = None, with_val: bool = True) -> None:
        self.twin, self.limit, self.with_val = twin, limit, with_val
        self.a: list[dict[str, float]] = []
        self.b: list[dict[str, float]] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch > 0:
            self._end_a()
            self._round_b()
        self._start_a()

    def _start_a(self) -> None:
        self.images, self.train_end, self.val_s = 0, None, 0.0
        self.util = GpuUtilisation(self.twin.device).__enter__()
        reset_peak_memory(self.twin.device)
        sync(self.twin.device)
        self.start = time.perf_counter()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, *args: Any) -> None:
        self.images += (batch[0] if isinstance(batch, (tuple, list)) else batch).shape[0]

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        sync(self.twin.device)
        self.val_start = time.perf_counter()
        if self.train_end is None:
            self.train_end = self.val_start

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            sync(self.twin.device)
            self.val_s += time.perf_counter() - self.val_start

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.train_end is None:
            sync(self.twin.device)
            self.train_end = time.perf_counter()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._end_a()
        self._round_b()

    def _end_a(self) -> None:
        sync(self.twin.device)
        end = time.perf_counter()
        self.util.__exit__()
        self.a.append({"train_s": self.train_end - self.start, "epoch_s": end - self.start, "val_s": self.val_s,
                       "images": self.images, "peak_mib": peak_memory_mib(self.twin.device),
                       "gpu_util": self.util.mean})  # fmt: skip

    def _round_b(self) -> None:
        reset_peak_memory(self.twin.device)
        with GpuUtilisation(self.twin.device) as util:
            seconds, images = self.twin.train_round(self.limit)
        peak = peak_memory_mib(self.twin.device)
        val_s = 0.0
        if self.with_val:  # what A's epoch does after its training batches
            start = time.perf_counter()
            self.twin.evaluate("val")
            sync(self.twin.device)
            val_s = time.perf_counter() - start
        self.b.append({"train_s": seconds, "epoch_s": seconds + val_s, "val_s": val_s, "images": images,
                       "peak_mib": peak, "gpu_util": util.mean})  # fmt: skip


def spread(ratios: list[float]) -> dict[str, float]:
    return {"ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios)}


def summarize(a: list[dict[str, float]], b: list[dict[str, float]]) -> dict[str, Any]:
    """Per timed round (the first of each is the warm-up): images/s and the throughput ratio A/B."""
    a, b = a[1:], b[1:]
    out: dict[str, Any] = {"rounds": len(a)}
    for key in ("train_s", "epoch_s"):
        a_ips = [r["images"] / r[key] for r in a]
        b_ips = [r["images"] / r[key] for r in b]
        ratios = [x / y for x, y in zip(a_ips, b_ips, strict=True)]
        medians = {"a_median": statistics.median(a_ips), "b_median": statistics.median(b_ips)}
        out[key] = {"a_images_per_s": a_ips, "b_images_per_s": b_ips, "ratio": ratios} | medians | spread(ratios)
    for name, rows in (("a", a), ("b", b)):
        out[f"{name}_peak_mib"] = statistics.median(r["peak_mib"] for r in rows)
        utils = [r["gpu_util"] for r in rows if r["gpu_util"] is not None]
        out[f"{name}_gpu_util"] = statistics.fmean(utils) if utils else None
    out["a_rounds"], out["b_rounds"] = a, b
    return out


def fit_alternating(
    cli: Any, twin: Twin, dm: L.LightningDataModule, rounds: int, limit: int | None, log: Path | None = None,
    callback: AlternatingTimer | None = None,
) -> AlternatingTimer:  # fmt: skip
    """``fit`` A for ``rounds + 1`` epochs with B's rounds in between."""
    timer = callback or AlternatingTimer(twin, limit)
    cli.trainer.callbacks.insert(0, timer)  # its hooks first: the end-of-training checkpoint is not in a round
    cli.trainer.fit_loop.max_epochs = rounds + 1
    if limit is not None:
        cli.trainer.limit_train_batches = limit
    try:
        with quiet(log):
            cli.trainer.fit(cli.model, datamodule=dm)
    finally:
        cli.trainer.callbacks.remove(timer)
    return timer


# -- sections --------------------------------------------------------------------------------------------------------
class Context:
    """Per model: the shared DataModule (loaded once) and the arguments."""

    def __init__(self, kind: str, args: argparse.Namespace) -> None:
        self.kind, self.args = kind, args
        self.dm = build_run(kind, args, shipped=False).datamodule
        self.dm.setup("fit")
        self.batch_size = self.dm.batch_size

    def bare(self, *extra: str) -> tuple[Any, Twin]:
        """A bare-Trainer run and its twin, with the same initial weights (seed_everything before the nets)."""
        cli = build_run(self.kind, self.args, False, *extra)
        return self._pair(cli)

    def shipped(self, *extra: str) -> tuple[Any, Twin]:
        return self._pair(build_run(self.kind, self.args, True, *extra))

    def _pair(self, cli: Any) -> tuple[Any, Twin]:
        self.dm.batch_size = cli.datamodule.batch_size
        twin = Twin(cli, self.args, self.dm)
        speed_up(nets_of(cli.model), self.args, self.kind)
        return cli, twin


def section_check(ctx: Context) -> dict[str, Any]:
    """A and B from the same weights, RNG state and batches for ``steps`` steps: the losses of every step."""
    steps = ctx.args.check_steps
    # log_every_n_steps=1: the modules log training values on the loggers' steps only
    cli, twin = ctx.bare("--trainer.max_epochs=1", f"--trainer.limit_train_batches={steps}",
                         "--trainer.limit_val_batches=0", "--trainer.num_sanity_val_steps=0",
                         "--trainer.log_every_n_steps=1")  # fmt: skip
    model, keys = cli.model, (["d_loss", "g_loss"] if ctx.kind == "gan" else ["loss", "recon", "kl"])
    seen: dict[str, list[float]] = defaultdict(list)
    log = model.log

    def capture(name: str, value: Any, *a: Any, **k: Any) -> None:
        if name.startswith("train/"):
            seen[name].append(float(value.detach() if isinstance(value, Tensor) else value))
        log(name, value, *a, **k)

    class FirstState(L.Callback):
        def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
            if not hasattr(self, "cpu"):
                self.cpu = torch.get_rng_state()
                self.cuda = torch.cuda.get_rng_state(twin.device) if twin.device.type == "cuda" else None

    first = FirstState()
    cli.trainer.callbacks.append(first)
    model.log = capture  # log_dict calls log for each key
    try:
        with quiet():
            cli.trainer.fit(model, datamodule=ctx.dm)
    finally:
        del model.log
    logged = [list(step) for step in zip(*(seen[f"train/{key}"] for key in keys), strict=True)]
    torch.set_rng_state(first.cpu)  # B draws its noise from where A's first step drew it
    if first.cuda is not None:
        torch.cuda.set_rng_state(first.cuda, twin.device)
    with torch.enable_grad():
        _, losses = twin.plain.train(twin.train.epoch(0, steps))
    plain = losses.double().cpu().tolist()
    diff = max(abs(x - y) for a, b in zip(logged, plain, strict=True) for x, y in zip(a, b, strict=True))
    rel = max(
        abs(x - y) / max(abs(y), 1e-12) for a, b in zip(logged, plain, strict=True) for x, y in zip(a, b, strict=True)
    )
    weights = max_weight_diff(nets_of(model), plain_nets(twin))
    return {"steps": steps, "keys": keys, "lit_gen": logged, "plain": plain, "max_abs_diff": diff,
            "max_rel_diff": rel, "weights_max_abs_diff": weights}  # fmt: skip


def plain_nets(twin: Twin) -> list[nn.Module]:
    plain = twin.plain
    return [plain.generator, plain.discriminator] if isinstance(plain, PlainGAN) else [plain.encoder, plain.decoder]


def max_weight_diff(a: list[nn.Module], b: list[nn.Module]) -> float:
    """Largest absolute difference between the floating-point state (weights, batch-norm statistics) of two nets."""
    return max((p.float() - q.float().to(p.device)).abs().max().item()
               for x, y in zip(a, b, strict=True)
               for p, q in zip(x.state_dict().values(), y.state_dict().values(), strict=True)
               if p.is_floating_point())  # fmt: skip


def section_train(ctx: Context) -> dict[str, Any]:
    out = {}
    for variant in ("shipped", "bare"):
        cli, twin = ctx.shipped() if variant == "shipped" else ctx.bare()
        log = Path(ctx.args.tmp) / f"{ctx.kind}_{variant}_stderr.log"
        timer = fit_alternating(cli, twin, ctx.dm, ctx.args.rounds, ctx.args.limit, log)
        out[variant] = summarize(timer.a, timer.b)
        s = out[variant]["train_s"]
        print(f"[{ctx.kind} {variant}] training batches, images/s per round: lit_gen {numbers(s['a_images_per_s'])}; "
              f"plain {numbers(s['b_images_per_s'])}; ratio {fmt_ratio(s)}", flush=True)  # fmt: skip
        if variant == "bare":
            ctx.trained = (cli, twin)  # the eval section scores these weights
    return out


def section_eval(ctx: Context) -> dict[str, Any]:
    """``trainer.validate`` / ``trainer.test`` of the bare run against the plain loops on the same weights."""
    from lit_gen.metrics import ImageQuality

    cli, _ = getattr(ctx, "trained", None) or ctx.bare()  # trained by the train section, else as initialised
    twin = Twin(cli, ctx.args, ctx.dm)  # copies of A's weights
    model, trainer, limit = cli.model, cli.trainer, ctx.args.eval_limit
    trainer.limit_val_batches = trainer.limit_test_batches = 1.0 if limit is None else limit
    quality = ImageQuality(feature="classifier", value_range=ctx.dm.value_range) if model.evaluation else None
    results: dict[str, Any] = {}
    for stage in ("validate", "test"):
        a_s, b_s = [], []
        for r in range(ctx.args.eval_rounds + 1):
            with quiet():
                start = time.perf_counter()
                a = getattr(trainer, stage)(model, datamodule=ctx.dm, verbose=False)[0]
                sync(twin.device)
                a_time = time.perf_counter() - start
            start = time.perf_counter()
            if stage == "test" and quality is not None:
                quality.reset()
                b = twin.evaluate("test", quality.update, test=True, limit=limit)
                with warnings.catch_warnings():  # KID's subset size lowered to the 500 test images, as in A
                    warnings.simplefilter("ignore")
                    b |= {k: float(v) for k, v in quality.compute().items()}
            else:
                b = twin.evaluate("val" if stage == "validate" else "test", test=stage == "test", limit=limit)
            sync(twin.device)
            b_time = time.perf_counter() - start
            if r > 0 or not ctx.args.eval_rounds:  # the first round warms up
                a_s.append(a_time)
                b_s.append(b_time)
        prefix = "val/" if stage == "validate" else "test/"
        a_values = {k.removeprefix(prefix): float(v) for k, v in a.items() if k.startswith(prefix)}
        shared = [k for k in b if k in a_values and not k.startswith("kid")]  # KID draws random subsets
        rel = max(abs(a_values[k] - b[k]) / max(abs(b[k]), 1e-12) for k in shared)
        ratios = [y / x for x, y in zip(a_s, b_s, strict=True)]  # throughput ratio A/B = time B / time A
        results[stage] = {"a_s": a_s, "b_s": b_s, "lit_gen": a_values, "plain": b, "compared": shared,
                          "max_rel_diff": rel} | spread(ratios)  # fmt: skip
        print(f"[{ctx.kind} {stage}] lit_gen {statistics.median(a_s):.2f} s, plain {statistics.median(b_s):.2f} s, "
              f"max rel diff {rel:.1e} over {len(shared)} numbers", flush=True)  # fmt: skip
    if quality is not None:
        results["test"]["fd_torchmetrics"] = torchmetrics_fd(twin, ctx.dm, limit)
    return results


def torchmetrics_fd(twin: Twin, dm: L.LightningDataModule, limit: int | None = None) -> float:
    """The Fréchet distance of the plain test loop's samples from torchmetrics' FID with the shipped classifier's
    features fed images in [0, 1] (a cross-check of lit_gen's ImageQuality ``fd``)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    from lit_gen.metrics.features import ClassifierFeatures, classifier_for_shape, load_classifier

    net, _ = load_classifier(classifier_for_shape(tuple(twin.train.images.shape[1:])))
    shape = tuple(net.image_shape)
    fid = FrechetInceptionDistance(feature=ClassifierFeatures(net), input_img_size=shape, normalize=True)
    fid = fid.to(twin.device)
    low, high = dm.value_range

    def update(real: Tensor, fake: Tensor, labels: Tensor | None) -> None:
        fid.update((real.float() - low) / (high - low), real=True)
        fid.update((fake.float() - low) / (high - low), real=False)

    twin.evaluate("test", update, test=True, limit=limit)
    return float(fid.compute())


def section_size(ctx: Context) -> list[dict[str, Any]]:
    """Time per epoch against dataset size: ``limit_train_batches`` = size / batch size (bare Trainer, no val)."""
    rows = []
    for size in ctx.args.sizes:
        batches = max(1, size // ctx.batch_size)
        cli, twin = ctx.bare(f"--trainer.limit_train_batches={batches}", "--trainer.limit_val_batches=0",
                             "--trainer.num_sanity_val_steps=0")  # fmt: skip
        timer = AlternatingTimer(twin, batches, with_val=False)
        fit_alternating(cli, twin, ctx.dm, ctx.args.scaling_rounds, batches, callback=timer)
        a_s, b_s = (statistics.median(r["train_s"] for r in rounds[1:]) for rounds in (timer.a, timer.b))
        rows.append({"images": batches * ctx.batch_size, "a_s_per_epoch": a_s, "b_s_per_epoch": b_s})
        print(f"[{ctx.kind} size {rows[-1]['images']}] lit_gen {rows[-1]['a_s_per_epoch']:.2f} s/epoch, plain "
              f"{rows[-1]['b_s_per_epoch']:.2f} s/epoch", flush=True)  # fmt: skip
    return rows


def section_batch(ctx: Context) -> list[dict[str, Any]]:
    """images/s against batch size (bare Trainer, no val), about ``batch_images`` images per epoch."""
    rows = []
    for bs in ctx.args.batch_sizes:
        batches = max(1, ctx.args.batch_images // bs)
        cli, twin = ctx.bare(f"--data.batch_size={bs}", f"--trainer.limit_train_batches={batches}",
                             "--trainer.limit_val_batches=0", "--trainer.num_sanity_val_steps=0")  # fmt: skip
        timer = AlternatingTimer(twin, batches, with_val=False)
        fit_alternating(cli, twin, ctx.dm, ctx.args.scaling_rounds, batches, callback=timer)
        s = summarize(timer.a, timer.b)["train_s"]
        rows.append({"batch_size": bs, "a_images_per_s": s["a_median"], "b_images_per_s": s["b_median"],
                     "ratio_median": s["ratio_median"]})  # fmt: skip
        print(f"[{ctx.kind} batch {bs}] lit_gen {s['a_median']:.0f} img/s, plain {s['b_median']:.0f} img/s", flush=True)
    ctx.dm.batch_size = ctx.batch_size
    return rows


def section_threads(ctx: Context) -> list[dict[str, Any]]:
    """The plain loop at 1 and at ``--threads`` torch threads (and every count between), alternating."""
    _, twin = ctx.bare()
    counts = sorted({1, ctx.args.threads})
    timings: dict[int, list[float]] = defaultdict(list)
    try:
        for rep in range(ctx.args.scaling_rounds + 1):
            for n in counts:
                torch.set_num_threads(n)
                seconds, images = twin.train_round(ctx.args.thread_batches)
                if rep > 0:
                    timings[n].append(images / seconds)
    finally:
        torch.set_num_threads(ctx.args.threads)
    rows = [{"threads": n, "b_images_per_s": statistics.median(timings[n])} for n in counts]
    print(f"[{ctx.kind} threads] " + ", ".join(f"{r['threads']}: {r['b_images_per_s']:.0f} img/s" for r in rows))
    return rows


class EpochTimer(L.Callback):
    """For ``python -m lit_gen fit ... --trainer.callbacks+=bench_speed.EpochTimer --trainer.callbacks.path=P``:
    rank 0 writes each training epoch's seconds and images (all processes together) to ``P`` as JSON."""

    def __init__(self, path: str) -> None:
        self.path, self.epochs = path, []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.images, self.start = 0, time.perf_counter()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, *args: Any) -> None:
        self.images += (batch[0] if isinstance(batch, (tuple, list)) else batch).shape[0]

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epochs.append({"seconds": time.perf_counter() - self.start, "images": self.images * trainer.world_size})

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            info = {"epochs": self.epochs, "world_size": trainer.world_size, "threads": torch.get_num_threads()}
            Path(self.path).write_text(json.dumps(info))


def section_ddp(ctx: Context) -> list[dict[str, Any]]:
    """``python -m lit_gen fit`` (bare: no logger, checkpoints or validation) on 1 CPU process with N threads and
    on 2 processes (DDP, gloo) with N/2 threads each; images/s of the epochs after the first."""
    rows = []
    for processes in (1, 2):
        threads = max(1, ctx.args.threads // processes)
        path = Path(ctx.args.tmp) / f"{ctx.kind}_ddp{processes}.json"
        command = [sys.executable, "-m", "lit_gen", "fit", "--config", ctx.args.configs[ctx.kind],
                   *PLAIN_COMPARABLE[ctx.kind], *ctx.args.override,
                   "--trainer.logger=false",
                   "--trainer.enable_checkpointing=false", "--trainer.enable_progress_bar=false",
                   "--trainer.enable_model_summary=false", "--trainer.accelerator=cpu",
                   f"--trainer.devices={processes}",
                   f"--trainer.max_epochs={ctx.args.ddp_epochs}", "--trainer.limit_val_batches=0",
                   "--trainer.num_sanity_val_steps=0", f"--trainer.default_root_dir={ctx.args.tmp}",
                   "--trainer.callbacks=[]",
                   "--trainer.callbacks+=bench_speed.EpochTimer", f"--trainer.callbacks.path={path}"]  # fmt: skip
        if processes > 1:
            command.append("--trainer.strategy=ddp")
        if ctx.args.limit is not None:
            command.append(f"--trainer.limit_train_batches={max(1, ctx.args.limit // processes)}")
        env = os.environ | {"OMP_NUM_THREADS": str(threads), "PYTHONPATH": f"{ROOT / 'scripts'}:{ROOT}"}
        start = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"{shlex.join(command)} failed:\n{(done.stdout + done.stderr)[-3000:]}")
        info = json.loads(path.read_text())
        timed = info["epochs"][1:] or info["epochs"]
        ips = statistics.median(e["images"] / e["seconds"] for e in timed)
        rows.append({"processes": processes, "threads_per_process": threads, "images_per_s": ips,
                     "epochs": info["epochs"], "wall_s": wall,
                     "start_s": wall - sum(e["seconds"] for e in info["epochs"])})  # fmt: skip
        print(f"[{ctx.kind} ddp] {processes} process(es) × {threads} thread(s): {ips:.0f} img/s, "
              f"{rows[-1]['start_s']:.1f} s outside the epochs", flush=True)  # fmt: skip
    return rows


# -- profile: what each piece costs per training step, timed in place ------------------------------------------------
class Stopwatch:
    """Wraps functions and methods with timers that count only while ``active``; :meth:`restore` unwraps them."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.active = False
        self.order: list[str] = []  # keys in the order they were patched: parents before the pieces inside them
        self._undo: list[Callable[[], None]] = []

    def patch(self, owner: Any, name: str, key: str) -> None:
        self.order.append(key)
        if isinstance(owner, type):
            raw = owner.__dict__.get(name)
            func = raw if raw is not None else getattr(owner, name)
            setattr(owner, name, self._timed(func, key))
            self._undo.append(lambda: setattr(owner, name, raw) if raw is not None else delattr(owner, name))
        else:
            had, bound = name in vars(owner), getattr(owner, name)
            object.__setattr__(owner, name, self._timed(bound, key))
            self._undo.append(lambda: object.__setattr__(owner, name, bound) if had else delattr(owner, name))

    def _timed(self, func: Callable, key: str) -> Callable:
        watch = self

        def timed(*args: Any, **kwargs: Any) -> Any:
            if not watch.active:
                return func(*args, **kwargs)
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                watch.seconds[key] += time.perf_counter() - start
                watch.calls[key] += 1

        return timed

    def restore(self) -> None:
        while self._undo:
            self._undo.pop()()


CALLBACK_HOOKS = ("on_train_batch_start", "on_train_batch_end", "on_train_epoch_start", "on_train_epoch_end",
                  "on_before_optimizer_step", "on_before_backward", "on_after_backward", "on_validation_end",
                  "on_before_zero_grad")  # fmt: skip


def instrument(watch: Stopwatch, cli: Any, dm: L.LightningDataModule, timer: L.Callback) -> dict[str, str]:
    """Timers on the pieces of a training step (data, transfer, the module's helpers, Lightning's wrappers, callbacks,
    logger); returns what each piece runs inside (manual optimization: the GAN; automatic: the VAE)."""
    import lightning.pytorch.loops.fetchers as fetchers
    from lightning.pytorch.core.optimizer import LightningOptimizer
    from lightning.pytorch.loops.optimization.automatic import Closure
    from torchdata.stateful_dataloader import stateful_dataloader

    import lit_gen.modules.gan as gan_module
    import lit_gen.modules.vae as vae_module

    trainer, model = cli.trainer, cli.model
    manual = not model.automatic_optimization
    step, closure = "training_step", "Lightning closure"
    backward_in = "self.manual_backward" if manual else closure
    pieces: list[tuple[Any, str, str, str]] = [  # (owner, attribute, label, inside)
        (fetchers._PrefetchDataFetcher, "__next__", "Lightning data fetcher", ""),
        (stateful_dataloader._StatefulBaseDataLoaderIter, "__next__", "StatefulDataLoader: sampler, dataset[i] per "
         "image, collate", "Lightning data fetcher"),
        (trainer.strategy, "batch_to_device", "batch transfer (strategy.batch_to_device)", ""),
        (dm, "on_after_batch_transfer", "uint8 -> float (on_after_batch_transfer)", "batch transfer"),
        (model, "on_train_batch_start", "module.on_train_batch_start (ResumableRNG)", ""),
        (LightningOptimizer, "step", "LightningOptimizer.step", step if manual else ""),
        (torch.optim.Adam, "step", "Adam.step", "LightningOptimizer.step"),
        (Closure, "closure", closure + " (training_step, zero_grad, backward)", "Adam.step"),
        (model, "training_step", step, "" if manual else closure),
        (model, "optimizers", "self.optimizers()", step),
        (model, "toggle_optimizer", "self.toggle_optimizer (toggled_optimizer)", step),
        (model, "untoggle_optimizer", "self.untoggle_optimizer", step),
        (gan_module if manual else vae_module, "loss_is_finite", "loss_is_finite (a host sync)", step),
        (model, "manual_backward", "self.manual_backward", step),
        (torch.Tensor, "backward", "autograd backward (Tensor.backward)", backward_in),
        (model, "on_before_optimizer_step", "module.on_before_optimizer_step (clip-norm lookup)",
         "LightningOptimizer.step"),
        (model, "log_dict", "self.log_dict (tensors, every step)", step),
        (model, "on_train_batch_end", "module.on_train_batch_end", ""),
        (trainer._logger_connector, "update_train_step_metrics", "Lightning logger connector, per step", ""),
        (trainer, "save_checkpoint", "checkpoint saves (Trainer.save_checkpoint)", "callbacks"),
        (model, "on_train_epoch_end", "module.on_train_epoch_end", ""),
    ]  # fmt: skip
    if trainer.logger is not None:
        pieces += [(trainer.logger, "log_metrics", "logger.log_metrics", "logger connector"),
                   (trainer.logger, "save", "logger.save", "")]  # fmt: skip
    seen: dict[str, int] = defaultdict(int)
    for cb in trainer.callbacks:
        if cb is timer:
            continue
        name = type(cb).__name__
        seen[name] += 1
        label = f"{name}#{seen[name]}" if sum(type(c).__name__ == name for c in trainer.callbacks) > 1 else name
        for hook in CALLBACK_HOOKS:
            if getattr(type(cb), hook, None) is not getattr(L.Callback, hook):
                pieces.append((cb, hook, f"callback {label}.{hook}", ""))
    for owner, attribute, label, _ in pieces:
        watch.patch(owner, attribute, label)
    return {label: inside for _, _, label, inside in pieces}


class ProfileTimer(AlternatingTimer):
    """:class:`AlternatingTimer` whose stopwatch runs during A's epochs after the first, paused in validation."""

    def __init__(self, twin: Twin, limit: int | None, watch: Stopwatch) -> None:
        super().__init__(twin, limit)
        self.watch, self.steps = watch, 0

    def _start_a(self) -> None:
        super()._start_a()
        self.watch.active = bool(self.a)  # epochs after the warm-up

    def _end_a(self) -> None:
        self.watch.active = False
        super()._end_a()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, *args: Any) -> None:
        super().on_train_batch_start(trainer, pl_module, batch, *args)
        self.steps += self.watch.active

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._was_active, self.watch.active = self.watch.active, False
        super().on_validation_start(trainer, pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        self.watch.active = getattr(self, "_was_active", False)


def section_profile(ctx: Context) -> dict[str, Any]:
    """The shipped run, instrumented: each piece's ms per training step, beside the plain loop's step."""
    cli, twin = ctx.shipped()
    watch = Stopwatch()
    timer = ProfileTimer(twin, ctx.args.limit, watch)
    inside = instrument(watch, cli, ctx.dm, timer)
    try:
        fit_alternating(cli, twin, ctx.dm, ctx.args.profile_rounds, ctx.args.limit,
                        Path(ctx.args.tmp) / f"{ctx.kind}_profile_stderr.log", callback=timer)  # fmt: skip
    finally:
        watch.restore()
    steps = timer.steps
    a_train = sum(r["train_s"] for r in timer.a[1:])
    b_step = sum(r["train_s"] for r in timer.b[1:]) / sum(r["images"] for r in timer.b[1:]) * ctx.dm.batch_size
    pieces = {key: {"inside": inside[key], "calls_per_step": watch.calls[key] / steps,
                    "ms_per_call": 1e3 * watch.seconds[key] / watch.calls[key],
                    "ms_per_step": 1e3 * watch.seconds[key] / steps}
              for key in watch.order if watch.calls[key]}  # fmt: skip
    out = {"steps": steps, "a_ms_per_step": 1e3 * a_train / steps, "b_ms_per_step": 1e3 * b_step,
           "a_val_ms_per_epoch": 1e3 * statistics.median(r["val_s"] for r in timer.a[1:]),
           "b_val_ms_per_epoch": 1e3 * statistics.median(r["val_s"] for r in timer.b[1:]),
           "a_epoch_extra_ms": 1e3 * statistics.median(r["epoch_s"] - r["train_s"] - r["val_s"] for r in timer.a[1:]),
           "pieces": pieces}  # fmt: skip
    print(f"[{ctx.kind} profile] lit_gen {out['a_ms_per_step']:.2f} ms/step, plain {out['b_ms_per_step']:.2f} ms/step",
          flush=True)  # fmt: skip
    return out


# -- tables ----------------------------------------------------------------------------------------------------------
# -- precision: images/s and achieved GFLOP/s against the machine's own matmul limit ---------------------------------
MATRIX_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_fp16")
LIMIT_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_info(path: Path = Path("/proc/cpuinfo")) -> dict[str, Any]:
    """The CPU's model name and which of the flags that decide its matrix speed it has (``/proc/cpuinfo``)."""
    model, flags = platform.processor() or platform.machine(), set()
    with suppress(OSError):
        for line in path.read_text().splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key == "model name":
                model = value
            elif key == "flags":
                flags = set(value.split())
                break  # the first core's flags; model name comes before them
    return {"model": model, "cores": os.cpu_count(), "flags": [f for f in MATRIX_FLAGS if f in flags],
            "lacks": [f for f in MATRIX_FLAGS if f not in flags]}  # fmt: skip


def hardware(device: str = "cpu", cpu: dict[str, Any] | None = None) -> str:
    """One line naming where the figures come from: the CPU and its matrix flags (and the GPU on ``cuda``)."""
    cpu = cpu or cpu_info()
    line = (f"{cpu['model']}, {cpu['cores']} cores, flags: {' '.join(cpu['flags']) or 'none'} "
            f"(no {' '.join(cpu['lacks']) or '-'})")  # fmt: skip
    if device == "cuda":
        major, minor = torch.cuda.get_device_capability()
        line = f"{torch.cuda.get_device_name()} (compute capability {major}.{minor}), host CPU {line}"
    return line


def matmul_limit(
    dtype: torch.dtype, size: int = 2048, device: str = "cpu", repeats: int = 3, trials: int = 3,
    clock: Callable[[], float] = time.perf_counter,
) -> float:  # fmt: skip
    """GFLOP/s of ``size``² matrix products in ``dtype`` at the current torch thread count: the best of ``trials``
    timings of ``repeats`` products each (2·size³ FLOPs per product), after one untimed product."""
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=gen).to(dev, dtype) for _ in range(2))
    out = torch.mm(a, b)
    best = math.inf
    for _ in range(trials):
        sync(dev)
        start = clock()
        for _ in range(repeats):
            torch.mm(a, b, out=out)
        sync(dev)
        best = min(best, clock() - start)
    return 2 * size**3 * repeats / best / 1e9


def measure_limits(args: argparse.Namespace) -> dict[str, float]:
    """The matmul limits (GFLOP/s) at ``--matmul-size``: fp32 and bf16, and fp16 on a GPU."""
    names = ("fp32", "bf16", "fp16") if args.device == "cuda" else ("fp32", "bf16")
    repeats = 20 if args.device == "cuda" else 3  # best of 5 trials: on a shared CPU the quiet moments give the limit
    return {n: matmul_limit(LIMIT_DTYPES[n], args.matmul_size, args.device, repeats, trials=5) for n in names}


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of the matrix products and convolutions, forward and backward, that ``fn()`` runs (counted by
    ``torch.utils.flop_counter.FlopCounterMode``: element-wise work, optimizer steps included, counts nothing)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def iteration_flops(trainer: L.Trainer, model: L.LightningModule, **fit_kwargs: Any) -> int:
    """FLOPs of one training iteration as the module runs it (GAN: its discriminator step(s) and generator step;
    VAE: forward and backward), counted while ``trainer.fit`` runs one training batch and no validation."""
    trainer.limit_train_batches, trainer.limit_val_batches = 1, 0
    trainer.fit_loop.max_epochs = 1
    return count_flops(lambda: trainer.fit(model, **fit_kwargs))


def variant_overrides(spec: str, args: argparse.Namespace) -> list[str]:
    """Config overrides of a precision variant ``PRECISION[+cl][+compile]``, e.g. ``bf16-mixed+cl``: channels-last
    and compile are set either way, so a default chosen by the machine does not change the baseline."""
    precision, *options = spec.split("+")
    accelerator = "gpu" if args.device == "cuda" else "cpu"
    return [f"--trainer.accelerator={accelerator}", "--trainer.devices=1", f"--trainer.precision={precision}",
            f"--model.channels_last={'cl' in options}", f"--model.compile={'compile' in options}"]  # fmt: skip


def variant(spec: str) -> str:
    precision, *options = spec.split("+")
    if precision not in ("32-true", "16-mixed", "bf16-mixed") or not set(options) <= {"cl", "compile"}:
        raise argparse.ArgumentTypeError(f"{spec!r}: expected PRECISION[+cl][+compile], e.g. bf16-mixed+cl+compile")
    return spec


class RoundClock(L.Callback):
    """Seconds and images of each training epoch (a round: its batches, no validation) of repeated ``fit`` calls."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.rounds = device, []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        sync(self.device)
        self.images, self.start = 0, time.perf_counter()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, *args: Any) -> None:
        self.images += (batch[0] if isinstance(batch, (tuple, list)) else batch).shape[0]

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        sync(self.device)
        self.rounds.append({"train_s": time.perf_counter() - self.start, "images": self.images})


def section_precision(ctx: Context) -> dict[str, Any]:
    """The shipped config as it is (its loss, spectral norm and EMA; bare Trainer, no validation) in each precision
    variant at each batch size: ``--rounds`` timed epochs of ``--limit`` batches per variant after a warm-up epoch,
    alternating ABBA in one process. images/s, achieved GFLOP/s (the FLOPs of one iteration, counted once at 32-true,
    times iterations/s) and their fraction of the matmul limits measured in the same process before and after."""
    args, device = ctx.args, torch.device(ctx.args.device)
    limits_before = measure_limits(args)
    print(f"[{ctx.kind} precision] matmul limits (GFLOP/s): {limits_before}", flush=True)
    config, rows = args.configs[ctx.kind], []
    common = ["--trainer.num_sanity_val_steps=0", "--trainer.limit_val_batches=0", *args.override]
    for bs in args.precision_batch_sizes:
        counter = build(config, *variant_overrides("32-true", args), f"--data.batch_size={bs}", *common)
        with quiet():
            flops = iteration_flops(counter.trainer, counter.model, datamodule=counter.datamodule)
        runs = {}
        for spec in args.precision_variants:
            cli = build(config, *variant_overrides(spec, args), f"--data.batch_size={bs}", *common)
            if args.limit is not None:
                cli.trainer.limit_train_batches = args.limit
            if args.precision_images is not None:  # the same images per round at every batch size
                cli.trainer.limit_train_batches = max(1, args.precision_images // bs)
            clock = RoundClock(device)
            cli.trainer.callbacks.insert(0, clock)
            runs[spec] = (cli, clock)
        for r in range(args.rounds + 1):  # round 0: warm-up (and compilation)
            for spec in args.precision_variants[:: 1 if r % 2 == 0 else -1]:
                cli, _ = runs[spec]
                cli.trainer.fit_loop.max_epochs = r + 1
                with quiet(Path(args.tmp) / f"{ctx.kind}_precision.log"):
                    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        for spec, (_, clock) in runs.items():
            ips = [x["images"] / x["train_s"] for x in clock.rounds[1:]]
            gflops = [flops / bs * v / 1e9 for v in ips]
            rows.append({"batch_size": bs, "variant": spec, "gflop_per_iteration": flops / 1e9,
                         "images_per_s": ips, "images_per_s_median": statistics.median(ips),
                         "gflops_median": statistics.median(gflops), "gflops_min": min(gflops),
                         "gflops_max": max(gflops), "warm_up_s": clock.rounds[0]["train_s"],
                         "batches_per_round": clock.rounds[-1]["images"] // bs})  # fmt: skip
            print(f"[{ctx.kind} batch {bs} {spec}] images/s per round {numbers(ips)}; {rows[-1]['gflops_median']:.1f} "
                  f"GFLOP/s ({flops / 1e9:.2f} GFLOP per iteration)", flush=True)  # fmt: skip
    limits_after = measure_limits(args)
    print(f"[{ctx.kind} precision] matmul limits after (GFLOP/s): {limits_after}", flush=True)
    limits = {k: max(limits_before[k], limits_after[k]) for k in limits_before}
    for row in rows:
        row["fraction_of_limit"] = {k: row["gflops_median"] / v for k, v in limits.items()}
    return {"limits_gflops": limits, "limits_before": limits_before, "limits_after": limits_after,
            "matmul_size": args.matmul_size, "seed": 0, "rows": rows}  # fmt: skip


def precision_table(results: dict[str, Any], args: argparse.Namespace) -> list[str]:
    models = [k for k in CONFIGS if "precision" in results.get(k, {})]
    if not models:
        return []
    first = results[models[0]]["precision"]
    names = list(first["limits_gflops"])
    limits = "; ".join(
        f"{NAMES[k]} section: " + ", ".join(f"{n} {results[k]['precision']['limits_before'][n]:.0f} → "
                                            f"{results[k]['precision']['limits_after'][n]:.0f}" for n in names)
        for k in models
    )  # fmt: skip
    per_round = f"{args.precision_images} images" if args.precision_images else f"{args.limit or 'all'} batches"
    out = [f"Trainer.fit of the shipped configs (bare Trainer, no validation) on {results['hardware']}; "
           f"{args.threads} torch thread(s). Matmul limits, {first['matmul_size']}² products, GFLOP/s before → after "
           f"the timings in the same process: {limits}; fractions use the larger. images/s: median (min–max) over "
           f"{args.rounds} rounds of {per_round} after a warm-up round, variants alternating ABBA; "
           "GFLOP/s = FLOPs of one iteration (torch.utils.flop_counter, at 32-true) × iterations/s. Seed 0.\n",
           "| model | batch | precision | images/s | speed-up | GFLOP/iteration | GFLOP/s (min–max) | "
           + " | ".join(f"% of {n} limit" for n in names) + " | warm-up round s |",
           "|---|---|---|---|---|---|---|" + "---|" * len(names) + "---|"]  # fmt: skip
    for kind in models:
        rows = results[kind]["precision"]["rows"]
        base = {r["batch_size"]: r["images_per_s_median"] for r in rows if r["variant"] == rows[0]["variant"]}
        for r in rows:
            ips = r["images_per_s"]
            out.append(f"| {NAMES[kind]} | {r['batch_size']} | {r['variant']} | {r['images_per_s_median']:.0f} "
                       f"({min(ips):.0f}–{max(ips):.0f}) | {r['images_per_s_median'] / base[r['batch_size']]:.2f} | "
                       f"{r['gflop_per_iteration']:.2f} | {r['gflops_median']:.1f} ({r['gflops_min']:.1f}–"
                       f"{r['gflops_max']:.1f}) | "
                       + " | ".join(f"{100 * r['fraction_of_limit'][n]:.1f} %" for n in names)
                       + f" | {r['warm_up_s']:.1f} |")  # fmt: skip
    out.append("")
    return out


NAMES = {"gan": "DCGAN", "vae": "conv VAE"}


def numbers(values: list[float], digits: int = 0) -> str:
    return ", ".join(f"{v:.{digits}f}" for v in values)


def percent(value: float | None) -> str:
    return "" if value is None else f"{value:.0f} %"


def fmt_ratio(d: dict[str, Any]) -> str:
    return f"{d['ratio_median']:.3f} ({d['ratio_min']:.3f}–{d['ratio_max']:.3f})"


def tables(results: dict[str, Any], args: argparse.Namespace) -> str:
    names = {kind: f"{name} {args.image_size}×{args.image_size}" for kind, name in NAMES.items()}
    out = [f"{results['hardware']}.\n",
           f"Device {args.device}, precision {args.precision}, {args.threads} torch thread(s), flush-denormal on, "
           f"load average {results['load_average_at_start']:.1f} at the start, "
           f"compile {args.compile}, channels_last {args.channels_last}, image size {args.image_size}, batch size "
           f"{results.get('batch_size', 64)}; ratios are lit_gen / plain-loop throughput, median (min–max) over "
           "alternating rounds.\n"]  # fmt: skip
    models = [k for k in CONFIGS if k in results]
    if all(set(results[k]) <= {"precision"} for k in models):
        out = out[:1]  # the settings line above is the other sections'; the precision table says its own
    if any("train" in results[k] for k in models):
        out += ["| model | run | images/s (median) | ratio to the plain loop | peak memory (MiB) | GPU util. |",
                "|---|---|---|---|---|---|"]  # fmt: skip
        for kind in models:
            train = results[kind].get("train")
            if not train:
                continue
            bare = train["bare"]
            out.append(f"| {names[kind]} | plain PyTorch loop: training batches | {bare['train_s']['b_median']:.0f} "
                       f"| 1 | {bare['b_peak_mib']:.0f} | {percent(bare['b_gpu_util'])} |")  # fmt: skip
            labels = {"shipped": "lit_gen as shipped (CSV logger, checkpoints, sample grid)",
                      "bare": "lit_gen bare Trainer"}  # fmt: skip
            for variant in ("shipped", "bare"):
                s = train[variant]
                for key, what in (("train_s", "training batches"), ("epoch_s", "whole epoch incl. validation")):
                    out.append(f"| {names[kind]} | {labels[variant]}: {what} | {s[key]['a_median']:.0f} | "
                               f"{fmt_ratio(s[key])} | {s['a_peak_mib']:.0f} | "
                               f"{percent(s['a_gpu_util'])} |")  # fmt: skip
        out.append("")
    if any("check" in results[k] for k in models):
        out += ["| model | steps | losses compared | last step, lit_gen | last step, plain | max abs diff "
                "| max rel diff | weights max abs diff |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for kind in models:
            c = results[kind].get("check")
            if c:
                out.append(
                    f"| {names[kind]} | {c['steps']} | {', '.join(c['keys'])} | "
                    f"{numbers(c['lit_gen'][-1], 6)} | {numbers(c['plain'][-1], 6)} | "
                    f"{c['max_abs_diff']:.2e} | {c['max_rel_diff']:.2e} | {c['weights_max_abs_diff']:.2e} |"
                )
        out.append("")
    if any("eval" in results[k] for k in models):
        out += ["| model | stage | lit_gen s | plain s | ratio | numbers compared | max rel diff | FD lit_gen / "
                "torchmetrics |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for kind in models:
            for stage, e in results[kind].get("eval", {}).items():
                fd = f"{e['lit_gen']['fd']:.4f} / {e['fd_torchmetrics']:.4f}" if "fd_torchmetrics" in e else ""
                out.append(f"| {names[kind]} | {stage} | {statistics.median(e['a_s']):.2f} | "
                           f"{statistics.median(e['b_s']):.2f} | {fmt_ratio(e)} | {len(e['compared'])} | "
                           f"{e['max_rel_diff']:.1e} | {fd} |")  # fmt: skip
        out.append("")
    if any("size" in results[k] for k in models):
        out += ["| model | training images | lit_gen s/epoch | plain s/epoch | lit_gen ms per 1,000 images | "
                "plain ms per 1,000 images |", "|---|---|---|---|---|---|"]  # fmt: skip
        for kind in models:
            for r in results[kind].get("size", []):
                out.append(f"| {names[kind]} | {r['images']:,} | {r['a_s_per_epoch']:.2f} | {r['b_s_per_epoch']:.2f} | "
                           f"{1e6 * r['a_s_per_epoch'] / r['images']:.0f} | "
                           f"{1e6 * r['b_s_per_epoch'] / r['images']:.0f} |")  # fmt: skip
        out.append("")
    if any("batch" in results[k] for k in models):
        out += ["| model | batch size | lit_gen images/s | plain images/s | ratio (median) |", "|---|---|---|---|---|"]
        for kind in models:
            for r in results[kind].get("batch", []):
                out.append(f"| {names[kind]} | {r['batch_size']} | {r['a_images_per_s']:.0f} | "
                           f"{r['b_images_per_s']:.0f} | {r['ratio_median']:.3f} |")  # fmt: skip
        out.append("")
    if any("threads" in results[k] for k in models):
        out += ["| model | torch threads | plain loop images/s |", "|---|---|---|"]
        for kind in models:
            for r in results[kind].get("threads", []):
                out.append(f"| {names[kind]} | {r['threads']} | {r['b_images_per_s']:.0f} |")
        out.append("")
    out += precision_table(results, args)
    if any("ddp" in results[k] for k in models):
        out += ["| model | `lit-gen fit` on CPU | images/s | speed-up | start-up and teardown (s) |",
                "|---|---|---|---|---|"]  # fmt: skip
        for kind in models:
            rows = results[kind].get("ddp", [])
            for r in rows:
                how = f"{r['processes']} × {r['threads_per_process']} (processes × threads)"
                how += ", DDP (gloo)" if r["processes"] > 1 else ""
                out.append(f"| {names[kind]} | {how} | {r['images_per_s']:.0f} | "
                           f"{r['images_per_s'] / rows[0]['images_per_s']:.2f} | {r['start_s']:.1f} |")  # fmt: skip
        out.append("")
    for kind in models:
        p = results[kind].get("profile")
        if not p:
            continue
        out += [f"Per training step of the shipped {names[kind]} run, {p['steps']} steps timed in place: lit_gen "
                f"{p['a_ms_per_step']:.2f} ms, the plain loop {p['b_ms_per_step']:.2f} ms. Per epoch: validation "
                f"{p['a_val_ms_per_epoch']:.0f} ms (plain loop {p['b_val_ms_per_epoch']:.0f} ms), epoch end "
                f"(checkpoints, grids) {p['a_epoch_extra_ms']:.0f} ms. Epoch-end pieces are spread over the timed "
                "steps; grids run every 5 or 10 epochs and at the last, so short runs overstate them.\n",
                "| piece | inside | calls per step | ms per call | ms per step |", "|---|---|---|---|---|"]  # fmt: skip
        for key, v in p["pieces"].items():
            out.append(f"| {key} | {v['inside']} | {v['calls_per_step']:.2f} | {v['ms_per_call']:.3f} | "
                       f"{v['ms_per_step']:.3f} |")  # fmt: skip
        out.append("")
    return "\n".join(out)


# -- main ------------------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=sorted(CONFIGS), default=["gan", "vae"])
    parser.add_argument("--gan-config", default=CONFIGS["gan"])
    parser.add_argument("--vae-config", default=CONFIGS["vae"])
    parser.add_argument("--override", action="append", default=[], metavar="ARG",
                        help="a config override for every run of A, e.g. --override=--data.num_workers=2")  # fmt: skip
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--quick", action="store_true", help="a short run of every section")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="32-true", choices=["32-true", "16-mixed", "bf16-mixed"])
    parser.add_argument("--compile", action="store_true", help="torch.compile the nets of A and B")
    parser.add_argument("--channels-last", action="store_true", help="channels_last nets and batches")
    parser.add_argument("--image-size", type=int, default=28, help="e.g. 64 for DCGAN 64×64 (data resized)")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1))
    parser.add_argument("--rounds", type=int, default=None, help="timed A/B rounds after the warm-up (default 5)")
    parser.add_argument("--limit", type=int, default=None, help="training batches per round (default: one epoch)")
    parser.add_argument("--check-steps", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("results/speed"))
    parser.add_argument("--precision-variants", nargs="+", type=variant, default=None, metavar="SPEC",
                        help="precision section: PRECISION[+cl][+compile] each (default on CPU: 32-true bf16-mixed+cl; "
                        "on a GPU: 32-true 16-mixed+cl+compile bf16-mixed+cl+compile)")  # fmt: skip
    parser.add_argument("--precision-batch-sizes", nargs="+", type=int, default=[32, 128])
    parser.add_argument("--precision-images", type=int, default=None,
                        help="precision section: images per round at any batch size (not --limit batches)")  # fmt: skip
    parser.add_argument("--matmul-size", type=int, default=None, help="the limit's matmul side (CPU 2048, GPU 8192)")
    args = parser.parse_args(argv)
    if args.precision_variants is None:
        gpu = ["32-true", "16-mixed+cl+compile", "bf16-mixed+cl+compile"]
        args.precision_variants = gpu if args.device == "cuda" else ["32-true", "bf16-mixed+cl"]
    args.matmul_size = args.matmul_size or (8192 if args.device == "cuda" else 2048)
    args.configs = {"gan": args.gan_config, "vae": args.vae_config}
    args.tmp = None  # a temporary directory, made by main()
    quick = args.quick
    args.rounds = args.rounds or (2 if quick else 5)
    args.limit = args.limit or (15 if quick else None)
    args.eval_rounds = 1 if quick else 3
    args.eval_limit = 3 if quick else None  # evaluation batches (VAE test: IWAE with k = 64 per image)
    args.scaling_rounds = 1 if quick else 2
    args.profile_rounds = 1
    args.sizes = [256, 512, 1024] if quick else [1000, 2000, 4000]
    args.batch_sizes = [32, 128] if quick else [32, 64, 128, 256]
    args.batch_images = 1024 if quick else 2048
    args.thread_batches = 10 if quick else 40
    args.ddp_epochs = 2 if quick else 3
    if quick and args.models == ["gan", "vae"] and "ddp" in args.sections:
        args.ddp_models = ["gan"]  # two DDP start-ups of ~10 s each are most of a quick run
    else:
        args.ddp_models = args.models
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible")
    return args


def main() -> None:
    args = parse_args()
    for name in ("lightning.pytorch", "lightning.fabric"):  # seeds, accelerators, summaries: not the benchmark's
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    os.environ.setdefault("WANDB_MODE", "disabled")
    started = time.time()
    settings = ("threads", "device", "precision", "compile", "channels_last", "image_size", "quick")
    results: dict[str, Any] = {k: getattr(args, k) for k in settings}
    results["interop_threads"] = torch.get_num_interop_threads()
    results["hardware"], results["cpu"] = hardware(args.device), cpu_info()
    results["load_average_at_start"] = os.getloadavg()[0]
    if args.device == "cpu" and os.getloadavg()[0] > 0.5:
        print(f"bench_speed: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores before starting: other "
              "jobs share the CPU and distort every timing (with the cores busy, 2 torch threads can be many times "
              "slower than 1; see --threads)", flush=True)  # fmt: skip
    args.tmp = tempfile.mkdtemp(prefix="bench_speed_")
    try:
        for kind in args.models:
            ctx = Context(kind, args)
            results["batch_size"] = ctx.batch_size
            results[kind] = {}
            for section in args.sections:
                if section == "ddp" and (kind not in args.ddp_models or args.device != "cpu"):
                    continue  # DDP on CPU processes only
                if section == "threads" and args.device != "cpu":
                    continue
                t0 = time.time()
                results[kind][section] = globals()[f"section_{section}"](ctx)
                print(f"[{kind} {section}] {time.time() - t0:.0f} s", flush=True)
    finally:
        shutil.rmtree(args.tmp, ignore_errors=True)
    results["load_average_at_end"] = os.getloadavg()[0]
    command = "python " + shlex.join(["scripts/bench_speed.py", *sys.argv[1:]])
    write_results(args.out, results, tables(results, args), command, started)


if __name__ == "__main__":
    main()
