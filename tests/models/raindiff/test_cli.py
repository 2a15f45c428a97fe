"""RainDiff/DiffCast through the ``nowcast`` CLI: fit, test an imported official checkpoint with a paper config,
refuse a mismatch."""

import json

import pytest
import torch
import yaml

from nowcast_pl.cli import build_cli, main
from nowcast_pl.convert.cli import main as convert_main
from nowcast_pl.models.raindiff.convert import export_official_names
from nowcast_pl.models.raindiff.network import RainDiffNet
from tests.helpers.cli import write_config

TASK = "nowcast_pl.models.raindiff.RainDiffTask"
TINY = {"dim": 8, "dim_mults": [1, 2], "hid_S": 8, "hid_T": 16, "N_T": 2, "sampling_steps": 2,
        "thresholds": [20.0, 35.0], "warmup_steps": 2}


def _common(tmp_path, config, run):
    return ["--config", str(config), "--runs_root", str(tmp_path / "runs"), "--run_name", run,
            "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1"]


@pytest.mark.parametrize("switches", [{}, {"tokenwise_attention": False, "post_attention": False}])
def test_fit_and_test_through_the_cli(tmp_path, store, switches):
    config = write_config(tmp_path / "c.yaml", store, model=TASK, model_args=TINY | switches,
                          trainer={"max_steps": 3})
    build_cli(["fit", *_common(tmp_path, config, "r")])
    build_cli(["test", *_common(tmp_path, config, "r"), "--ckpt_path", "last"])
    scores = json.loads((tmp_path / "runs/r/test_metrics.json").read_text())
    assert 0.0 <= scores["csi@20dBZ"] <= 1.0


def test_converted_official_checkpoint_is_tested_with_a_paper_config_and_a_mismatch_is_one_line(tmp_path, store,
                                                                                             capsys):
    torch.manual_seed(0)
    net = RainDiffNet(in_frames=4, out_frames=4, dim=8, dim_mults=(1, 2), hid_S=8, hid_T=16, N_T=2,
                      variant="released")
    torch.save({"model": export_official_names(net.state_dict(), "raindiff"), "step": 10}, tmp_path / "off.pt")
    convert_main(["raindiff", str(tmp_path / "off.pt"), str(tmp_path / "converted.ckpt")])
    # A paper config (variant: paper) of another width: the imported checkpoint's architecture applies.
    paper = write_config(tmp_path / "p.yaml", store, model=TASK, model_args=TINY | {"variant": "paper", "dim": 16})
    build_cli(["test", *_common(tmp_path, paper, "imported"), "--ckpt_path", str(tmp_path / "converted.ckpt")])
    assert (tmp_path / "runs/imported/test_metrics.json").exists()
    used = yaml.safe_load((tmp_path / "runs/imported/config.yaml").read_text())["model"]["init_args"]
    assert (used["variant"], used["dim"], used["dim_mults"]) == ("released", 8, [1, 2])
    assert used["thresholds"] == [20.0, 35.0]  # evaluation settings stay the config's
    with pytest.raises(SystemExit):
        main(["test", *_common(tmp_path, paper, "wrong"), "--ckpt_path", str(tmp_path / "converted.ckpt"),
              "--data.init_args.in_frames", "2"])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == (f"nowcast: error: CheckpointError: {tmp_path / 'converted.ckpt'} does not fit the configured "
                     "RainDiffTask: data.init_args.in_frames is 2 in the config but 4 in the checkpoint; set them "
                     "to the checkpoint's values (or use the config it was trained with)")
