"""Parameter groups (lr multipliers, no decay for 1-D and layer-scale weights, frozen modules); gradient clipping;
the warm-up + cosine schedule."""

import math

import pytest
import torch

from nowcast_pl.cli import build_cli
from nowcast_pl.models.simvp import SimVPTask
from nowcast_pl.tasks.optim import warmup_cosine
from tests.helpers.cli import write_config


def test_param_groups_lr_multipliers_and_frozen_modules(tmp_path, store):
    task = SimVPTask(in_frames=4, out_frames=4, hid_S=8, hid_T=16, N_S=2, N_T=2, translator="gsta",
                     weight_decay=0.05, lr=1e-3, lr_multipliers={"net.decoder": 0.1},
                     frozen_modules=["net.encoder"], thresholds=[20.0])
    task.configure_model()
    groups = {g["name"]: g for g in task.param_groups()}
    assert set(groups) == {"all/decay", "all/no_decay", "net.decoder/decay", "net.decoder/no_decay"}
    assert groups["net.decoder/decay"]["lr"] == pytest.approx(1e-4) and groups["all/no_decay"]["weight_decay"] == 0
    names = {id(p): n for n, p in task.named_parameters()}
    no_decay = [names[id(p)] for p in groups["all/no_decay"]["params"]]
    assert any("layer_scale" in n for n in no_decay) and all(p.ndim <= 1 or "layer_scale" in names[id(p)]
                                                               for p in groups["all/no_decay"]["params"])
    grouped = {names[id(p)] for g in groups.values() for p in g["params"]}
    assert not any(n.startswith("net.encoder.") for n in grouped)
    with pytest.raises(ValueError, match="frozen_modules: SimVPTask has no sub-module 'vae'"):
        SimVPTask(in_frames=4, out_frames=4, frozen_modules=["vae"], thresholds=[20.0]).configure_model()


def test_frozen_modules_do_not_change_in_training(tmp_path, store):
    cfg = write_config(tmp_path / "c.yaml", store, model_args={"frozen_modules": ["net.encoder"]},
                       trainer={"max_steps": 3, "limit_val_batches": 0})
    args = ["--config", str(cfg), "--runs_root", str(tmp_path / "runs"), "--run_name", "frozen"]
    initial = build_cli(args, run=False).model.state_dict()  # same seed_everything: the initial weights
    build_cli(["fit", *args])
    state = torch.load(tmp_path / "runs/frozen/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    encoder = [k for k in state if k.startswith("net.encoder.")]
    decoder = [k for k in state if k.startswith("net.decoder.") and k.endswith("weight")]
    assert encoder and all(torch.equal(state[k], initial[k]) for k in encoder)  # BN statistics included
    assert any(not torch.equal(state[k], initial[k]) for k in decoder)


def test_gradient_clipping_comes_from_the_model_config(tmp_path, store, monkeypatch):
    norms = []
    original = torch.nn.utils.clip_grad_norm_

    def spy(parameters, max_norm, *args, **kwargs):
        norms.append(max_norm)
        return original(parameters, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    cfg = write_config(tmp_path / "c.yaml", store, model_args={"gradient_clip_norm": 0.25},
                       trainer={"max_steps": 2, "limit_val_batches": 0})
    build_cli(["fit", "--config", str(cfg), "--runs_root", str(tmp_path / "runs"), "--run_name", "clip"])
    assert norms == [0.25, 0.25]


def test_warmup_cosine_values_and_a_total_asked_for_once_at_the_first_decaying_step():
    asked = []
    factor = warmup_cosine(2, 0.1, lambda: asked.append(1) or 12, 0.01, cosine=True)
    assert [factor(0), factor(1), factor(2)] == pytest.approx([0.1, 0.55, 1.0])
    assert asked == []  # warm-up and the schedule's start need no total (nor the trainer's data)
    assert factor(7) == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 5 / 10)))
    assert [factor(12), factor(20)] == pytest.approx([0.01, 0.01])
    assert asked == [1]
    assert warmup_cosine(0, 1.0, 4, 0.0, cosine=False)(3) == 1.0
