"""Operational baselines: Lagrangian extrapolation and STEPS (pysteps), through the task API and `nowcast test`."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nowcast_pl.cli import build_cli, main
from nowcast_pl.metrics import build_metrics, flatten_scores
from nowcast_pl.models.baselines import ExtrapolationTask, PersistenceTask, StepsTask
from nowcast_pl.models.baselines.steps import row_seeds
from tests.helpers import REPO
from tests.helpers.cli import write_config

TASK_ARGS = {"in_frames": 4, "out_frames": 6, "value_range": (-10.0, 60.0), "units": "dBZ",
             "time_step_minutes": 5.0, "thresholds": [20.0, 35.0], "protocol": "earthformer"}


def advected_cells(size: int = 32, frames: int = 10, speed: int = 2, seed: int = 0) -> torch.Tensor:
    """(2, frames, 1, size, size) in [0, 1]: blocky rain cells (−20…50 dBZ) moving ``speed`` px per frame along x."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(2):
        cells = np.kron(rng.random((size // 4 + frames, size // 4 + frames)), np.ones((4, 4))) * 70 - 20
        rows.append(np.stack([np.roll(cells, t * speed, axis=1)[:size, :size] for t in range(frames)]))
    return torch.from_numpy((np.clip(np.stack(rows), -10, 60) + 10) / 70).float()[:, :, None]


@pytest.mark.parametrize("task", [ExtrapolationTask, StepsTask])
def test_units_without_a_rain_rate_conversion_are_one_clear_error(task):
    with pytest.raises(ValueError, match=r"converts the store's units to rain rate, but units='K' are not "
                                         r"reflectivity \(dBZ\), a rain rate"):
        task(**(TASK_ARGS | {"units": "K"}))


def test_extrapolation_beats_persistence_on_advected_cells():
    frames = advected_cells()
    inputs, truth = frames[:, :4], frames[:, 4:]
    extrapolated = ExtrapolationTask(**TASK_ARGS).forecast(inputs)
    persisted = PersistenceTask(**TASK_ARGS).forecast(inputs)
    assert extrapolated.shape == truth.shape and extrapolated.dtype == torch.float32
    # away from the inflow edge (2 px per frame from the left), the advected field is the truth
    inner = (..., slice(None), slice(14, None))
    extrapolation_error = (extrapolated - truth)[inner].abs().mean()
    persistence_error = (persisted - truth)[inner].abs().mean()
    assert extrapolation_error < 0.25 * persistence_error, (extrapolation_error, persistence_error)


def test_steps_members_differ_and_are_reproducible_per_generator():
    frames = advected_cells(seed=1)
    inputs = frames[:1, :4].expand(3, -1, -1, -1, -1)
    task = StepsTask(cascade_levels=4, **TASK_ARGS)
    first = task.forecast_rows(inputs, [torch.Generator().manual_seed(s) for s in (1, 2, 3)])
    again = task.forecast_rows(inputs[:2], [torch.Generator().manual_seed(s) for s in (1, 2)])
    assert first.shape == (3, 6, 1, 32, 32) and 0.0 <= first.min() and first.max() <= 1.0
    torch.testing.assert_close(again, first[:2], rtol=0, atol=0)  # independent of the batch's other rows
    spread = (first[0] - first[1]).abs().mean()
    assert spread > 0.01 and (first[1] - first[2]).abs().mean() > 0.01
    error = (first - frames[:1, 4:]).abs().mean()
    persistence_error = (frames[:1, 3:4] - frames[:1, 4:]).abs().mean()
    assert error < persistence_error  # a skilful ensemble on advected cells, not noise
    ensemble = task.sample_members(inputs[:1], 2, windows=torch.tensor([5]))
    torch.testing.assert_close(task.sample_members(inputs[:1], 2, windows=torch.tensor([5])), ensemble, rtol=0, atol=0)
    assert (ensemble[0, 0] - ensemble[0, 1]).abs().mean() > 0.01  # members of a window are seeded apart


def test_a_steps_ensemble_scored_with_ensemble_metrics_beats_persistence():
    frames = advected_cells(seed=2)
    members = 4
    inputs = frames[:, :4].repeat_interleave(members, dim=0)
    generators = [torch.Generator().manual_seed(seed) for seed in range(inputs.shape[0])]
    ensemble = StepsTask(cascade_levels=4, **TASK_ARGS).forecast_rows(inputs, generators)
    ensemble = ensemble.view(2, members, *ensemble.shape[1:]) * 70 - 10  # (B, N, T, 1, H, W) in dBZ
    truth = frames[:, 4:] * 70 - 10
    metrics = build_metrics("pysteps", thresholds=(20.0, 35.0), lead_times=6, unit="dBZ", data_range=70.0,
                            members=members)
    metrics.update(ensemble, truth)
    scores = flatten_scores(metrics.compute())
    persistence_mae = (frames[:, 3:4] - frames[:, 4:]).abs().mean().item() * 70
    assert scores["crps"] < 0.7 * persistence_mae and scores["crps_fair"] < scores["crps"]
    assert 0.0 < scores["spread_skill"] < 2.0 and 0.5 < scores["roc_auc@20dBZ"] <= 1.0
    assert scores["fss_ens@20dBZ/s4"] > 0.5


def test_steps_row_seeds_come_from_the_generators_and_no_rain_gives_no_echo():
    seeds = row_seeds([torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)])
    assert seeds[0] == seeds[1] and 0 <= seeds[0] < 2**31 - 1
    dry = torch.zeros(2, 4, 1, 16, 16)
    out = StepsTask(cascade_levels=3, **TASK_ARGS).forecast_rows(dry, [torch.Generator() for _ in range(2)])
    assert torch.equal(out, torch.zeros(2, 6, 1, 16, 16))
    with pytest.raises(ValueError, match="in_frames >= 3"):
        StepsTask(**(TASK_ARGS | {"in_frames": 2}))


@pytest.mark.parametrize(("model", "extra"), [("nowcast_pl.models.baselines.ExtrapolationTask", {}),
                                              ("nowcast_pl.models.baselines.StepsTask", {"cascade_levels": 3})])
def test_baselines_run_through_nowcast_test(tmp_path, store, model, extra):
    cfg = write_config(tmp_path / "c.yaml", store, model=model, model_args=extra)
    build_cli(["test", "--config", str(cfg), "--runs_root", str(tmp_path / "runs"), "--run_name", "b"])
    scores = json.loads((tmp_path / "runs" / "b" / "test_metrics.json").read_text())
    assert {"csi@20dBZ", "csi@35dBZ/lead_04", "mse"} <= set(scores)
    assert 0.0 <= scores["csi@20dBZ"] <= 1.0 and np.isfinite(scores["mse"])


def test_fitting_a_baseline_is_a_clear_error(tmp_path, store, capsys):
    cfg = write_config(tmp_path / "c.yaml", store, model="nowcast_pl.models.baselines.StepsTask")
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(cfg), "--runs_root", str(tmp_path / "runs")])
    assert "StepsTask has nothing to fit" in capsys.readouterr().err


