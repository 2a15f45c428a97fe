"""A killed ``nowcast predict`` leaves the previous forecast store readable and identical; a finished one
replaces it; readers refuse a store not marked complete."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from nowcast_pl.data import replace
from nowcast_pl.data.forecast_store import open_forecast, partial_path
from tests.helpers import REPO
from tests.helpers.cli import write_config
from tests.helpers.stores import write_moving_store

KILLS = 2  # random kill moments; each kill restarts `nowcast predict`, so each costs an interpreter start


def _config(tmp_path: Path, store: Path, name: str, predict_after: str) -> Path:
    cfg = write_config(tmp_path / f"{name}.yaml", store, model="nowcast_pl.models.baselines.PersistenceTask")
    config = yaml.safe_load(cfg.read_text())
    config["trainer"]["logger"] = False
    config["data"]["init_args"]["eval_batch_size"] = 1  # one chunk write per batch: a long writing phase
    config["data"]["init_args"]["splits"]["predict"] = {"after": predict_after}
    cfg.write_text(yaml.safe_dump(config))
    return cfg


def _start(cfg: Path, runs: Path, run_name: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "nowcast_pl", "predict", "--config", str(cfg), "--runs_root",
                             str(runs), "--run_name", run_name], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_writing(process: subprocess.Popen, partial: Path) -> float:
    """Block until ``partial`` appears (the run started writing); return that moment."""
    while not partial.exists():
        assert process.poll() is None, process.communicate()[1][-3000:]
        time.sleep(0.001)
    return time.monotonic()


def _files(store: Path) -> dict[str, bytes]:
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()}


def _assert_refused(partial: Path) -> None:
    """A killed run's store is refused by the readers, whether or not it got as far as its metadata."""
    if not (partial / "zarr.json").exists():
        with pytest.raises(FileNotFoundError, match="no forecast store at"):
            open_forecast(partial)
        return
    with pytest.raises(ValueError, match=r"forecast.zarr.partial is not marked complete \(attribute 'complete' is "
                                         r"False\): its `nowcast predict` was interrupted"):
        open_forecast(partial)


@pytest.mark.slow
def test_killing_predict_while_it_writes_keeps_the_previous_forecast(tmp_path):
    store = write_moving_store(tmp_path / "s.zarr", n_events=6, frames=60)
    previous_cfg = _config(tmp_path, store, "previous", "2020-01-04")  # 52 + 53 + 53 windows of events 3..5
    new_cfg = _config(tmp_path, store, "new", "2020-01-05")  # 52 + 53 windows of events 4..5
    runs = tmp_path / "runs"
    target = runs / "p" / "forecast.zarr"
    assert _start(previous_cfg, runs, "p").wait(timeout=300) == 0
    previous = _files(target)
    # A finished run of the new configuration elsewhere: what a completed replacement must hold, and how long
    # the writing lasts on this machine.
    reference = _start(new_cfg, runs, "reference")
    reference_partial = partial_path(runs / "reference" / "forecast.zarr")
    began = _wait_for_writing(reference, reference_partial)
    while reference_partial.exists():
        time.sleep(0.001)
    writing_seconds = time.monotonic() - began
    _, err = reference.communicate(timeout=300)
    assert reference.returncode == 0, err[-3000:]
    expected = open_forecast(runs / "reference" / "forecast.zarr")["forecast"].values
    assert expected.shape[0] == 105 and np.isfinite(expected).all()

    killed_while_writing = 0
    for delay in np.random.default_rng(0).uniform(0.0, writing_seconds, KILLS):
        process = _start(new_cfg, runs, "p")
        began = _wait_for_writing(process, partial_path(target))
        time.sleep(max(0.0, delay - (time.monotonic() - began)))
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
        partial = partial_path(target)
        if process.returncode == -signal.SIGKILL and partial.exists():
            killed_while_writing += 1
            _assert_refused(partial)
        ds = open_forecast(target)  # complete either way: the previous store, or the finished new one
        if _files(target) != previous:
            np.testing.assert_array_equal(ds["forecast"].values, expected)
    assert killed_while_writing >= KILLS // 2

    finished = _start(new_cfg, runs, "p")
    _, err = finished.communicate(timeout=300)
    assert finished.returncode == 0, err[-3000:]
    assert f"nowcast predict: forecast written to {target}" in err.splitlines()
    ds = open_forecast(target)
    np.testing.assert_array_equal(ds["forecast"].values, expected)
    assert ds.attrs["complete"] is True
    assert sorted(p.name for p in target.parent.iterdir()) == ["config.yaml", "forecast.zarr"]


def _directory(path: Path, text: str) -> Path:
    path.mkdir()
    (path / "zarr.json").write_text(text)
    return path


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "rename-aside"])
def test_replace_directory_swaps_in_the_new_store_and_removes_the_old(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(replace, "_exchange", lambda first, second: False)
    new, target = _directory(tmp_path / "f.zarr.partial", "new"), _directory(tmp_path / "f.zarr", "old")
    replace.replace_directory(new, target)
    assert (target / "zarr.json").read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["f.zarr"]


def test_replace_directory_recovers_from_a_kill_between_the_fallback_renames(tmp_path):
    # The rename-aside fallback killed after moving the old store aside: the target is missing for a moment.
    _directory(tmp_path / "f.zarr.old", "old")
    new = _directory(tmp_path / "f.zarr.partial", "new")
    replace.replace_directory(new, tmp_path / "f.zarr")
    assert (tmp_path / "f.zarr/zarr.json").read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["f.zarr"]
