"""``nowcast report``: tables, figures and GIFs from two tiny runs, a baseline config and a forecast store."""

import csv
import json
import math

import pytest
from PIL import Image

from nowcast_pl.cli import build_cli, main
from nowcast_pl.report.cli import main as report_main
from tests.helpers.cli import write_config
from tests.helpers.stores import write_moving_store

TOY = "tests.helpers.toy_diffusion.ToyDiffusionTask"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny trained runs (SimVP, toy diffusion) and a persistence config over one 16 x 16 store."""
    root = tmp_path_factory.mktemp("report")
    store = write_moving_store(root / "s.zarr", n_events=6, frames=12, size=16)
    simvp = write_config(root / "simvp.yaml", store)
    toy = write_config(root / "toy.yaml", store, model=TOY,
                       model_args={"sampling_steps": 3, "lr": 1e-3, "panel_every_n_val_steps": 0})
    persistence = write_config(root / "persistence.yaml", store, model="nowcast_pl.models.baselines.PersistenceTask")
    for name, config in (("simvp", simvp), ("toy", toy)):
        build_cli(["fit", "--config", str(config), "--runs_root", str(root / "runs"), "--run_name", name,
                   "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1"])
    build_cli(["predict", "--config", str(toy), "--runs_root", str(root / "runs"), "--run_name", "toy",
               "--ckpt_path", "last", "--model.init_args.predict_members", "3"])
    return root, simvp, persistence


def test_report_scores_runs_baselines_and_stores_into_tables_figures_and_gifs(runs, capsys):
    root, simvp, persistence = runs
    out = root / "report"
    status = report_main(["--config", str(simvp), "--source", f"toy={root / 'runs/toy'}",
                          "--source", f"simvp={root / 'runs/simvp/checkpoints/last.ckpt'}",
                          "--source", f"persistence={persistence}",
                          "--source", f"toy_store={root / 'runs/toy/forecast.zarr'}",
                          "--split", "predict", "--members", "3", "--output", str(out),
                          "--require-beat", "toy_store"])
    printed = capsys.readouterr().out
    scores = {name: json.loads((out / "scores" / f"{name}.json").read_text())
              for name in ("toy", "simvp", "persistence", "toy_store")}
    # The stored forecast is the toy run's predict output: same seeds, same windows → same scores.
    assert scores["toy_store"]["csi@20dBZ"] == pytest.approx(scores["toy"]["csi@20dBZ"], abs=1e-6)
    assert scores["toy_store"]["crps"] == pytest.approx(scores["toy"]["crps"], rel=1e-4)
    assert status == 1 and "toy does NOT beat toy_store" in printed  # a tie is not a win
    lines = {line.split()[0]: line for line in printed.splitlines() if " s per forecast, CRPS " in line}
    assert set(lines) == {"toy", "simvp", "persistence", "toy_store"}
    assert "  toy          3 members, ddim, 3 steps: " in lines["toy"]  # names padded to the longest, toy_store
    assert "1 member, SimVPTask: " in lines["simvp"] and "forecast store forecast.zarr" in lines["toy_store"]
    crps = json.loads((out / "intervals.json").read_text())["intervals"]["toy"]["crps"]
    assert f"CRPS {scores['toy']['crps']:.3f} [{crps[0]:.3f}, {crps[1]:.3f}] dBZ" in lines["toy"]
    assert "rank_hist/bin_03" in scores["toy"] and "rank_hist/bin_00" not in scores["simvp"]
    assert scores["persistence"]["crps"] == scores["persistence"]["mae"] > 0  # one member: CRPS = MAE
    assert math.isfinite(scores["simvp"]["fss@20dBZ/s4/lead_04"])
    rows = list(csv.DictReader((out / "table.csv").open()))
    assert len(rows) == 4 * 2 * 5  # sources x thresholds x (all + 4 lead times)
    row = next(r for r in rows if r["source"] == "persistence" and r["threshold"] == "35 dBZ"
               and r["lead_time_min"] == "10")
    assert float(row["csi"]) == pytest.approx(scores["persistence"]["csi@35dBZ/lead_02"])
    assert float(row["csi_lo"]) <= float(row["csi"]) <= float(row["csi_hi"])
    intervals = json.loads((out / "intervals.json").read_text())
    assert (intervals["seed"], intervals["resamples"], intervals["events"]) == (0, 1000, ["ev004", "ev005"])
    assert [float(row["crps_lo"]), float(row["crps_hi"])] == intervals["intervals"]["persistence"]["crps/lead_02"]
    # The same forecasts: every paired difference is 0, printed as not significant.
    assert intervals["differences"]["toy - toy_store"]["csi@20dBZ"] == [0.0, 0.0, 0.0]
    assert "(worse, +0.000 [+0.000, +0.000], not significant)" in printed
    markdown = (out / "report.md").read_text()
    assert "## CSI at 20dBZ by lead time" in markdown and "| persistence | 1 |" in markdown
    for name in ("csi_by_lead", "hss_by_lead", "fss_by_lead", "crps_by_lead", "rank_histogram", "reliability"):
        assert (out / f"{name}.png").stat().st_size > 5_000
    gif = Image.open(out / "panel_toy.gif")
    assert gif.n_frames == 4 and gif.size[0] > 4 * 100  # observed, 3 members, mean; one frame per lead
    assert Image.open(out / "panel_persistence.gif").n_frames == 4


def test_report_is_a_nowcast_subcommand_with_one_line_errors(runs, capsys):
    root, simvp, _ = runs
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "--config", str(simvp), "--source", f"x={root / 'missing'}", "--output", str(root / "r")])
    assert exit_info.value.code == 2
    assert "report source x:" in capsys.readouterr().err


def test_validation_logs_ensemble_figures_and_the_learning_rate(runs):
    import torch
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from nowcast_pl.metrics import build_metrics, flatten_scores
    from nowcast_pl.models.baselines import PersistenceTask

    root, _, _ = runs
    events = EventAccumulator(str(root / "runs/toy")).Reload()
    assert any(tag.startswith("lr-AdamW") for tag in events.Tags()["scalars"])
    metrics = build_metrics("pysteps", thresholds=[20.0], lead_times=4, unit="dBZ", data_range=70.0, members=3)
    generator = torch.Generator().manual_seed(0)
    metrics.update(torch.rand(2, 3, 4, 1, 8, 8, generator=generator) * 60,
                   torch.rand(2, 4, 1, 8, 8, generator=generator) * 60)
    scores = {k: float(v) for k, v in flatten_scores(metrics.compute()).items()}
    task = PersistenceTask(in_frames=4, out_frames=4, value_range=(-10.0, 60.0), units="dBZ", thresholds=[20.0])
    logged = {}
    task._experiment = lambda: type("Experiment", (), {"add_figure": lambda self, tag, fig, global_step: logged
                                                       .__setitem__(tag, fig)})()
    task._log_curves(scores, "val")
    assert {"val/csi_by_lead", "val/rank_histogram", "val/reliability", "val/crps_by_lead",
            "val/fss_by_lead"} <= set(logged)
    ranks = logged["val/rank_histogram"].axes[0].patches
    assert len(ranks) == 4 and abs(sum(p.get_height() for p in ranks) - 1.0) < 1e-6


def test_report_loads_a_run_folder_written_before_the_model_folders(runs):
    import shutil

    import torch

    root, simvp, _ = runs
    old = root / "runs/simvp_before_move"
    shutil.copytree(root / "runs/simvp", old)
    config = old / "config.yaml"
    text = config.read_text()
    assert "class_path: nowcast_pl.models.simvp.SimVPTask" in text
    config.write_text(text.replace("nowcast_pl.models.simvp.SimVPTask", "nowcast_pl.tasks.SimVPTask"))
    checkpoint = torch.load(old / "checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    assert "_instantiator" in checkpoint["hyper_parameters"]  # Lightning then checks that `_class_path` imports
    checkpoint["hyper_parameters"]["_class_path"] = "nowcast_pl.tasks.simvp.SimVPTask"
    torch.save(checkpoint, old / "checkpoints/last.ckpt")
    out = root / "report_before_move"
    report_main(["--config", str(simvp), "--source", f"old={old}", "--source", f"new={root / 'runs/simvp'}",
                 "--split", "predict", "--output", str(out)])
    scores = {name: json.loads((out / "scores" / f"{name}.json").read_text()) for name in ("old", "new")}
    assert scores["old"] == scores["new"]


def test_load_source_takes_run_time_settings_in_place_of_the_run_configs(runs):
    from nowcast_pl.config import read_config
    from nowcast_pl.report.sources import EvaluationSettings, load_source

    root, simvp, persistence = runs
    report = read_config([simvp], build=("data",))
    settings = EvaluationSettings(protocol="pysteps", thresholds=(20.0,), members=2)
    toy = root / "runs/toy"
    assert load_source("toy", toy, report, settings).task.sampling.sampling_steps == 3  # the run's config
    source = load_source("toy", toy, report, settings, runtime={"sampler": "dpmpp_2m", "sampling_steps": 5})
    assert (source.task.sampling.sampler, source.task.sampling.sampling_steps) == ("dpmpp_2m", 5)
    with pytest.raises(ValueError, match=r"report source toy: ToyDiffusionTask has no run-time setting \['lr'\]"):
        load_source("toy", toy, report, settings, runtime={"lr": 1.0})
    with pytest.raises(ValueError, match=r"report source p: run-time settings \['sampling_steps'\] apply to a "
                                         r"trained model"):
        load_source("p", persistence, report, settings, runtime={"sampling_steps": 5})
