"""``lit-gen`` and ``python -m lit_gen``: LightningCLI with the fit/validate/test/predict subcommands."""

from __future__ import annotations

import importlib
import os
import pickle
import warnings
from pathlib import Path

import torch
import yaml
from jsonargparse import Namespace
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_only

from lit_gen.callbacks.checkpoint import AtomicCheckpointIO
from lit_gen.callbacks.image_log import ImageLogCallback, run_dir
from lit_gen.callbacks.images import ImageWriter
from lit_gen.callbacks.wandb_run import record_config, start_wandb_runs
from lit_gen.modules.checked_loading import check_checkpoint
from lit_gen.modules.trainer_checks import ManualOptimizationConfigError, check_manual_optimization_trainer
from lit_gen.speed_choice import auto_channels_last, choose_precision, device_type


class SaveRunConfig(SaveConfigCallback):
    """Saves the full config as ``config.yaml`` in the run's own directory (:func:`~lit_gen.callbacks.run_dir`),
    and into the run config of a WandbLogger as flat dotted keys.

    Lightning saves it in ``trainer.log_dir``, which for a WandbLogger is the ``save_dir`` every run shares: two
    sweep runs in one directory would overwrite (or, without ``overwrite``, refuse) each other's file. A run resumed
    with ``--ckpt_path last`` writes into its old directory, so an existing file there is replaced.
    """

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        directory = run_dir(trainer)  # a collective: every rank asks
        if trainer.is_global_zero:
            directory.mkdir(parents=True, exist_ok=True)
            self.parser.save(self.config, directory / self.config_filename, skip_none=False, overwrite=True,
                             multifile=self.multifile)  # fmt: skip
            self.save_config(trainer, pl_module, stage)
            self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        record_config(trainer, yaml.safe_load(self.parser.dump(self.config, skip_none=False)))


PROGRESS_REFRESH = 10  # batches between redraws of the default progress bar


