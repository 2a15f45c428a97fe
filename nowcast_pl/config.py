"""Read a ``nowcast`` configuration exactly as ``nowcast fit`` reads it, without running anything.

``nowcast report`` and the benchmarks read configs only through :func:`read_config`. It parses with the CLI's
own parser (:class:`~nowcast_pl.cli.NowcastCLI`, built with the same settings as ``nowcast``), so
``config:`` includes (jsonargparse's ``--config`` inside a YAML file, e.g. ``configs/raindiff_shanghai.yaml``
including ``configs/data/raindiff_shanghai.yaml``), later files and overrides winning, and the CLI's links
from the data module to the model (``in_frames``, ``out_frames``, ``value_range`` when parsing; ``units`` and
``time_step_minutes`` when the data module is built) resolve as they do for ``nowcast fit``. Nothing is
written and no trainer is built: no run folder, no ``config.yaml``, no checkpoint is looked for.

    config = read_config(["configs/raindiff_shanghai.yaml"], ["--data.init_args.store", "s.zarr"], build=("data",))
    config.config.model.init_args.thresholds, config.datamodule.units
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import ArgumentError, Namespace
from lightning.pytorch import Trainer

from nowcast_pl.cli import CLI_SETTINGS, NowcastCLI

BUILDABLE = ("model", "data")


@dataclass(frozen=True)
class ReadConfig:
    """A configuration as ``nowcast fit`` resolves it.

    Attributes:
        config: the parsed namespace (``model``, ``data``, ``trainer``, ``run_name``, ...), parse-time link
            targets (``model.init_args.in_frames``, ...) filled in.
        printed: what ``nowcast fit ... --print_config`` prints, as a dict (link targets left out), less
            the trainer-method keys (``ckpt_path``, ``weights_only``).
        model: the task, if built (``build`` holds ``"model"``), else None.
        datamodule: the data module, if built (``build`` holds ``"model"`` or ``"data"``), else None.
    """

    config: Namespace
    printed: dict[str, Any]
    model: Any = None
    datamodule: Any = None

    def section(self, key: str) -> str:
        """One printed section as a JSON value for an override, e.g. ``["--data", config.section("data")]``."""
        return json.dumps(self.printed[key])


class _ConfigReader(NowcastCLI):
    """``NowcastCLI`` without a sub-command that stops once the requested classes are built."""

    def __init__(self, args: list[str], build: Collection[str]) -> None:
        self._build = set(build)
        super().__init__(args=args, run=False, parser_kwargs={"exit_on_error": False}, **CLI_SETTINGS)

    def add_arguments_to_parser(self, parser) -> None:
        """The CLI's arguments, plus (ignored) the trainer-method ones a run's ``config.yaml`` holds, e.g.
        ``ckpt_path`` (``nowcast fit``/``test``/``predict`` dump them next to the rest)."""
        super().add_arguments_to_parser(parser)
        self.method_arguments: set[str | int] = set()
        for subcommand, skip in self.subcommands().items():
            added = parser.add_method_arguments(Trainer, subcommand, skip=set(skip) | self.method_arguments)
            self.method_arguments |= set(added)

    def parse_arguments(self, parser, args) -> None:
        # LightningCLI warns when ``args`` is given while sys.argv has arguments (always, under ``nowcast report``).
        self.config = parser.parse_args(args)

    def _set_seed(self) -> None:
        if "model" in self._build:  # the model's initial weights are those ``nowcast fit`` would start from
            super()._set_seed()

    def before_instantiate_classes(self) -> None:
        """Nothing: the run-folder settings of :class:`NowcastCLI` are the trainer's, which is not built."""

    def instantiate_classes(self) -> None:
        self.model = self.datamodule = None
        if not self._build:
            return
        config = self.config.clone()
        if "model" not in self._build:
            config.model = None
        config.trainer.callbacks, config.trainer.logger = None, None  # the trainer's, never built here
        self.config_init = self.parser.instantiate(config)
        self.model, self.datamodule = self.config_init.get("model"), self.config_init.get("data")


def read_config(configs: Sequence[str | Path], overrides: Sequence[str] = (), *,
                build: Collection[str] = BUILDABLE) -> ReadConfig:
    """Parse ``configs`` and ``overrides`` as ``nowcast fit --config C1 --config C2 ... OVERRIDES`` does.

    Args:
        configs: YAML files (or YAML text), applied in order, each as one ``--config``; later ones win.
        overrides: command-line arguments after them, e.g. ``["--data.init_args.store", "s.zarr"]``.
        build: what to instantiate: ``("model", "data")`` (the default; the model needs the data module for
            its ``units`` and ``time_step_minutes``, and the config's ``seed_everything`` is applied first, as
            by ``nowcast fit``), ``("data",)`` or ``()`` (parse only).

    Returns:
        The resolved configuration and what was built.

    Raises:
        ValueError: if ``build`` names something else, or the configuration does not parse (the message names
            the files and jsonargparse's reason).
    """
    if set(build) - set(BUILDABLE):
        raise ValueError(f"read_config: build={tuple(build)}; accepted: subsets of {BUILDABLE}")
    args = [item for path in configs for item in ("--config", str(path))] + list(overrides)
    try:
        reader = _ConfigReader(args, build=("model", "data") if "model" in build else build)
    except ArgumentError as err:
        reason = " ".join(str(err).split())  # one line: ``nowcast report`` prints user errors as one line
        raise ValueError(f"config {' + '.join(map(str, configs)) or '(none)'}: {reason}") from None
    printed = yaml.safe_load(reader.parser.dump(reader.config, skip_unset=False))
    printed = {key: value for key, value in printed.items() if key not in reader.method_arguments}
    return ReadConfig(reader.config, printed, reader.model, reader.datamodule)
