"""``read_config`` reads every shipped config as ``nowcast fit`` does, and ``nowcast report`` follows includes."""

import contextlib
import io
import json

import pytest
import yaml

from nowcast_pl.cli import build_cli, main
from nowcast_pl.config import read_config
from tests.helpers import REPO
from tests.helpers.configs import config_files, name, shipped_configs
from tests.helpers.stores import write_moving_store

# LightningCLI configs: everything under configs/ except the data fragments (included by the others) and SLURM.
SHIPPED = shipped_configs(overlays=True)
METHOD_KEYS = ("ckpt_path", "weights_only")  # `fit`'s own arguments, which read_config leaves out


def _fit_print_config(*args: str) -> dict:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), pytest.raises(SystemExit):
        build_cli(["fit", *args, "--print_config"])
    return {k: v for k, v in yaml.safe_load(printed.getvalue()).items() if k not in METHOD_KEYS}


def test_the_shipped_configs_include_data_configs():
    assert len(SHIPPED) >= 15
    assert "config" in yaml.safe_load((REPO / "configs/raindiff_shanghai.yaml").read_text())


@pytest.mark.parametrize("config", SHIPPED, ids=name)
def test_every_shipped_config_resolves_as_nowcast_fit_resolves_it(config):
    files = config_files(config)  # an overlay on top of its base
    read = read_config(files, build=())
    assert read.printed == _fit_print_config(*(item for path in files for item in ("--config", str(path))))
    model, data = read.config.model.init_args, read.config.data.init_args
    assert (model.in_frames, model.out_frames, tuple(model.value_range)) == (
        data.in_frames, data.out_frames, tuple(data.value_range))  # the CLI's parse-time links


def test_several_configs_and_overrides_compose_as_in_nowcast_fit():
    configs = [REPO / "configs/raindiff_shanghai.yaml", REPO / "configs/data/sevir.yaml"]
    overrides = ["--data.init_args.batch_size", "2", "--model.init_args.sampling_steps", "7"]
    read = read_config(configs, overrides, build=())
    assert read.printed == _fit_print_config(*(a for c in configs for a in ("--config", str(c))), *overrides)
    assert read.config.data.init_args.batch_size == 2 and read.config.model.init_args.sampling_steps == 7
    # the include's thresholds (configs/data/raindiff_shanghai.yaml), the last config's frames (SEVIR)
    assert read.config.model.init_args.thresholds == [20.0, 30.0, 35.0, 40.0]
    assert read.config.model.init_args.in_frames == read.config.data.init_args.in_frames


@pytest.fixture(scope="module")
def included(tmp_path_factory):
    """A tiny persistence config whose data section, thresholds and protocol come from an included file."""
    root = tmp_path_factory.mktemp("config")
    store = write_moving_store(root / "s.zarr", n_events=6, frames=12, size=16)
    data = {"model": {"init_args": {"thresholds": [20.0, 35.0], "protocol": "pysteps"}},
            "data": {"class_path": "nowcast_pl.data.RadarDataModule", "init_args": {
                "store": str(store), "in_frames": 4, "out_frames": 4, "value_range": [-10.0, 60.0],
                "frame_size": 16, "batch_size": 2, "splits": {"test": {"after": "2020-01-05"}}}}}
    (root / "data").mkdir()
    (root / "data/tiny.yaml").write_text(yaml.safe_dump(data))
    (root / "persistence.yaml").write_text("seed_everything: 0\nmodel:\n  class_path: "
                                           "nowcast_pl.models.baselines.PersistenceTask\nconfig: data/tiny.yaml\n")
    return root


def test_read_config_builds_the_linked_model_and_writes_nothing(included, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    read = read_config([included / "persistence.yaml"])
    assert read.model.hparams.units == "dBZ" == read.datamodule.units  # linked when the data module is built
    assert (read.model.in_frames, read.model.out_frames) == (4, 4)
    assert read.model.hparams.thresholds == [20.0, 35.0]
    assert read_config([included / "persistence.yaml"], build=("data",)).model is None
    assert list(tmp_path.iterdir()) == []  # no run folder, no config.yaml
    # No sub-command: the CLI's checkpoint guards (`fit` refusing a run folder with checkpoints) stay out of it.
    (tmp_path / "runs/old/checkpoints").mkdir(parents=True)
    (tmp_path / "runs/old/checkpoints/last.ckpt").write_bytes(b"")
    assert read_config([included / "persistence.yaml"], ["--run_name", "old"], build=("data",)).datamodule
    with pytest.raises(ValueError, match=r"persistence.yaml.*nonsense"):
        read_config([included / "persistence.yaml"], ["--model.init_args.nonsense", "1"], build=())


def test_nowcast_report_follows_config_includes(included, capsys):
    out = included / "report"
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "--config", str(included / "persistence.yaml"), "--source",
              f"persistence={included / 'persistence.yaml'}", "--members", "1", "--output", str(out),
              "--data.init_args.eval_batch_size", "3"])
    assert exit_info.value.code == 0, capsys.readouterr().err
    scores = json.loads((out / "scores/persistence.json").read_text())
    assert {"csi@20dBZ", "csi@35dBZ"} <= set(scores) and scores["mae"] > 0
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "--config", str(included / "persistence.yaml"), "--source", "x=y.zarr",
              "--data.init_args.nonsense", "1"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("nowcast: error: ValueError: config ")
