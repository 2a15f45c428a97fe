"""gSTA blocks (``nowcast_pl.layers.gsta``): exact parameter counts of STLDM's translator, drop-path rates and init."""

import math

import pytest
import torch

from nowcast_pl.layers import GSTABlock, GSTATranslator
from nowcast_pl.layers.gsta import drop_path, drop_path_rates


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    ("channels_in", "channels_out", "first", "last", "total"),
    [(160, 1280, 622_432, 5_989_120, 38_606_432), (416, 768, 3_747_424, 5_726_464, 41_468_768)],
    ids=["hko", "sevir"],
)
def test_stldm_gsta_translator_parameter_counts(channels_in, channels_out, first, last, total):
    with torch.device("meta"):
        translator = GSTATranslator(channels_in, 512, channels_out, depth=8)
    per_stage = [n_params(stage) for stage in translator.stages]
    assert per_stage == [first] + [5_332_480] * 6 + [last]
    assert n_params(translator) == total


def test_drop_path_rates_follow_simvp_v2_rule():
    rates = drop_path_rates(8, 0.0)
    assert rates[0] == pytest.approx(1e-2)
    assert rates[-1] == 0.0
    assert all(a > b for a, b in zip(rates, rates[1:], strict=False))
    assert drop_path_rates(4, 0.1) == pytest.approx([0.01, 0.04, 0.07, 0.1])
    translator = GSTATranslator(16, 16, 16, depth=3, drop_path=0.1)
    assert [stage[0].drop_path.rate for stage in translator.stages] == pytest.approx([0.01, 0.055, 0.1])


def test_drop_path_zeroes_whole_samples_and_rescales():
    x = torch.ones(256, 2, 3, 3)
    assert torch.equal(drop_path(x, 0.5, training=False), x)
    torch.manual_seed(0)
    y = drop_path(x, 0.5, training=True)
    per_sample = y.flatten(1)
    assert set(per_sample.unique().tolist()) == {0.0, 2.0}
    assert torch.all(per_sample.min(1).values == per_sample.max(1).values)


def test_gsta_block_init():
    block = GSTABlock(32, mlp_ratio=8.0)
    expand = block.mlp.body[0]  # 1x1, 32 -> 256: fan_out = 256
    assert expand.weight.std().item() == pytest.approx(math.sqrt(2 / 256), rel=0.05)
    assert torch.all(expand.bias == 0)
    assert torch.all(block.layer_scale1 == 1e-2) and torch.all(block.layer_scale2 == 1e-2)