# BoM: the data config's test split (20-24 UTC) is nearly dry; test on the rain of 04-10 UTC instead.
SAMPLE_SPLITS = {"fmi": None, "bom": {"test": {"after": "2020-10-31T04:00:00", "until": "2020-10-31T10:00:00",
                                               "stride": 6}}}


def _test_on_sample_store(config: str, name: str, store: Path, thresholds: list[float], runs: Path) -> dict:
    run = f"{Path(config).stem}-{name}"
    splits = SAMPLE_SPLITS[name]
    build_cli(["test", "--config", str(REPO / "configs" / config),
               "--config", str(REPO / "configs" / "data" / f"{name}.yaml"),
               "--data.init_args.store", str(store), "--data.init_args.num_workers", "0",
               *(["--data.init_args.splits", json.dumps(splits)] if splits else []),
               "--model.init_args.thresholds", json.dumps(thresholds), "--model.init_args.protocol", "pysteps",
               "--model.init_args.panel_every_n_val_steps", "0", "--trainer.limit_test_batches", "1",
               "--data.init_args.eval_batch_size", "2",
               "--runs_root", str(runs), "--run_name", run])
    return json.loads((runs / run / "test_metrics.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize(("name", "thresholds"), [("fmi", [20.0, 35.0]), ("bom", [0.1, 1.0])])
def test_baseline_configs_test_on_the_sample_stores(name, thresholds, request, tmp_path):
    store = request.getfixturevalue(f"{name}_sample_store")
    scores = {config: _test_on_sample_store(config, name, store, thresholds, tmp_path / "runs")
              for config in ("demo_persistence.yaml", "baselines/extrapolation.yaml", "baselines/steps.yaml")}
    label = f"{thresholds[0]:g}{'dBZ' if name == 'fmi' else 'mm'}"
    for config, values in scores.items():
        assert 0.0 < values[f"csi@{label}/lead_01"] <= 1.0 and np.isfinite(values["mse"]), config
        assert {"fss@" + label + "/s4", "hss@" + label} <= set(values), config
    persistence, extrapolation = scores["demo_persistence.yaml"], scores["baselines/extrapolation.yaml"]
    assert extrapolation["mse"] < persistence["mse"] and extrapolation[f"csi@{label}"] > persistence[f"csi@{label}"]
