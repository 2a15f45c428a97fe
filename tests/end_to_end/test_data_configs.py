"""The benchmark data configs compose with a model config and fit the stores their converters write."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from data_prep.cikm import CikmConverter
from data_prep.hko7 import Hko7Converter
from data_prep.meteonet import MeteoNetConverter
from data_prep.sevir import SevirConverter
from data_prep.shanghai import ShanghaiConverter
from nowcast_pl.cli import build_cli
from nowcast_pl.data.windows import select_events
from tests.helpers import REPO
from tests.helpers.archives import convert
from tests.helpers.archives.cikm import write_cikm
from tests.helpers.archives.hko7 import write_hko7, write_index
from tests.helpers.archives.meteonet import write_meteonet
from tests.helpers.archives.sevir import write_sevir
from tests.helpers.archives.shanghai import write_h5

CONFIGS = REPO / "configs" / "data"


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """One converted fixture store per dataset (HKO-7 with the rainy-day index prefixes)."""
    raw, out = tmp_path_factory.mktemp("raw"), tmp_path_factory.mktemp("stores")
    for name in ("sevir", "hko7", "meteonet", "cikm"):
        (raw / name).mkdir()
    write_sevir(raw / "sevir")
    write_hko7(raw / "hko7")
    write_index(raw / "hko7")
    write_meteonet(raw / "meteonet")
    write_cikm(raw / "cikm")
    write_h5(raw / "shanghai.h5")
    converters = {
        "sevir": SevirConverter(raw / "sevir"),
        "hko7": Hko7Converter(raw / "hko7", index=["pd/hko7_rainy_train.pkl", "pd/hko7_rainy_test.pkl"]),
        "meteonet": MeteoNetConverter(raw / "meteonet"),
        "shanghai": ShanghaiConverter(raw / "shanghai.h5"),
        "cikm": CikmConverter(raw / "cikm", sample_shape=(6, 3, 8, 8)),
    }
    return {name: convert(c, out / f"{name}.zarr")[0].path for name, c in converters.items()}


def _cli(config: str, store: Path, tmp_path: Path):
    model = {"seed_everything": 0, "model": {"class_path": "nowcast_pl.models.baselines.PersistenceTask",
                                             "init_args": {"thresholds": [20.0], "protocol": "pysteps"}},
             "trainer": {"accelerator": "cpu", "logger": False}}
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(model))
    args = ["--config", str(tmp_path / "model.yaml"), "--config", str(CONFIGS / config),
            "--data.init_args.store", str(store), "--data.init_args.num_workers", "0"]
    return build_cli(args, run=False)


@pytest.mark.parametrize("config, source, frames", [
    ("sevir.yaml", "sevir", (5, 20)), ("sevir_diffcast_test.yaml", "sevir", (5, 20)),
    ("sevir_stldm.yaml", "sevir", (13, 12)), ("hko7.yaml", "hko7", (5, 20)),
    ("meteonet.yaml", "meteonet", (5, 20)), ("shanghai.yaml", "shanghai", (5, 20)), ("cikm.yaml", "cikm", (5, 10)),
])
def test_config_composes_with_a_model_and_links_its_store(config, source, frames, stores, tmp_path):
    cli = _cli(config, stores[source], tmp_path)
    data, model = cli.datamodule, cli.model
    assert (data.in_frames, data.out_frames) == (model.in_frames, model.out_frames) == frames
    expected_resize = "pad" if config == "cikm.yaml" else "bilinear"  # DiffCast zero-pads CIKM 101 -> 128
    assert data.frame_size == (128, 128) and data.resize_method == expected_resize and not data.antialias
    assert model.value_range == data.value_range and model.hparams.units == data.store.encoding.units


@pytest.mark.parametrize("config", ["sevir.yaml", "sevir_diffcast_test.yaml", "sevir_stldm.yaml"])
def test_sevir_splits_follow_the_cut_offs(config, stores, tmp_path):
    data = _cli(config, stores["sevir"], tmp_path).datamodule
    data.setup("fit")
    data.setup("test")
    store, length = data.store, data.in_frames + data.out_frames
    cut = {"sevir_diffcast_test.yaml": "2019-10-01"}.get(config, "2019-06-01")
    test_starts = data.datasets["test"].starts
    # Whole events split by their catalogue time_utc (event_time), as the papers do.
    event_time = store.event_times[store.event]
    assert (event_time[test_starts] > np.datetime64(cut)).all()
    train_cut = np.datetime64("2019-06-01" if config == "sevir_stldm.yaml" else "2019-01-01")
    assert (event_time[data.datasets["train"].starts] <= train_cut).all()
    if config != "sevir_stldm.yaml":  # the fixture has an event that straddles the train cut-off
        assert (store.times[data.datasets["train"].starts + length - 1] > train_cut).any()
    if config == "sevir_stldm.yaml":  # one window per event, at its first frame
        starts = np.r_[0, np.flatnonzero(np.diff(store.event)) + 1]
        assert set(test_starts) <= set(starts)


def test_shanghai_windows_come_from_the_h5_groups(stores, tmp_path):
    data = _cli("shanghai.yaml", stores["shanghai"], tmp_path).datamodule
    data.setup("fit")
    names = data.store.event_names
    assert [names[data.store.event[s]] for s in data.datasets["train"].starts] == ["train/0", "train/1", "train/2"]
    assert [names[data.store.event[s]] for s in data.datasets["val"].starts] == ["test/0", "test/1"]


def test_name_patterns_select_the_official_splits(stores, tmp_path):
    hko = _cli("hko7.yaml", stores["hko7"], tmp_path).datamodule
    names = hko.store.event_names
    assert names[select_events(names, hko.splits["train"])].tolist() == ["hko7_rainy_train/20150111"]
    assert names[select_events(names, hko.splits["test"])].tolist() == ["hko7_rainy_test/20150110"]
    cikm = _cli("cikm.yaml", stores["cikm"], tmp_path).datamodule
    names = np.array(["train/00000", "train/07999", "train/08000", "train/09999", "testA/00001", "testB/01999"])
    chosen = {split: names[select_events(names, cikm.splits[split])].tolist() for split in ("train", "val", "test")}
    assert chosen == {"train": ["train/00000", "train/07999"], "val": ["train/08000", "train/09999"],
                      "test": ["testA/00001", "testB/01999"]}
    stored = cikm.store.event_names
    assert stored[select_events(stored, cikm.splits["test"])].tolist() == ["testA/00000", "testA/00001",
                                                                           "testB/00000"]