class LitGenCLI(LightningCLI):
    """LightningCLI for lit_gen: any LightningModule and DataModule by ``class_path``, optimizers as arguments of
    the module (``auto_configure_optimizers=False``), and an :class:`ImageWriter` for ``predict``."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("save_config_callback", SaveRunConfig)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("auto_configure_optimizers", False)
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("subclass_mode_data", True)
        super().__init__(LightningModule, LightningDataModule, *args, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(ImageWriter, "predict_writer")

    def parse_arguments(self, parser, args) -> None:
        """Parse, then check ``--ckpt_path`` before LightningCLI reads the checkpoint's hyperparameters."""
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        config = self.config.get(subcommand) if subcommand else self.config
        if config.get("weights_only", False) is None:
            config.weights_only = True  # checkpoints hold tensors and plain data only: no arbitrary unpickling
        place_logs_under_root_dir(config.trainer)
        ckpt_path = config.get("ckpt_path")
        try:
            if ckpt_path == "last":  # fit resumes in the same run directory; test/validate/predict log anew
                ckpt_path = str(resolve_last_checkpoint(config, reuse_version=subcommand == "fit"))
            elif ckpt_path is None and subcommand in ("validate", "test", "predict"):
                warnings.warn(
                    f"lit-gen {subcommand} without --ckpt_path evaluates the freshly initialised model; pass "
                    "--ckpt_path PATH (or `last`, the newest last.ckpt of this config's runs)",
                    stacklevel=1,
                )
            if ckpt_path not in (None, "best", "hpc", "registry"):
                # LightningCLI next replaces the model's class_path with the one the checkpoint's hyperparameters
                # record: compare the classes before that, or a VAE checkpoint silently turns a GAN config into a VAE
                check_checkpoint(ckpt_path, config_model_class(config))
        except (FileNotFoundError, ValueError) as err:
            parser.error(str(err))

    def before_instantiate_classes(self) -> None:
        """``lit-gen fit`` without a precision (none of the shipped configs sets one) trains in the precision that
        :func:`~lit_gen.speed_choice.choose_precision` picks for the machine, and says which and why."""
        config = self.config.get(self.subcommand) if self.subcommand else self.config
        self._auto_precision, line = automatic_speed(config, self.subcommand)
        if line:
            say(line)
        if self._auto_precision is not None:  # the summary then counts 32-bit sizes: right for the stored weights
            warnings.filterwarnings("ignore", message=r"Precision .* is not supported by the model summary")

    def instantiate_trainer(self, **kwargs) -> Trainer:
        """LightningCLI's, with the automatic precision when the config gives none. The saved ``config.yaml`` keeps
        ``precision: null``, so a rerun on another machine chooses for that machine."""
        if getattr(self, "_auto_precision", None) is not None:
            kwargs.setdefault("precision", self._auto_precision)
        return super().instantiate_trainer(**kwargs)

    def instantiate_classes(self) -> None:
        """LightningCLI's, with an invalid argument that a class's ``__init__`` refuses (``ValueError``) reported as
        one ``error:`` line naming the class, instead of jsonargparse's traceback and ``Namespace(...)`` dump.

        ``JSONARGPARSE_DEBUG=1`` raises the full chain instead.
        """
        try:
            super().instantiate_classes()
        except ValueError as err:
            message = init_error_message(err)
            if message is None:
                raise
            self.parser.error(message, ex=err)

    def before_fit(self) -> None:
        """Atomic checkpoint writes unless the user configured their own CheckpointIO; a wandb run that starts
        without prompting."""
        if not self.model.automatic_optimization:  # Lightning's own refusal names no alternative
            try:
                check_manual_optimization_trainer(self.trainer, type(self.model).__name__)
            except ManualOptimizationConfigError as err:
                self.parser.error(str(err))
        self._check_spawn_pickles()
        strategy = self.trainer.strategy
        if type(strategy.checkpoint_io) is TorchCheckpointIO:
            strategy.checkpoint_io = AtomicCheckpointIO()
        self._slower_default_progress_bar()
        start_wandb_runs(self.trainer)

    def _check_spawn_pickles(self) -> None:
        """A ``*_spawn`` strategy pickles the module into each new process: a net that cannot be pickled (torch's
        parametrized spectral norm outside lit_gen's nets) is one ``error:`` line naming ``strategy="ddp"``, not a
        traceback from inside the launcher."""
        config = self.config.get(self.subcommand) or self.config
        if "spawn" not in str(config.get("trainer", {}).get("strategy", "")):
            return
        try:
            pickle.dumps(self.model)
        except Exception as err:  # RuntimeError (parametrizations), AttributeError/PicklingError (local objects)
            self.parser.error(
                f"the strategy {config.trainer.strategy!r} pickles the module into new processes, and "
                f"{type(self.model).__name__} cannot be pickled ({type(err).__name__}: {' '.join(str(err).split())}); "
                "use Trainer(strategy='ddp') (--trainer.strategy=ddp), which starts the processes from the script"
            )

    def _slower_default_progress_bar(self) -> None:
        """Lightning's default bar redraws after every batch: 0.8 ms a step on a CPU core, 1.6 % of the default VAE's
        step. Redraw every ``PROGRESS_REFRESH`` batches unless the config brings its own progress bar."""
        config = self.config.get(self.subcommand) or self.config  # not config_init: the Trainer appends to its list
        given = [cb.get("class_path", "") for cb in config.get("trainer", {}).get("callbacks") or []]
        bar = self.trainer.progress_bar_callback
        if isinstance(bar, TQDMProgressBar) and not any(issubclass(import_class(path), ProgressBar) for path in given):
            bar._refresh_rate = PROGRESS_REFRESH

    def before_validate(self) -> None:
        start_wandb_runs(self.trainer)

    def before_test(self) -> None:
        start_wandb_runs(self.trainer)

    def after_fit(self) -> None:
        """Say where the run's files are."""
        trainer = self.trainer
        directory = run_dir(trainer)  # a collective under DDP: every rank asks
        if trainer.global_rank != 0:
            return
        lines = [f"lit-gen: run directory {directory}"]
        ckpt = trainer.checkpoint_callback
        if ckpt is not None:
            path = getattr(ckpt, "last_model_path", "") or getattr(ckpt, "best_model_path", "")
            lines.append(f"  checkpoint  {path}")
        config = directory / "config.yaml"
        if config.exists():
            lines.append(f"  config      {config}")
        for cb in trainer.callbacks:  # type: ignore[attr-defined]
            if isinstance(cb, ImageLogCallback) and cb.last_path is not None:
                lines.append(f"  {cb.name:<11} {cb.last_path}")
        print("\n".join(lines), flush=True)


def automatic_speed(config: Namespace, subcommand: str | None) -> tuple[str | None, str]:
    """The precision to give the Trainer (None: the config's own) and the line that says what was chosen and why.

    Only ``fit`` chooses: ``validate``/``test``/``predict`` keep the Trainer's default 32-true unless told, so the
    metrics they report do not depend on the machine. A precision in the config or on the command line always
    wins; the module's ``channels_last=None`` follows the precision and the device (forced by True/False).
    """
    trainer = config.get("trainer") or Namespace()
    accelerator = trainer.get("accelerator", "auto")
    if subcommand != "fit" or not isinstance(accelerator, (str, type(None))):  # an Accelerator object: no guess
        return None, ""
    model = config.get("model")
    init = model.get("init_args") if isinstance(model, Namespace) else None
    layout = init.get("channels_last", False) if isinstance(init, Namespace) else False  # False: no such option
    precision = trainer.get("precision")
    if precision is not None and layout is not None:
        return None, ""  # the user chose both (or the module has no channels_last)
    kind = device_type(accelerator)
    choice = choose_precision(kind)
    why = choice.reason.rpartition(": ")[0]  # "AMD EPYC has avx512_bf16"
    if precision is None:
        force = "--trainer.precision=" + ("32-true" if choice.precision != "32-true" else "bf16-mixed")
        text = f"precision {choice.precision}"
        if layout is None:
            text += ", channels-last" if choice.channels_last else ", no channels-last"
            force += f" / --model.channels_last={str(not choice.channels_last).lower()}"
        return choice.precision, f"lit-gen: {text} ({why}; force with {force})"
    on = auto_channels_last(precision, kind)
    return None, (
        f"lit-gen: {'channels-last' if on else 'no channels-last'} for the given precision {precision} on {kind} "
        f"({why}; force with --model.channels_last={str(not on).lower()})"
    )


