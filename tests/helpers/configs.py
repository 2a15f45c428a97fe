"""The configurations shipped under ``configs/`` that the tests run: model configs, and overlays (configs applied
on top of another with a second ``--config``, with no model class of their own)."""

from pathlib import Path

from tests.helpers import REPO

CONFIGS = REPO / "configs"
OVERLAYS = {"distill/demo_raindiff.yaml": "demo_raindiff.yaml"}
"""Overlay → the config it is applied on, both relative to ``configs/``."""


def name(config: Path) -> str:
    """``config`` relative to ``configs/`` (a test id)."""
    return config.relative_to(CONFIGS).as_posix()


def shipped_configs(*, overlays: bool = False) -> list[Path]:
    """Every shipped config but the partial ones (``configs/data/``, ``configs/slurm/``), overlays only if asked."""
    return sorted(p for p in CONFIGS.rglob("*.yaml")
                  if not {"data", "slurm"} & set(p.relative_to(CONFIGS).parts[:-1])
                  and (overlays or name(p) not in OVERLAYS))


def config_files(config: Path) -> list[Path]:
    """The ``--config`` files that make ``config`` whole: its base first for an overlay, else itself."""
    base = OVERLAYS.get(name(config))
    return [CONFIGS / base, config] if base else [config]
