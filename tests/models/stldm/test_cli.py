"""STLDM through the CLI on a tiny store: fit + test, and `nowcast test` of a converted released-layout
checkpoint; the shipped configs parse."""

import json

import pytest
import torch
import yaml

from nowcast_pl.cli import build_cli
from nowcast_pl.models.stldm.convert import export_official, write_checkpoint
from nowcast_pl.models.stldm.task import STLDMTask
from tests.helpers import REPO
from tests.helpers.cli import write_config

CONFIGS = REPO / "configs"
TINY_ARGS = {"latent_channels": 8, "translator_width": 16, "translator_depth": 2, "unet_base": 16,
             "unet_mults": [1, 2], "patch_size": 4, "groups": 4, "heads": 2, "dim_head": 8, "sampling_steps": 2,
             "eval_members": 2, "protocol": "stldm", "warmup_steps": 1, "lr": 1e-3,
             "panel_every_n_val_steps": 0}


def test_fit_then_test_writes_metrics(tmp_path, store):
    config = write_config(tmp_path / "c.yaml", store, model="nowcast_pl.models.stldm.STLDMTask", model_args=TINY_ARGS,
                          trainer={"max_steps": 2, "limit_val_batches": 1, "limit_test_batches": 1})
    common = ["--config", str(config), "--runs_root", str(tmp_path / "runs"), "--run_name", "r"]
    build_cli(["fit", *common])
    build_cli(["test", *common, "--ckpt_path", "last"])
    scores = json.loads((tmp_path / "runs" / "r" / "test_metrics.json").read_text())
    assert 0.0 <= scores["csi@20dBZ"] <= 1.0


def test_converted_released_layout_checkpoint_is_evaluated_and_other_frames_are_refused(tmp_path, store):
    sizes = {k: TINY_ARGS[k] for k in ("latent_channels", "translator_width", "translator_depth", "unet_base",
                                       "unet_mults", "patch_size", "groups", "heads", "dim_head")}
    torch.manual_seed(0)
    task = STLDMTask(in_frames=4, out_frames=4, thresholds=[20.0, 35.0], **sizes)
    official = tmp_path / "official.pt"
    torch.save({"model": export_official(task.net.state_dict())}, official)
    converted = write_checkpoint(official, tmp_path / "converted.ckpt", thresholds=[20.0, 35.0], **sizes)
    config = write_config(tmp_path / "c.yaml", store, model="nowcast_pl.models.stldm.STLDMTask", model_args=TINY_ARGS,
                          trainer={"limit_test_batches": 1})
    common = ["--config", str(config), "--runs_root", str(tmp_path / "runs"), "--run_name", "conv"]
    build_cli(["test", *common, "--ckpt_path", str(converted)])
    assert (tmp_path / "runs" / "conv" / "test_metrics.json").exists()
    with pytest.raises(ValueError, match="data.init_args.in_frames is 3 in the config but 4 in the checkpoint"):
        build_cli(["test", *common, "--ckpt_path", str(converted), "--data.init_args.in_frames", "3"])


@pytest.mark.parametrize("name", ["stldm_sevir", "stldm_hko7", "stldm_meteonet", "tiny/stldm"])
def test_shipped_configs_build_the_paper_model(name):
    config = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    data, model = config["data"]["init_args"], config["model"]["init_args"]
    task = STLDMTask(in_frames=data["in_frames"], out_frames=data["out_frames"], **model)
    assert task.hparams.timesteps == 50 and task.sampling.sampling_steps in (5, 20)
    assert task.sampling.guidance_scale == 1.0
    if not name.startswith("tiny"):
        assert (data["in_frames"], data["out_frames"]) in ((13, 12), (5, 20)) and data["frame_size"] == 128
        assert data["resize_method"] == "bilinear" and data["antialias"] is False and model["eval_members"] == 10
