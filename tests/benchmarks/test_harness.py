"""Benchmark harnesses (``benchmarks/``): argument checks, shared plumbing and one tiny path each, no official code."""

import json
import random
from pathlib import Path

import pytest
import torch

from benchmarks import cost, flops, harness, parity
from benchmarks.pairs import Side
from tests.helpers import REPO


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
    with pytest.raises(SystemExit):
        cost.parse_args(["--model", "raindiff", "--model-arg", "compile_denoiser"])
    assert "--model-arg takes KEY=VALUE" in capsys.readouterr().err
    args = cost.parse_args(["--model", "diffcast", "--model-arg", "compile_denoiser=true"])
    assert args.config == REPO / "configs/diffcast_shanghai.yaml"
    assert args.override == ["--model.init_args.compile_denoiser=true"]


def linear_side(paper_steps: int) -> Side:
    """A model whose forecast is one-off 4 -> 3 product plus one per step (24 FLOPs each) and whose frames
    approach 0.5 as 0.5 + 0.1 / steps."""
    layer, x = torch.nn.Linear(4, 3, bias=False), torch.ones(1, 4)
    steps = {"n": paper_steps}

    def forecast() -> torch.Tensor:
        for _ in range(1 + steps["n"]):
            layer(x)
        return torch.full((1, 2, 1, 4, 4), 0.5 + 0.1 / steps["n"])

    return Side(module=layer, loss=lambda: layer(x).sum(), forecast=forecast,
                set_sampler=lambda sampler, n: steps.update(n=n), sampler=("ddim", paper_steps))


def test_cost_times_training_and_forecast_and_finds_the_fast_sampler(monkeypatch) -> None:
    monkeypatch.setattr(cost, "build", lambda args, side: linear_side(10))
    args = cost.parse_args(["--model", "raindiff", "--steps", "2", "--repeats", "2"])
    train = cost.measure_train(args, "ours")
    assert (train["params"], train["params_without_grad"], len(train["train_step_times_s"])) == (12, 0, 3)
    assert train["train_step_min_s"] <= train["train_step_s"] and train["train_peak_rss_gb"] > 0
    sample = cost.measure_sample(args, "ours")
    assert (sample["sampler"], sample["sample_steps"]) == ("ddim", 10) and sample["sample_min_s"] > 0
    assert sample["fast"]["sample_steps"] == 5 and sample["fast"]["mean_abs_diff"] == pytest.approx(0.01)
    assert "fast" not in cost.measure_sample(args, "official")


def test_cost_builds_the_tiny_stldm_from_its_config() -> None:
    from benchmarks.pairs import stldm

    side = stldm.ours("stldm", REPO / "configs/tiny/stldm.yaml", ["--data.init_args.frame_size=16"])
    side.set_sampler("ddim", 1)
    frames = side.forecast()
    assert frames.shape == (1, side.module.out_frames, 1, 16, 16) and 0 <= frames.min() <= frames.max() <= 1
    assert side.module.sampling.guidance_scale == 1.0


def test_flop_counter_counts_two_per_multiply_add() -> None:
    layer = torch.nn.Linear(4, 3, bias=False)
    assert flops.counted_flops(lambda: layer(torch.ones(2, 4))) == 2 * 2 * 4 * 3


def test_flops_extrapolate_the_forecast_and_count_the_training_step() -> None:
    side = linear_side(250)
    forecast = flops.forecast_cost(side, repeats=1)
    assert (forecast["one_off_flops"], forecast["per_step_flops"]) == (24, 24)
    assert forecast["flops"] == 24 + 250 * 24 and forecast["steps"] == 250
    assert forecast["h100_lower_bound_s"] == pytest.approx(forecast["flops"] / 989e12)
    train = flops.training_cost(side, batch_size=8)
    assert train["flops"] == 24 + 24 and train["flops_config_batch"] == 8 * 48  # forward + weight gradient


def test_flops_refuses_a_config_of_another_task(capsys) -> None:
    with pytest.raises(SystemExit, match="SimVPTask is not one of RainDiffTask, STLDMTask"):
        flops.model_of(REPO / "configs/demo.yaml")
    with pytest.raises(SystemExit):
        flops.parse_args(["--configs", "configs/nowhere.yaml"])
    assert "no such file: " in capsys.readouterr().err
