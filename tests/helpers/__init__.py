"""Code the tests share: tiny CLI configs (``cli``), tiny radar stores (``stores``), tiny raw archives of each
source (``archives``), the scale-out cases (``scaleout``), a local SLURM cluster (``slurm``), a toy diffusion
task (``toy_diffusion``), the modules a fresh interpreter imports (``imports``) and the shipped configs
(``configs``). Shared pytest fixtures live in ``tests/conftest.py``."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
"""The repository root (configs/, benchmarks/, pyproject.toml)."""