@rank_zero_only
def say(line: str) -> None:
    """Print ``line`` on the process of global rank 0 only."""
    print(line, flush=True)


def resolve_last_checkpoint(config: Namespace, reuse_version: bool = True) -> Path:
    """``--ckpt_path last`` for a new process: the newest ``last.ckpt`` (or ``on_exception.ckpt``) of earlier runs.

    Lightning alone looks for ``last`` only in the new run's own (empty) directory and silently starts from scratch
    (``fit``) or evaluates the untrained model (``test``). Here the newest
    ``<save_dir>/<name>/version_*/checkpoints/{last,on_exception}.ckpt`` is found; with ``reuse_version`` the logger
    is pointed at that version, so a resumed run keeps writing into the same directory (CSV metrics are appended).
    """
    logger = config.trainer.get("logger")
    init = logger.get("init_args") if isinstance(logger, Namespace) else None
    if init is not None and init.get("save_dir") is not None:
        wandb = str(logger.get("class_path", "")).endswith("WandbLogger")  # its runs live under the project
        name = init.get("project") or os.environ.get("WANDB_PROJECT") if wandb else init.get("name")
        root = Path(init.save_dir) / (name or "lightning_logs")
    else:
        root = Path(config.trainer.get("default_root_dir") or ".") / "lightning_logs"
    found = [*root.glob("*/checkpoints/last.ckpt"), *root.glob("*/checkpoints/on_exception.ckpt")]
    candidates = sorted(found, key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise FileNotFoundError(
            f"--ckpt_path last: no checkpoint matches {root}/*/checkpoints/last.ckpt; start without --ckpt_path, or "
            "pass the path of a checkpoint"
        )
    config.ckpt_path = str(candidates[-1])
    if reuse_version and init is not None and "version" in init:
        init.version = candidates[-1].parent.parent.name
    return candidates[-1]


def place_logs_under_root_dir(trainer: Namespace) -> None:
    """``--trainer.default_root_dir=DIR``: a logger's relative ``save_dir`` is taken relative to DIR.

    Lightning uses ``default_root_dir`` only when no logger is configured, and every shipped config has one writing
    to ``runs/``, so DIR would be silently ignored. An absolute ``save_dir``, or one already under DIR (a saved
    ``config.yaml`` run again), is kept; ``--ckpt_path last`` then searches under DIR too.
    """
    root = trainer.get("default_root_dir")
    if root is None or "://" in str(root):
        return
    loggers = trainer.get("logger")
    for logger in loggers if isinstance(loggers, list) else [loggers]:
        init = logger.get("init_args") if isinstance(logger, Namespace) else None
        save_dir = init.get("save_dir") if init is not None else None
        if save_dir is None or "://" in str(save_dir) or Path(save_dir).is_absolute():
            continue
        if Path(save_dir).parts[: len(Path(root).parts)] != Path(root).parts:
            init.save_dir = str(Path(root) / save_dir)


def config_model_class(config: Namespace) -> type | None:
    """The class of the config's ``model`` (its ``class_path``), or None when there is none to import."""
    model = config.get("model")
    class_path = model.get("class_path") if isinstance(model, Namespace) else None
    try:
        return import_class(class_path) if class_path else None
    except (ImportError, AttributeError):
        return None


def init_error_message(err: BaseException) -> str | None:
    """``"<Class>: <message>"`` for a ``ValueError`` raised inside a class's ``__init__`` (the root of the chain
    jsonargparse builds around it); None for anything else, which keeps its traceback."""
    root = err
    while root.__cause__ is not None:
        root = root.__cause__
    if not isinstance(root, ValueError):
        return None
    tb = root.__traceback__
    while tb is not None:  # outermost frame first: the first __init__ is the class the config names
        frame = tb.tb_frame
        if frame.f_code.co_name == "__init__" and "self" in frame.f_locals:
            return f"{type(frame.f_locals['self']).__name__}: {' '.join(str(root).split())}"
        tb = tb.tb_next
    return None


def import_class(class_path: str) -> type:
    """The class a config's ``class_path`` names."""
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def main(args: list[str] | None = None) -> None:
    """Entry point of the ``lit-gen`` console script; ``args`` defaults to ``sys.argv[1:]``."""
    os.environ.setdefault("WANDB_SILENT", "true")
    try:
        LitGenCLI(args=args)
    finally:
        # Lightning leaves the process group alive; a gloo group torn down at interpreter exit can abort the
        # process ("terminate called without an active exception") after a successful run.
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
