"""Shared fixtures: the tiny ``store`` of the CLI tests, ``one_torch_thread``, the real radar samples
(``../shared/radar-samples``) and stores converted from them.

``fmi_sample_store`` (FMI, 2 days x 40 frames, 5 min, dBZ) and ``bom_sample_store`` (BoM radar 66, 144 frames,
10 min, mm) are converted once per session with ``nowcast-prep``'s runner; tests that use them are skipped
with the reason when the samples are absent. Set ``NOWCAST_RADAR_SAMPLES`` to use another copy.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.helpers import REPO
from tests.helpers.stores import write_moving_store

SAMPLES_ENV = "NOWCAST_RADAR_SAMPLES"


def pytest_configure(config) -> None:
    """Under pytest-xdist (``make test`` runs 2 workers on the 2-core development machine) each worker and the
    processes it starts use one intra-op thread: two workers of 2 threads each on 2 cores wait for each other
    (see ``one_torch_thread``)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items) -> None:
    """``make test``'s second part runs the ``multiprocess`` and ``timing`` tests on 2 xdist workers with
    ``--dist loadgroup``: the SLURM test (its jobs sleep in their slowed-down steps most of the time) on one,
    every other one of them on the other, one at a time in file order. Outside xdist the groups do nothing."""
    for item in items:
        if item.get_closest_marker("slurm"):
            item.add_marker(pytest.mark.xdist_group("slurm"))
        elif item.get_closest_marker("multiprocess") or item.get_closest_marker("timing"):
            item.add_marker(pytest.mark.xdist_group("one_at_a_time"))


def radar_samples_dir() -> Path:
    """``$NOWCAST_RADAR_SAMPLES``, else ``<repo>/../shared/radar-samples``."""
    return Path(os.environ.get(SAMPLES_ENV) or REPO.parent / "shared" / "radar-samples")


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> Path:
    """The tiny store most CLI tests run on (6 one-day events of 12 moving 16 x 16 frames); read-only, so one per
    session. A module that needs another store defines its own ``store``."""
    return write_moving_store(tmp_path_factory.mktemp("tiny") / "s.zarr", n_events=6, frames=12, size=16)


@pytest.fixture(scope="session")
def radar_samples() -> Path:
    """Root of the real samples (``radar/fmi/pgm``, ``radar/bom/prcp-c10/66``); skips when absent."""
    root = radar_samples_dir()
    if not (root / "radar").is_dir():
        pytest.skip(f"real radar samples not found at {root} (set {SAMPLES_ENV} to their directory)")
    return root


def _converted(name: str, src: Path, dst: Path) -> Path:
    from data_prep.registry import get_converter
    from data_prep.runner import convert

    convert(get_converter(name)(src), dst, workers=1, progress=False)
    return dst


@pytest.fixture(scope="session")
def fmi_sample_store(radar_samples, tmp_path_factory) -> Path:
    """Store of the FMI samples: 2 events (2016-09-28, 2017-05-09) of 40 frames, 1226 x 760, uint8 dBZ."""
    return _converted("fmi", radar_samples / "radar/fmi/pgm", tmp_path_factory.mktemp("fmi") / "fmi.zarr")


@pytest.fixture(scope="session")
def bom_sample_store(radar_samples, tmp_path_factory) -> Path:
    """Store of the BoM radar 66 samples: 1 event of 144 frames, 512 x 512, int16 mm per 10 min."""
    src = radar_samples / "radar/bom/prcp-c10/66"
    return _converted("bom", src, tmp_path_factory.mktemp("bom") / "bom.zarr")


@pytest.fixture(scope="module", autouse=False)
def one_torch_thread():
    """One intra-op thread here and in spawned processes: on a small shared CPU two threads that wait for each
    other make a tiny model's step 100x slower (3 s instead of 20 ms measured on the 2-core dev machine)."""
    threads, env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    yield
    torch.set_num_threads(threads)
    if env is None:
        os.environ.pop("OMP_NUM_THREADS")
    else:
        os.environ["OMP_NUM_THREADS"] = env
