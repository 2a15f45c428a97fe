"""RainDiff's temporal attention unit (TAU): squeeze-excitation width and residual shape."""

import torch

from nowcast_pl.models.raindiff.temporal_attention import PreNormTemporalAttentionUnit, TemporalAttentionModule


def test_tau_se_width_and_residual_shape():
    assert TemporalAttentionModule(64).excite[0].out_features == 16
    assert TemporalAttentionModule(512).excite[0].out_features == 16
    block = PreNormTemporalAttentionUnit(16)
    assert block(torch.randn(1, 16, 8, 8)).shape == (1, 16, 8, 8)
