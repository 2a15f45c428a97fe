"""The ``nowcast`` command: LightningCLI with run folders, resumable checkpoints and data→model links.

Every run lives in ``<runs_root>/<run_name>/``: TensorBoard events, the resolved ``config.yaml`` (rewritten on
every invocation, so resumed and requeued runs do not crash), ``checkpoints/`` (``last.ckpt`` for
``--ckpt_path last``), ``test_metrics.json`` and ``test_panel.png``. The folder name is fixed by the run name,
never auto-numbered, which is what makes ``--ckpt_path last`` find the previous checkpoint. TensorBoard also
gets the learning rate (``LearningRateMonitor``, added unless the logger is disabled).

``last.ckpt`` is written atomically (:class:`~nowcast_pl.callbacks.LastCheckpoint`) at every epoch end, after
every validation, every ``--checkpoint_every_n_steps`` steps, every ``--checkpoint_every_n_minutes`` (default
30) minutes of training, when the fit ends, and at the next step after SIGTERM or Ctrl-C, which then end
``nowcast fit`` with status 143 or 130. ``--checkpoint.*`` configures extra top-k checkpoints only.

``nowcast fit --ckpt_path auto`` resumes from the newest of the SLURM requeue checkpoint (``hpc_ckpt_N.ckpt``)
and ``checkpoints/last*.ckpt``, or starts from scratch (saying so) when there is none: the same command serves
the first submission of a job and every requeue. ``last`` and ``auto`` are resolved to the file before anything
runs; ``test``/``validate``/``predict`` with nothing to load, and ``fit`` without ``--ckpt_path`` in a run that
has checkpoints (unless ``--restart true``), are errors (see :mod:`nowcast_pl.resume`). A resumed run logs to
the same TensorBoard folder and drops events the interrupted run wrote after its checkpoint (``purge_step``); a
fresh start moves the events of a run that died before its first checkpoint to ``replaced-<UTC time>/``.

A checkpoint file is read with the safe loader and checked against the configured model before use: another
model class, or weights that do not fit the configured architecture, are one-line errors; only a checkpoint
imported by ``nowcast-convert`` replaces the config's architecture settings (see :mod:`nowcast_pl.checkpoints`).

``nowcast report ...`` and ``nowcast forecast ...`` are not LightningCLI sub-commands: :func:`main` hands them
to :mod:`nowcast_pl.report.cli` and :mod:`nowcast_pl.forecasting.cli`.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from jsonargparse import Namespace
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from nowcast_pl.callbacks import DEFAULT_CALLBACKS, RESUME_CALLBACKS, LastCheckpoint
from nowcast_pl.checkpoints import (
    check_model_class,
    check_resumable,
    check_weights_fit,
    is_imported,
    read_checkpoint,
    saved_settings,
)
from nowcast_pl.data.datamodule import RadarDataModule
from nowcast_pl.data.schema import StoreValidationError
from nowcast_pl.resume import (
    checkpoint_global_step,
    refuse_silent_restart,
    resolve_ckpt_path,
    set_aside_events_without_checkpoint,
    start_over,
    wait_until_new_events_sort_last,
)
from nowcast_pl.tasks.base import NowcastTask
from nowcast_pl.trainer_counts import integers_before_floats

# Raised by nowcast_pl for bad configurations, stores and arguments; printed as one line by main().
USER_ERRORS = (FileExistsError, FileNotFoundError, StoreValidationError, ValueError)
# ``--ckpt_path`` values Lightning resolves itself (no file to check here).
LIGHTNING_CKPT_NAMES = ("best", "hpc")
log = logging.getLogger(__name__)


class NowcastCLI(LightningCLI):
    """LightningCLI with the run-folder convention and links from the data module to the model."""

    def add_core_arguments_to_parser(self, parser) -> None:
        """Trainer, model and data arguments; ``limit_val_batches: 1`` stays one batch (see
        :mod:`nowcast_pl.trainer_counts`)."""
        super().add_core_arguments_to_parser(parser)
        integers_before_floats(parser)

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--run_name", default="nowcast", help="Run folder name under --runs_root.")
        parser.add_argument("--runs_root", default="runs", help="Folder holding one sub-folder per run.")
        parser.add_argument("--restart", type=bool, default=False,
                            help="fit: start over in a run folder that has checkpoints; they and the TensorBoard "
                                 "events are moved to <run>/replaced-<UTC time>/ first.")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_last": False, "checkpoint.save_top_k": 0})
        parser.add_argument("--checkpoint_every_n_steps", type=int, default=0,
                            help="Also write checkpoints/last.ckpt every N optimiser steps (0: off), so a crash "
                                 "or preemption loses at most N steps.")
        parser.add_argument("--checkpoint_every_n_minutes", type=float, default=30.0,
                            help="Also write checkpoints/last.ckpt after this many minutes of training since its "
                                 "last write (0: off), so a crash loses at most that much training.")
        for key in ("in_frames", "out_frames", "value_range"):
            parser.link_arguments(f"data.init_args.{key}", f"model.init_args.{key}")
        for key in ("units", "time_step_minutes"):
            parser.link_arguments(f"data.{key}", f"model.init_args.{key}", apply_on="instantiate")

    def _parse_ckpt_path(self) -> None:
        """Resolve ``--ckpt_path last|auto`` to a file, refuse a silent restart, and check the checkpoint.

        Replaces LightningCLI's merge of every saved hyper-parameter into the config (which silently swapped
        the model class or architecture): only an imported checkpoint's architecture settings are merged.
        """
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        config = self.config[subcommand]
        run_dir, checkpoint_dir = run_folders(config)
        if subcommand == "fit" and config.restart:
            if config.ckpt_path:
                raise ValueError(f"--restart true starts {run_dir} over; it cannot resume --ckpt_path "
                                 f"{config.ckpt_path} too (drop one of them)")
            if rank_zero_only.rank == 0:
                start_over(run_dir, checkpoint_dir)
            config.restart = False  # done once: the run's config.yaml must not start it over again
        elif subcommand == "fit" and config.ckpt_path is None:
            refuse_silent_restart(run_dir, checkpoint_dir)
        # The file is handed to the trainer; config.yaml keeps ``last``/``auto`` for the next invocation.
        self.ckpt_file = path = resolve_ckpt_path(config.ckpt_path, subcommand, run_dir, checkpoint_dir)
        self.checkpoint = None
        if subcommand == "fit" and path is None and rank_zero_only.rank == 0:
            set_aside_events_without_checkpoint(run_dir)
        if path is None or path in LIGHTNING_CKPT_NAMES:
            return
        self.checkpoint = read_checkpoint(path)
        if subcommand == "fit":
            check_resumable(self.checkpoint, path)
        check_model_class(self.checkpoint, config.model.class_path, path)
        if is_imported(self.checkpoint):
            settings = saved_settings(self.checkpoint)
            model = {"class_path": config.model.class_path, "init_args": settings}
            self.config = self.parser.parse_object({subcommand: {"model": model}}, self.config)
            log.warning("%s was imported by nowcast-convert: its settings replace the config's: %s", path,
                        ", ".join(f"{k}={v!r}" for k, v in settings.items()))

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        run_dir, checkpoint_dir = run_folders(config)
        trainer = config.trainer
        trainer.default_root_dir = str(run_dir)
        if trainer.logger in (None, True):
            trainer.logger = Namespace(
                class_path="lightning.pytorch.loggers.TensorBoardLogger",
                init_args=Namespace(save_dir=config.runs_root, name=config.run_name, version=""),
            )
        config.checkpoint.dirpath = str(checkpoint_dir)
        if config.checkpoint.save_last:
            raise ValueError("--checkpoint.save_last: nowcast always writes checkpoints/last.ckpt itself (see "
                             "--checkpoint_every_n_steps and --checkpoint_every_n_minutes); remove the setting")
        trainer.callbacks = [c for c in _with_default_callbacks(trainer.callbacks, log_lr=trainer.logger is not False)
                             if (getattr(c, "class_path", None) or "").rsplit(".", 1)[-1] != LastCheckpoint.__name__]
        # One writer of last.ckpt, configured by the options above (a saved config.yaml lists it already).
        last = Namespace(dirpath=config.checkpoint.dirpath, every_n_steps=config.checkpoint_every_n_steps,
                         every_n_minutes=config.checkpoint_every_n_minutes)
        trainer.callbacks.append(Namespace(class_path=f"{LastCheckpoint.__module__}.LastCheckpoint", init_args=last))

    def before_fit(self) -> None:
        """Check the resumed checkpoint and make TensorBoard continue where it was written."""
        path = self._checked_ckpt_file()
        logger = self.trainer.logger
        resumed = path is not None and path not in LIGHTNING_CKPT_NAMES
        if isinstance(logger, TensorBoardLogger) and logger._experiment is None and resumed:
            # Events at or after the resumed step, logged by an interrupted run, are dropped by TensorBoard.
            logger._kwargs["purge_step"] = checkpoint_global_step(path)
            wait_until_new_events_sort_last(logger.log_dir)

    def before_validate(self) -> None:
        self._checked_ckpt_file()

    def before_test(self) -> None:
        self._checked_ckpt_file()

    def before_predict(self) -> None:
        self._checked_ckpt_file()

    def _checked_ckpt_file(self) -> str | None:
        """Hand the resolved checkpoint file to the trainer, after refusing one whose weights do not fit the
        configured model (before Lightning loads it)."""
        self.config_init[self.subcommand]["ckpt_path"] = self.ckpt_file
        if self.checkpoint is not None:
            check_weights_fit(self.model, self.checkpoint, self.ckpt_file)
        return self.ckpt_file


def run_folders(config: Namespace) -> tuple[Path, Path]:
    """The run folder ``<runs_root>/<run_name>`` and its checkpoint folder (``checkpoint.dirpath`` if set)."""
    run_dir = Path(config.runs_root) / config.run_name
    return run_dir, Path(config.checkpoint.dirpath or run_dir / "checkpoints")


def _with_default_callbacks(callbacks: list | None, *, log_lr: bool = True) -> list:
    """The configured callbacks plus each file-writing callback (and, with a logger, the learning-rate
    monitor) the config does not list already."""
    callbacks = list(callbacks or [])
    listed = {c.class_path.rsplit(".", 1)[-1] for c in callbacks if getattr(c, "class_path", None)}
    for cls in DEFAULT_CALLBACKS + RESUME_CALLBACKS + ((LearningRateMonitor,) if log_lr else ()):
        if cls.__name__ not in listed:
            callbacks.append(Namespace(class_path=f"{cls.__module__}.{cls.__name__}", init_args=Namespace()))
    return callbacks


# How ``nowcast`` builds its LightningCLI; :mod:`nowcast_pl.config` reads configs with the same settings.
CLI_SETTINGS = {
    "model_class": NowcastTask,
    "datamodule_class": RadarDataModule,
    "subclass_mode_model": True,
    "subclass_mode_data": True,
    "save_config_kwargs": {"overwrite": True},
    "auto_configure_optimizers": False,
}


def build_cli(args: list[str] | None = None, *, run: bool = True) -> NowcastCLI:
    """Build (and by default run) the CLI; ``args`` replaces ``sys.argv[1:]`` (used by tests)."""
    return NowcastCLI(args=args, run=run, **CLI_SETTINGS)


def main(args: list[str] | None = None) -> None:
    """Console entry point. Known input errors print one line (set NOWCAST_DEBUG=1 for the traceback).

    ``nowcast report ...`` runs :mod:`nowcast_pl.report.cli`, ``nowcast forecast ...``
    :mod:`nowcast_pl.forecasting.cli`; every other sub-command is LightningCLI's.
    """
    argv = sys.argv[1:] if args is None else list(args)
    try:
        if argv[:1] == ["report"]:
            from nowcast_pl.report.cli import main as report

            raise SystemExit(report(argv[1:]))
        if argv[:1] == ["forecast"]:
            from nowcast_pl.forecasting.cli import main as forecast

            raise SystemExit(forecast(argv[1:]))
        # LightningCLI reads sys.argv itself; passing it as ``args`` too makes it warn on every command.
        build_cli(None if args is None else argv)
    except USER_ERRORS as err:
        if os.environ.get("NOWCAST_DEBUG"):
            raise
        print(f"nowcast: error: {type(err).__name__}: {error_message(err)}", file=sys.stderr)
        raise SystemExit(2) from None


def error_message(err: BaseException) -> str:
    """The message of a user error, also when a DataLoader worker raised it.

    PyTorch re-raises a worker's exception in the main process with the worker's whole traceback as the message
    (``Caught X in DataLoader worker process N. Original Traceback ... module.X: message``); the original message
    is its last line, after the exception's qualified name.
    """
    message = str(err)
    if "\nOriginal Traceback" not in message:
        return message
    last = message.strip().splitlines()[-1]
    name, sep, original = last.partition(": ")
    return original if sep and name.rsplit(".", 1)[-1] == type(err).__name__ else last


if __name__ == "__main__":
    main()
