"""``python -m benchmarks.gpu_check --smoke``: every measurement of the GPU check runs on CPU and is finite."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

TRAIN_RUNS = ("32-true", "bf16-mixed", "32-true_compiled")


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _check_model(name: str, result: dict) -> None:
    train = result["train"]
    for run in TRAIN_RUNS:
        assert train[run]["s_per_step"] > 0, (name, run, train[run])
        assert _finite(train[run]["peak_memory_gib"]) and train[run]["peak_memory_gib"] > 0, (name, run)
    assert _finite(train["compile_speedup"]) and _finite(train["bf16_speedup"]), (name, train)
    sample = result["sample"]
    assert sample["paper"]["s_per_forecast"] > 0 and sample["paper"]["steps"] == 2, (name, sample)
    assert sample["fast_search"], (name, sample)
    for entry in sample["fast_search"]:
        assert _finite(entry["mean_abs_diff"]) and entry["s_per_forecast"] > 0, (name, entry)
    assert _finite(sample["fast"]["speedup_vs_paper"]), (name, sample)
    if result["task"] == "RainDiffTask":
        assert _finite(sample["compiled"]["speedup_vs_eager"]), (name, sample["compiled"])
    else:
        assert "no compile_denoiser" in sample["compiled"]["skipped"], (name, sample["compiled"])


def _run(tmp_path: Path, *args: str) -> dict:
    output = tmp_path / "gpu_check.json"
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    command = [sys.executable, "-m", "benchmarks.gpu_check", "--smoke", *args, "--output", str(output)]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(output.read_text())


def test_gpu_check_budget_skips_and_says_why(tmp_path: Path) -> None:
    result = _run(tmp_path, "--models", "stldm", "--budget-s", "0")
    train = result["models"]["stldm"]["train"]
    assert all(train[run]["skipped"].startswith("budget: ") for run in TRAIN_RUNS)
    assert result["models"]["stldm"]["sample"]["skipped"].startswith("budget: ")
    assert result["ddp"]["skipped"].startswith("budget: ")


@pytest.mark.slow
def test_gpu_check_smoke(tmp_path: Path) -> None:
    result = _run(tmp_path, "--models", "diffcast", "stldm")
    assert result["smoke"] and result["machine"]["torch"] and result["accelerator"]["device"]
    assert result["command"].startswith("python -m benchmarks.gpu_check --smoke")
    assert set(result["models"]) == {"diffcast", "stldm"}
    for name, model in result["models"].items():
        _check_model(name, model)
    ddp = result["ddp"]
    assert [run["devices"] for run in ddp["runs"]] == [1, 2], ddp
    assert all(run["samples_per_s"] > 0 for run in ddp["runs"]) and _finite(ddp["speedup_vs_1"]), ddp
    assert any("nowcast_pl fit" in c and "--trainer.strategy ddp" in c for c in result["commands"])
    assert any(c.startswith("build_cli(run=False)") for c in result["commands"])
