"""``benchmarks/forecast_latency.py`` on a tiny grid with a tiny model: stages, network calls, the sampler it
takes from the cost results, and its argument checks."""

import json

import pytest

from benchmarks import forecast_latency
from benchmarks.forecast_latency import STAGES, main, recorded_sampler


def test_tiny_forecast_is_timed_per_stage(tmp_path, capsys):
    output = tmp_path / "latency.json"
    result = main(["--tiny", "--models", "stldm", "--size", "32", "--leads", "2", "--members", "2",
                   "--tile-batch", "1", "--sampling-steps", "1", "--in-process", "--output", str(output)])
    assert json.loads(output.read_text()) == json.loads(capsys.readouterr().out)
    assert result["settings"] | {"size": [32, 32], "leads": 2, "members": 2, "configs": "tiny"} == result["settings"]
    row = result["models"][0]
    assert set(row["seconds"]) == set(STAGES) and all(s >= 0 for s in row["seconds"].values())
    assert row["seconds"]["network"] > 0 and sum(row["seconds"].values()) <= row["total_s"]
    # one 32 x 32 tile (the tiny model's frame size) per member, one tile per network call
    assert row["tile"] == [32, 32] and row["network_calls"] == 2
    assert row["leads"] == 2 and row["in_frames"] == 5
    assert row["sampler_used"]["sampling_steps"] == 1 and row["sampler"]["source"] == "--sampler / --sampling-steps"
    assert row["peak_rss_gb"] >= row["peak_rss_gb_before_forecast"] > 0 and row["output_mb"] > 0
    assert result["command"].startswith("python -m benchmarks.forecast_latency --tiny")


def test_a_checkpoint_is_timed_with_its_own_settings_and_labelled_so(tmp_path, capsys):
    from benchmarks.harness import REPO, config_sections
    from nowcast_pl.forecasting import load_forecaster

    config = REPO / forecast_latency.MODELS["stldm"][1]
    checkpoint = forecast_latency.write_checkpoint(config, config_sections(config)[1], 3, tmp_path)
    result = main(["--models", "stldm", "--checkpoint", str(checkpoint), "--size", "32", "--members", "1",
                   "--in-process"])
    capsys.readouterr()
    assert (result["settings"]["configs"], result["settings"]["leads"]) == ("--checkpoint", "the checkpoint's")
    row = result["models"][0]
    assert row["config"] == "the checkpoint's" and row["checkpoint"] == str(checkpoint) and row["leads"] == 3
    assert row["sampler"]["source"].startswith("nowcast forecast's default")
    default = load_forecaster(checkpoint).sampling
    assert row["sampler_used"] == {"sampler": default.sampler, "sampling_steps": default.sampling_steps}


def test_sampler_is_the_fastest_recorded_within_two_percent(tmp_path, monkeypatch):
    monkeypatch.setitem(forecast_latency.MODELS, "raindiff", ("", "", "cost.json"))
    assert recorded_sampler("raindiff", tmp_path) is None
    fast = {"sampler": "dpmpp_2m", "sample_steps": 8, "mean_abs_diff_vs_ddim250": 0.004}
    (tmp_path / "cost.json").write_text(json.dumps({"fast": fast}))
    recorded = recorded_sampler("raindiff", tmp_path)
    assert (recorded["sampler"], recorded["sampling_steps"]) == ("dpmpp_2m", 8) and "0.0040" in recorded["source"]
    (tmp_path / "cost.json").write_text(json.dumps({"fast": fast | {"mean_abs_diff_vs_ddim250": 0.03}}))
    assert recorded_sampler("raindiff", tmp_path) is None


def test_checkpoint_with_several_models_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--checkpoint", str(tmp_path / "a.ckpt"), "--models", "raindiff", "stldm"])
    assert "--checkpoint times one model" in capsys.readouterr().err
