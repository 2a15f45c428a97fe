"""EMA of the networks: update/swap arithmetic; evaluation uses the EMA weights and checkpoints keep both."""

import pytest
import torch

from nowcast_pl.cli import build_cli
from nowcast_pl.tasks.ema import ExponentialMovingAverage
from tests.helpers.cli import write_config


def test_ema_update_and_swap_arithmetic():
    weight = torch.tensor([1.0, 2.0])
    ema = ExponentialMovingAverage([("w", weight)], decay=0.9)
    weight += 10.0
    ema.update([("w", weight)])
    torch.testing.assert_close(ema.shadows()["w"], torch.tensor([2.0, 3.0]))
    ema.swap([("w", weight)])
    assert weight.tolist() == [2.0, 3.0] and ema.shadows()["w"].tolist() == [11.0, 12.0]
    with pytest.raises(ValueError, match="ema_decay"):
        ExponentialMovingAverage([], decay=1.0)


def test_evaluation_uses_the_ema_weights_and_checkpoints_keep_both(tmp_path, store):
    cfg = write_config(tmp_path / "c.yaml", store,
                       model_args={"ema_decay": 0.5, "panel_every_n_val_steps": 0},
                       trainer={"max_steps": 4, "limit_val_batches": 1, "val_check_interval": 2})
    common = ["--config", str(cfg), "--runs_root", str(tmp_path / "runs"), "--run_name", "ema"]
    fit = build_cli(["fit", *common])
    raw = {k: v.clone() for k, v in fit.model.net.state_dict().items()}
    state = torch.load(tmp_path / "runs/ema/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    for key, value in raw.items():
        torch.testing.assert_close(state[f"net.{key}"], value)  # trained weights under their own names
    shadow = {k: state[f"ema.net__{k.replace('.', '__')}"] for k in raw}
    assert any(not torch.equal(shadow[k], raw[k]) for k in raw)
    seen = {}

    def capture(batch, batch_idx):
        seen.update({k: v.clone() for k, v in test.model.net.state_dict().items()})

    test = build_cli(common, run=False)
    test.model.on_test_batch_start = capture
    test.trainer.test(test.model, datamodule=test.datamodule, ckpt_path="last")
    for key in raw:
        torch.testing.assert_close(seen[key], shadow[key])
        torch.testing.assert_close(test.model.net.state_dict()[key], raw[key])  # swapped back after test
