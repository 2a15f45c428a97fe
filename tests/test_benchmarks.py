"""Benchmark harnesses (``benchmarks/``): argument checks, shared plumbing and one tiny path each, no official code."""

import json
import random
from pathlib import Path

import pytest
import torch

from benchmarks import cost, flops, harness, parity

REPO = Path(__file__).resolve().parents[1]
TINY_RAINDIFF = str(REPO / "configs/tiny/raindiff.yaml")


def test_parity_needs_a_model_and_the_official_checkout(capsys) -> None:
    with pytest.raises(SystemExit):
        parity.parse_args(["--model", "raindiff"])
    assert "--official" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parity.parse_args(["--model", "simvp", "--official", "x"])
    assert "invalid choice: 'simvp'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parity.parse_args(["--model", "raindiff", "--official", "x", "--dataset", "sevir"])
    assert "--dataset applies to --model stldm only" in capsys.readouterr().err


def test_parity_with_a_wrong_checkout_names_the_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"--official .*: no stldm/stldm.py there"):
        parity.main(["--model", "stldm", "--official", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"no diffcast.py there"):
        parity.main(["--model", "diffcast", "--official", str(tmp_path)])


def test_comparison_keeps_differences_apart_from_magnitudes() -> None:
    comparison = harness.Comparison()
    comparison.add("unet_call", torch.tensor([1.0, -2.0], dtype=torch.float64),
                   torch.tensor([1.0, -2.00005], dtype=torch.float64))
    comparison.add("loss", torch.tensor(0.5), torch.tensor(0.25))
    result = comparison.result(tolerance=1e-4)
    assert result["max_abs_diff"]["unet_call"] == pytest.approx(5e-5, rel=1e-3)
    assert result["reference_magnitude"] == {"unet_call": pytest.approx(2.00005), "loss": 0.25}
    assert result["max_abs_diff"]["loss"] == 0.25 and result["pass"] is False
    comparison.max_abs_diff.pop("loss")
    assert comparison.result(tolerance=1e-4)["pass"] is True


def test_scripted_randomness_replays_then_restores() -> None:
    first, second = torch.ones(2, 3), torch.full((6,), 2.0)
    with harness.scripted_randomness([first, second], randint=torch.tensor([7]), uniform=0.25):
        assert torch.equal(torch.randn_like(torch.empty(2, 3)), first)
        assert torch.equal(torch.randn_like(torch.empty(2, 3)), torch.full((2, 3), 2.0))  # reshaped
        assert torch.equal(torch.randn_like(torch.empty(2, 3)), torch.zeros(2, 3))  # used up: zeros
        assert torch.randint(0, 10, (1,)).item() == 7 and random.random() == 0.25
    assert torch.randint(0, 10, (1000,)).unique().numel() > 1 and torch.randn(3).abs().sum() > 0


def test_write_result_records_command_and_machine(tmp_path: Path, capsys) -> None:
    output = tmp_path / "results/x.json"
    harness.write_result({"value": 1}, output, module="benchmarks.x", argv=["--flag", "2"])
    written = json.loads(output.read_text())
    assert written["command"] == "python -m benchmarks.x --flag 2" and written["value"] == 1
    assert written["machine"]["cores"] >= 1 and written["machine"]["torch"] == torch.__version__
    assert json.loads(capsys.readouterr().out) == written


def test_cost_refuses_comparisons_without_the_official_code(capsys) -> None:
    with pytest.raises(SystemExit):
        cost.parse_args(["--model", "raindiff", "--what", "train_in_turn"])
    assert "give --official PATH" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cost.parse_args(["--model", "stldm", "--what", "unet", "--official", "x"])
    assert "raindiff and diffcast only" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cost.parse_args(["--model", "stldm", "--config", "configs/stldm_nowhere.yaml"])
    assert "stldm_nowhere.yaml: no such file" in capsys.readouterr().err
    assert cost.parse_args(["--model", "diffcast"]).config == REPO / "configs/diffcast_shanghai.yaml"


def test_cost_tiny_training_step_and_forecast(capsys) -> None:
    common = ["--model", "raindiff", "--config", TINY_RAINDIFF, "--steps", "1", "--sample-steps", "2"]
    train = cost.main([*common, "--worker", "ours:train"])
    assert train["params"] > 0 and train["params_without_grad"] == 0
    assert len(train["train_step_times_s"]) == 2 and train["train_step_s"] > 0 and train["train_peak_rss_gb"] > 0
    sample = cost.main([*common, "--worker", "ours:sample"])
    assert (sample["sampler"], sample["sample_steps"]) == ("ddim", 2) and sample["sample_s"] > 0
    assert sample["fast"] == {"sampler": None, "tolerance": 0.02, "tried": []}  # no DPM-Solver++ count below 2


def test_flop_counter_counts_two_per_multiply_add() -> None:
    layer = torch.nn.Linear(4, 3, bias=False)
    assert flops.counted_flops(lambda: layer(torch.ones(2, 4))) == 2 * 2 * 4 * 3


def test_flops_of_the_tiny_raindiff(tmp_path: Path) -> None:
    result = flops.main(["--configs", TINY_RAINDIFF, "--repeats", "1", "--output", str(tmp_path / "f.json")])
    row = result["configs"][0]
    forecast, train = row["forecast"], row["train_step"]
    assert (row["model"], row["frames"], row["size"], forecast["steps"]) == ("raindiff", "5->10", 32, 5)
    assert forecast["per_step_flops"] > 0 and forecast["one_off_flops"] > 0
    assert forecast["flops"] == forecast["one_off_flops"] + 5 * forecast["per_step_flops"]
    assert forecast["h100_lower_bound_s"] == pytest.approx(forecast["flops"] / 989e12)
    assert train["flops"] > forecast["per_step_flops"] and train["flops_config_batch"] == 8 * train["flops"]
