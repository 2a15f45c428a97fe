"""The real FMI and BoM samples convert, with correct times, physical values, and the importers' values."""

import json

import numpy as np
import pytest
import yaml

from data_prep.operational import pysteps_importer
from data_prep.runner import report_path
from nowcast_pl.data.store import RadarStore
from tests.helpers import REPO


def _frame_path(store: RadarStore, src, pattern: str, index: int):
    return src / store.times[index].astype(object).strftime(pattern)


def test_fmi_two_days_5_minutes_physical_dbz(fmi_sample_store):
    store = RadarStore(fmi_sample_store)
    assert store.attrs["time_step_seconds"] == 300
    assert list(store.event_names) == ["fmi_20160928T144500", "fmi_20170509T104500"]
    assert store.frame_shape == (1226, 760) and len(store) == 80 and store.frame_valid.all()
    assert store.encoding.units == "dBZ" and store.encoding.dtype == "uint8"
    assert "accumulation_minutes" not in store.attrs and store.attrs["pixel_size_m"] == pytest.approx(999.674053)
    for event in range(2):
        times = store.times[store.event == event]
        assert times.size == 40 and np.all(np.diff(times) == np.timedelta64(300, "s"))
    dbz = store.encoding.decode(store.read_raw(30, 40))
    finite = dbz[np.isfinite(dbz)]
    assert -32.0 <= finite.min() and finite.max() <= 95.0
    assert 40.0 < finite.max() < 70.0  # convective cores, not saturated or garbage
    assert 0.05 < np.mean(finite > 10.0) < 0.5  # rain over part of the domain
    assert 0.1 < np.isnan(dbz).mean() < 0.5  # outside radar coverage


def test_fmi_decodes_to_the_pysteps_importer_output(fmi_sample_store, radar_samples):
    store = RadarStore(fmi_sample_store)
    src = radar_samples / "radar/fmi/pgm"
    pattern = "%Y%m%d/%Y%m%d%H%M_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz"
    for index in (0, 33, 79):
        want, _, _ = pysteps_importer("fmi_pgm")(str(_frame_path(store, src, pattern, index)), gzipped=True)
        got = store.encoding.decode(store.read_raw(index, index + 1))[0]
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(got[np.isfinite(got)], want[np.isfinite(want)])


def test_bom_one_day_10_minutes_physical_mm(bom_sample_store):
    store = RadarStore(bom_sample_store)
    assert store.attrs["time_step_seconds"] == 600 and store.attrs["accumulation_minutes"] == 10
    assert len(store) == 144 and len(store.event_names) == 1 and store.frame_valid.all()
    assert np.all(np.diff(store.times) == np.timedelta64(600, "s"))
    assert str(store.times[0]) == "2020-10-31T00:00:00"
    assert store.encoding.units == "mm" and store.encoding.scale_factor == 0.05
    mm = store.encoding.decode(store.read_raw(0, 144))
    assert np.nanmin(mm) == 0.0 and 1.0 < np.nanmax(mm) < 100.0
    assert np.mean(mm > 0) > 0.01
    assert store.attrs["pixel_size_m"] == 500.0


def test_bom_decodes_to_the_pysteps_importer_output(bom_sample_store, radar_samples):
    store = RadarStore(bom_sample_store)
    src = radar_samples / "radar/bom/prcp-c10/66"
    negative = {}
    for index in (0, 106, 143):  # 106 (17:40) holds 7 pixels of raw -2 = -0.1 mm, stored as 0 (reported)
        path = _frame_path(store, src, "%Y/%m/%d/66_%Y%m%d_%H%M%S.prcp-c10.nc", index)
        want, _, meta = pysteps_importer("bom_rf3")(str(path))
        want = np.ma.filled(want, np.nan)
        got = store.encoding.decode(store.read_raw(index, index + 1))[0].astype(np.float64)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got, np.maximum(want, 0.0), rtol=1e-6, atol=1e-6)
        assert meta["accutime"] == 10
        negative[index] = int(np.sum(want < 0))
    assert negative == {0: 0, 106: 7, 143: 0}


@pytest.mark.parametrize("fixture", ["fmi_sample_store", "bom_sample_store"])
def test_sample_conversions_are_clean_and_reported(fixture, request):
    path = request.getfixturevalue(fixture)
    report = json.loads(report_path(path).read_text())
    assert report["summary"]["events_empty"] == 0
    assert report["summary"]["frames_missing"] == 0
    # FMI: the gap between the two days; BoM: a few pixels of -0.1 mm clipped to 0
    assert {e["action"] for e in report["entries"]} <= {"note"}
    assert RadarStore(path).attrs["conversion"]["store_frames"] == report["summary"]["store_frames"]


@pytest.mark.parametrize("name", ["fmi", "bom"])
def test_data_configs_give_windows_on_the_sample_stores(name, request):
    from nowcast_pl.data import RadarDataModule

    config = yaml.safe_load((REPO / "configs" / "data" / f"{name}.yaml").read_text())["data"]["init_args"]
    config["store"] = str(request.getfixturevalue(f"{name}_sample_store"))
    module = RadarDataModule(**{**config, "num_workers": 0})
    for stage in ("fit", "test"):
        module.setup(stage)
    sizes = {split: len(dataset) for split, dataset in module.datasets.items()}
    assert min(sizes.values()) >= 2, sizes
    item = module.datasets["test"][0]
    h, w = config["frame_size"] if isinstance(config["frame_size"], list) else [config["frame_size"]] * 2
    assert item["inputs"].shape == (config["in_frames"], 1, h, w)
    assert item["targets"].shape == (config["out_frames"], 1, h, w)
    assert 0.0 <= float(item["targets"].min()) and float(item["targets"].max()) <= 1.0


@pytest.mark.parametrize(("name", "thresholds"), [("fmi", [20.0, 35.0]), ("bom", [0.1, 1.0])])
def test_a_model_trains_a_few_steps_on_the_sample_stores(name, thresholds, request, tmp_path):
    import torch

    from nowcast_pl.cli import build_cli

    model = {"model": {"class_path": "nowcast_pl.models.simvp.SimVPTask", "init_args": {
        "hid_S": 8, "hid_T": 16, "N_T": 2, "thresholds": thresholds, "lr": 1e-3, "panel_every_n_val_steps": 0}}}
    model_config = tmp_path / "model.yaml"
    model_config.write_text(yaml.safe_dump(model))
    store = request.getfixturevalue(f"{name}_sample_store")
    build_cli(["fit", "--config", str(REPO / "configs" / "data" / f"{name}.yaml"), "--config", str(model_config),
               "--data.init_args.store", str(store), "--data.init_args.num_workers", "0",
               "--data.init_args.batch_size", "2", "--trainer.max_steps", "3", "--trainer.limit_val_batches", "1",
               "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
               "--seed_everything", "0", "--runs_root", str(tmp_path / "runs"), "--run_name", name])
    checkpoint = torch.load(tmp_path / "runs" / name / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 3
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values() if v.is_floating_point())
